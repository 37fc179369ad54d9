"""The reliability suite's results table: each scenario records lines written, delivered,
lost, duplicated, the agent's peak RSS and its open fds at the end (harness.record); the
table is printed in the terminal summary (and written to $SHIPPER_RESULTS, if set)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import pytest

from tests.reliability import harness

# When a hypothesis test fails, hypothesis' pytest plugin imports its patch writer (libcst,
# which imports a deprecated mypy_extensions name); with this project's filterwarnings=error
# that DeprecationWarning became an INTERNALERROR that hid the failure and aborted the whole
# run. Importing it once here, warnings silenced, leaves a cached module for that moment.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        # rows added by this test get its verdict
        for row in harness.RESULTS:
            if row.outcome == "?" and row.test == item.nodeid:
                row.outcome = "pass" if report.passed else ("skip" if report.skipped else "FAIL")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = harness.RESULTS
    if not rows:
        return
    table = harness.format_table(rows)
    terminalreporter.section("reliability results")
    terminalreporter.write_line(table)
    out = os.environ.get("SHIPPER_RESULTS")
    if out:
        with open(out, "w") as f:
            f.write(table + "\n")


@pytest.fixture
def results(request: pytest.FixtureRequest) -> harness.Recorder:
    return harness.Recorder(request.node.nodeid)
