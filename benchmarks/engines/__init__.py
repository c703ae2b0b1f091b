"""The engine benchmark behind ``edanet bench`` (``python -m benchmarks.engines.report``): every
engine built here timed per step, against the PyTorch baselines of the same run and the
machine's measured peaks (``common``), the memory a generation adds (``memory``), the GPU speed
targets (``targets``), written as JSON, Markdown and a plot (``report``). Inside the package so
that an installed ``edanet`` runs it without a source checkout; the other benchmarks (corpus,
features, streams, compile-time resources) live in the repository's ``benchmarks/``."""
