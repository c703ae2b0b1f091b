"""A pytest plugin for GPU test runs: a kernel that traps (or faults) loses the process's CUDA
context, and every later test in that process fails with the same error, hiding what they
would have shown. Loaded with ``-p benchmarks.pytest_cuda_context``, it

- appends ``outcome<TAB>nodeid`` of every test to ``$FASTGEN_TEST_LOG`` (when set), so a
  restarted run can deselect what already ran;
- stops the session after a test fails with a sticky CUDA error, with exit status 3
  (``CONTEXT_LOST``): benchmarks/device_check.sh then runs the remaining tests in a fresh process.
"""
from __future__ import annotations

import os

import pytest

CONTEXT_LOST = 3
# What torch says once the context is gone (a __trap, an illegal address or instruction, an
# assert in a kernel): every later CUDA call in the process repeats it.
STICKY_ERRORS = ("unspecified launch failure", "illegal instruction", "illegal memory access",
                 "device-side assert", "misaligned address", "context is destroyed", "ECC error")


def _sticky(report) -> bool:
    return report.failed and any(s in str(report.longrepr) for s in STICKY_ERRORS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    log = os.environ.get("FASTGEN_TEST_LOG")
    if log and (report.when == "call" or (report.when == "setup" and not report.passed)):
        with open(log, "a") as f:
            f.write(f"{report.outcome}\t{report.nodeid}\n")
    if _sticky(report):
        item.config._fastgen_context_lost = report.nodeid
        item.session.shouldstop = f"the CUDA context was lost in {report.nodeid}; the rest needs a fresh process"


def pytest_sessionfinish(session, exitstatus):
    if getattr(session.config, "_fastgen_context_lost", None):
        session.exitstatus = CONTEXT_LOST
