"""Evaluation: what generated EDA is measured by (``metrics``), the evaluation on held-out
recordings against baselines (``evaluate``), its report (``report``) and plots (``plot``)."""
from .evaluate import Tally, Truth, evaluate, likelihood, step_nll
from .metrics import event_locked, find_scrs, phasic, texture
from .plot import plot_event_locked, plot_generation, plot_traces
from .report import SYSTEMS, build_report, over_seeds, render_markdown, write_report

__all__ = ["evaluate", "likelihood", "step_nll", "Tally", "Truth", "SYSTEMS", "build_report", "over_seeds",
           "render_markdown", "write_report", "texture", "event_locked", "phasic", "find_scrs", "plot_generation",
           "plot_event_locked", "plot_traces"]
