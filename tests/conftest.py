"""Test kinds, as markers: `unit` runs in process (parts of shipper called directly; real
files and sockets are fine, no agent subprocess, no backend server); `e2e` runs the real CLI
as a subprocess or a real backend. A module says `pytestmark = pytest.mark.unit` (or a test
`@pytest.mark.unit`); every other test is e2e. `pytest -m unit` runs in seconds."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("unit") is None:
            item.add_marker(pytest.mark.e2e)
