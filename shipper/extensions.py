"""The optional C helpers: each is used when `pip install` could build it, unless the
environment variable SHIPPER_NO_EXTENSIONS is set (then every pure-Python path runs)."""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["describe", "optional"]


def optional(module: str) -> Any:
    """The C helper `module`, or None (not built here, or turned off)."""
    if os.environ.get("SHIPPER_NO_EXTENSIONS"):
        return None
    try:
        return importlib.import_module(module)
    except ImportError:  # built without a C compiler: the caller's pure-Python path
        return None


def describe(helpers: dict[str, bool]) -> str:
    """`C helpers: ...` for `shipper --version`: which helpers (name -> in use) run."""
    if os.environ.get("SHIPPER_NO_EXTENSIONS"):
        return "C helpers off: SHIPPER_NO_EXTENSIONS is set"
    used = [name for name, on in helpers.items() if on]
    missing = [name for name, on in helpers.items() if not on]
    if not used:
        return "C helpers not built: pure Python"
    text = "C helpers: " + ", ".join(used)
    return text + (f"; not built: {', '.join(missing)}" if missing else "")
