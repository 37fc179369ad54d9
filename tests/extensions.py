"""Run a test with a module's C helper or with its pure-Python path (both must agree)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

IMPLS = ["c", "python"]


@contextlib.contextmanager
def implementation(module: ModuleType, built: Any, impl: str) -> Iterator[None]:
    """`module._native` set to its C helper `built` ("c"; skipped where it is not built) or
    to None ("python") while the block runs."""
    if impl == "c" and built is None:
        pytest.skip(f"the C helper of {module.__name__} is not built here (no C compiler)")
    saved = module._native
    module._native = built if impl == "c" else None
    try:
        yield
    finally:
        module._native = saved
