# The C helper of shipper/tail/reader.py's read_all (shipper/tail/_fastread.c).
from collections.abc import Sequence

def read_many(
    fds: Sequence[int], positions: Sequence[int], limit: int, nowait: bool = ..., /
) -> list[tuple[bytes, int, int, int]]: ...
