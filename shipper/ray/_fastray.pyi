# The C helper of shipper/ray/fast.py (shipper/ray/_fastray.c).
from collections.abc import Mapping

def rows(
    body: bytes,
    pos: int,
    end: int,
    cpp: bool,
    seconds: Mapping[bytes, bytes | None],
    consts: tuple[bytes, ...],
    tail: bool = ...,
    /,
) -> tuple[bytes, bytes, list[int], bytes | None]: ...
def free_rows(
    complete: bytes,
    pos: int,
    head: bytes,
    tail: bytes,
    forwarded: bool = ...,
    most: int = ...,
    joins: bool = ...,
    /,
) -> tuple[bytes, int, int]: ...
