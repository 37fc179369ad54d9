"""The `tail` input's key table (Fluent Bit in_tail names, defaults and meanings)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shipper.config.schema import opt

log = logging.getLogger(__name__)

DEFAULT_MEM_BUF_LIMIT = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class TailOptions:
    path: tuple[str, ...] = opt(
        "Path", "list", (), required=True, help="Comma-separated glob patterns of files to follow."
    )
    exclude_path: tuple[str, ...] = opt(
        "Exclude_Path",
        "list",
        (),
        help="Comma-separated patterns (fnmatch on the full path) of files to leave alone.",
    )
    tag: str = opt(
        "Tag",
        "str",
        "tail.0",
        help="Tag of the records; '*' is replaced by the file path with '/' turned into '.'.",
    )
    path_key: str | None = opt(
        "Path_Key", "str", None, help="Record key for the path as the glob matched it."
    )
    offset_key: str | None = opt(
        "Offset_Key", "str", None, help="Record key for the line's end offset in the file."
    )
    refresh_interval: float = opt(
        "Refresh_Interval",
        "time",
        60.0,
        help="Seconds between glob re-scans (filesystem events trigger a scan at once as well).",
    )
    rotate_wait: float = opt(
        "Rotate_Wait",
        "time",
        5.0,
        help="Seconds a rotated, moved or deleted file is still followed after it stopped growing.",
    )
    read_from_head: bool = opt(
        "Read_from_Head",
        "bool",
        False,
        help="Files found at the first scan are read from their head instead of their end.",
    )
    db: str | None = opt(
        "DB",
        "str",
        None,
        help="SQLite file that keeps offsets across "
        "restarts (stored only after every output accepted the data).",
    )
    db_sync: str = opt(
        "DB.sync",
        "str",
        "normal",
        choices=("extra", "full", "normal", "off"),
        help="SQLite synchronous mode.",
    )
    db_locking: bool = opt("DB.locking", "bool", False, help="Accepted for compatibility.")
    db_journal_mode: str = opt("DB.journal_mode", "str", "WAL", help="SQLite journal mode.")
    mem_buf_limit: int = opt(
        "Mem_Buf_Limit",
        "size",
        DEFAULT_MEM_BUF_LIMIT,
        help="Bytes of records in flight before readers pause (0: the "
        "default, memory stays bounded).",
    )
    buffer_chunk_size: int = opt(
        "Buffer_Chunk_Size",
        "size",
        32 * 1024,
        help="Smallest read; a pass reads up to 256k (or this) per file.",
    )
    buffer_max_size: int = opt(
        "Buffer_Max_Size",
        "size",
        32 * 1024,
        help="Longest line kept whole; longer lines are skipped or cut.",
    )
    skip_long_lines: bool = opt(
        "Skip_Long_Lines",
        "bool",
        False,
        help="Skip lines over Buffer_Max_Size instead of cutting them.",
    )
    skip_empty_lines: bool = opt(
        "Skip_Empty_Lines", "bool", False, help="Do not emit records for empty lines."
    )
    ignore_older: float | None = opt(
        "Ignore_Older", "time", None, help="Ignore files not modified for this long."
    )
    parser: str | None = opt(
        "Parser",
        "str",
        None,
        help="Name of a [PARSER] that turns each record's log into fields (no match: log kept).",
    )
    multiline_parser: tuple[str, ...] = opt(
        "multiline.parser", "list", (), help="Multi-line parsers: python, ray."
    )
    multiline_flush: float = opt(
        "Multiline_Flush", "time", 1.0, help="Seconds a pending multi-line record waits for more."
    )
    inotify_watcher: bool = opt(
        "Inotify_Watcher",
        "bool",
        True,
        help="Use filesystem events to notice new files at once; off: polling only.",
    )
    file_cache_advise: bool = opt(
        "File_Cache_Advise",
        "bool",
        True,
        help="Drop what has been read from the page cache (a memory limit counts it).",
    )
    ray_metadata: bool = opt(
        "Ray_Metadata",
        "bool",
        True,
        help="Add session, component and parsed Ray fields to records.",
    )
    time_offset: float | None = opt(
        "Time_Offset",
        "float",
        None,
        help="UTC offset in hours of the timestamps in Ray's "
        "lines (default: this machine's local zone).",
    )
    exit_on_eof: bool = opt(
        "Exit_On_Eof",
        "bool",
        False,
        help="Stop the agent (gracefully) once every file is read to its "
        "end: for batch jobs and benchmarks.",
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "mem_buf_limit", bounded_mem_buf_limit(self.mem_buf_limit))


def bounded_mem_buf_limit(value: int) -> int:
    """Fluent Bit reads Mem_Buf_Limit 0 as "no limit"; here no room would ever be left to
    read. Memory stays bounded: 0 (or less) means the default."""
    if value > 0:
        return value
    log.warning(
        "Mem_Buf_Limit %d: no limit in Fluent Bit; shipper keeps memory bounded at the default 32M",
        value,
    )
    return DEFAULT_MEM_BUF_LIMIT
