"""Which files to follow: glob expansion with Exclude_Path, Ray's `session_latest` fallback,
and filesystem events (watchdog) that ask for a scan at once.

Events are only a hint to scan now; the scan itself is the truth, so a missed or
coalesced event costs latency, never data. Growth of files is not watched here: the reader
polls the files it has open (cheap fstat), which costs far less than one event per write.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

log = logging.getLogger(__name__)

SESSION_LINK = "session_latest"
_GLOB_CHARS = set("*?[")


class Found(NamedTuple):  # a tuple: one per file and scan
    path: str  # as matched (the Path_Key value)
    st: os.stat_result  # of the target (symlinks followed); see `pinned` in expand
    open_path: str  # where to open it: `path`, or the newest session's own path when
    # `session_latest` is dangling (Path_Key keeps naming session_latest)
    dino: int = 0  # the directory entry's inode number (0: not listed by _matches)


# open_path -> (dino, st) of files held open: see expand
Pinned = Mapping[str, tuple[int, os.stat_result]]


def _has_glob(part: str) -> bool:
    return any(c in _GLOB_CHARS for c in part)


def expand_tag(tag: str, path: str) -> str:
    """Fluent Bit: '*' in Tag becomes the path with '/' as '.', without the leading dot."""
    if "*" not in tag:
        return tag
    return tag.replace("*", path.replace(os.sep, ".").lstrip("."))


def static_prefix(pattern: str) -> str:
    """The directory part of a pattern before its first wildcard."""
    parts = pattern.split(os.sep)
    fixed: list[str] = []
    for part in parts[:-1]:
        if _has_glob(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or os.sep


def newest_session(parent: str) -> str | None:
    """The newest `session_*` directory in `parent` (names sort by their start time)."""
    try:
        names = [n for n in os.listdir(parent) if n.startswith("session_") and n != SESSION_LINK]
    except OSError:
        return None
    for name in sorted(names, reverse=True):
        if os.path.isdir(os.path.join(parent, name)):
            return os.path.join(parent, name)
    return None


def resolve_session_link(pattern: str) -> str:
    """Replace a dangling `session_latest` in a pattern by the newest session directory.

    Ray re-points the link by remove + create and never repairs it when its target is
    deleted; then the newest `session_*` directory is the live one.
    """
    parts = pattern.split(os.sep)
    if SESSION_LINK not in parts:
        return pattern
    i = parts.index(SESSION_LINK)
    link = os.sep.join(parts[: i + 1])
    parent = os.sep.join(parts[:i]) or os.sep
    if _has_glob(parent) or os.path.isdir(link):
        return pattern
    newest = newest_session(parent)
    if newest is None:
        return pattern
    return os.sep.join([newest, *parts[i + 1 :]])


def expand(
    patterns: Iterable[str], excludes: Iterable[str], pinned: Pinned | None = None
) -> dict[str, Found]:
    """Regular files matching any pattern and no exclude, by matched path.

    `pinned`: files the caller holds open, with the directory entry inode and stat of the
    last scan. An entry listed with the same inode number is the same file (an open file's
    inode cannot be reused), so its old stat stands for it: with thousands of followed files
    a scan then stats only what is new. Its size and times are old: the caller may use them
    only for files it still holds open."""
    excl = tuple(excludes)
    found: dict[str, Found] = {}
    for pattern in patterns:
        if "\0" in pattern:
            continue  # matches nothing (and os calls raise ValueError on a NUL byte)
        for p in _expand_one(pattern):
            resolved = resolve_session_link(p)
            link = target = ""
            if resolved != p:  # dangling link: files found in the newest session ...
                parts = p.split(os.sep)
                link = os.sep.join(parts[: parts.index(SESSION_LINK) + 1])
                target = resolved[: len(resolved) - len(p) + len(link)]
            for real, st, dino in _matches(resolved, pinned or {}):
                path = link + real[len(target) :] if link else real  # ... named by the link
                if path in found or (excl and any(fnmatch.fnmatch(path, e) for e in excl)):
                    continue
                if st is None:
                    try:
                        st = os.stat(real)
                    except OSError:
                        continue  # vanished, or a dangling link: nothing to read
                if stat.S_ISREG(st.st_mode):
                    found[path] = Found(path, st, real, dino)
    return found


def _matches(pattern: str, pinned: Pinned) -> list[tuple[str, os.stat_result | None, int]]:
    """What glob.glob(pattern) returns, sorted, each with its stat (symlinks followed) where
    it came cheap, and its directory entry's inode number (0 where not listed here). A
    wildcard in the file name only (`.../logs/*`, the usual pattern): one listing of the
    directory and a stat per new match relative to it (one path component for the kernel to
    resolve), no glob machinery per name, and none for a pinned file (see expand)."""
    parent, name = os.path.split(pattern)
    if not _has_glob(name) or _has_glob(parent):
        return [(p, None, 0) for p in sorted(glob.glob(pattern))]
    try:
        fd = os.open(parent or os.curdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        with os.scandir(fd) as entries:
            inodes = {e.name: e.inode() for e in entries}
        names = fnmatch.filter(inodes, name)
        if name[0] != ".":  # as glob: hidden files only for a pattern that starts with a dot
            names = [n for n in names if n[0] != "."]
        out: list[tuple[str, os.stat_result | None, int]] = []
        prefix = os.path.join(parent, "")  # os.path.join(parent, n), once
        for n in sorted(names):
            full = prefix + n
            dino = inodes[n]
            held = pinned.get(full)
            if held is not None and held[0] == dino:
                out.append((full, held[1], dino))
                continue
            try:
                st = os.stat(n, dir_fd=fd)
            except OSError:
                continue  # vanished, or a dangling link
            out.append((full, st, dino))
        return out
    finally:
        os.close(fd)


def _expand_one(pattern: str) -> list[str]:
    """A pattern with `session_latest` under a wildcard (DaemonSet: /var/log/ray/*/...)
    expands per parent, so each pod's dangling link falls back on its own."""
    parts = pattern.split(os.sep)
    if SESSION_LINK not in parts:
        return [pattern]
    i = parts.index(SESSION_LINK)
    parent = os.sep.join(parts[:i]) or os.sep
    if not _has_glob(parent):
        return [pattern]
    rest = os.sep.join(parts[i:])
    return [os.path.join(p, rest) for p in sorted(glob.glob(parent))]


def session_targets(patterns: Iterable[str]) -> dict[str, str]:
    """Each `session_latest` link in the patterns -> the session directory it names now (the
    newest session while it dangles). Ray re-points it at each new session."""
    out: dict[str, str] = {}
    for pattern in patterns:
        if "\0" in pattern:
            continue
        for p in _expand_one(pattern):
            parts = p.split(os.sep)
            if SESSION_LINK not in parts:
                continue
            i = parts.index(SESSION_LINK)
            parent = os.sep.join(parts[:i]) or os.sep
            if _has_glob(parent):
                continue
            link = os.sep.join(parts[: i + 1])
            target = real_path_of(link) if os.path.isdir(link) else newest_session(parent)
            if target is not None:
                out[link] = target
    return out


def watch_dirs(patterns: Iterable[str]) -> set[str]:
    """Directories whose entries, when they change, can change what `expand` returns.

    Every existing level from two above the static prefix down to the file's directory: the
    parent of `session_latest` (re-pointing), each session directory (its logs/ appearing) and
    the logs directories themselves (files appearing or rotating). Real paths, since inotify
    watches inodes, not names. Where none of those levels exists yet, the deepest existing
    ancestor is watched instead, so the creation of the tree is seen.
    """
    dirs: set[str] = set()
    for pattern in patterns:
        if "\0" in pattern:
            continue
        pattern = os.path.abspath(pattern)
        parts = pattern.split(os.sep)[:-1]
        top = max(2, len(static_prefix(pattern).split(os.sep)) - 2)
        level_found = False
        for depth in range(top, len(parts) + 1):
            level = os.sep.join(parts[:depth]) or os.sep
            for d in glob.glob(level) if _has_glob(level) else [level]:
                if os.path.isdir(d):
                    dirs.add(real_path_of(d))
                    level_found = True
        if not level_found:
            anc = os.sep.join(parts[:top]) or os.sep
            while not os.path.isdir(anc) and anc != os.sep:
                anc = os.path.dirname(anc)
            dirs.add(real_path_of(anc))
    return dirs


def real_path_of(path: str) -> str:
    """realpath, or the path as it is when a symlink in it is being re-pointed right now
    (readlink after lstat can race the swap: FileNotFoundError even in non-strict mode);
    the next scan resolves it again."""
    try:
        return os.path.realpath(path)
    except OSError:
        return os.path.abspath(path)


class Watcher:
    """Keeps watchdog observing `watch_dirs` and calls `kick` (thread-safe) on changes."""

    def __init__(self, kick: Callable[[], None]) -> None:
        self._kick = kick
        self._observer: object | None = None
        self._watches: dict[str, object] = {}
        self._failed = False

    def start(self) -> bool:
        try:
            from watchdog.events import (
                DirCreatedEvent,
                DirDeletedEvent,
                DirMovedEvent,
                FileCreatedEvent,
                FileDeletedEvent,
                FileMovedEvent,
                FileSystemEventHandler,
            )
            from watchdog.observers import Observer
        except ImportError as exc:  # pragma: no cover - a dependency, but stay alive
            log.warning("filesystem events unavailable (%s): polling only", exc)
            return False
        kick = self._kick

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: object) -> None:
                kick()

        self._handler = _Handler()
        # Creation, deletion and moves only: modifications would cost one event per write.
        self._filter = [
            FileCreatedEvent,
            DirCreatedEvent,
            FileDeletedEvent,
            DirDeletedEvent,
            FileMovedEvent,
            DirMovedEvent,
        ]
        try:
            observer = Observer()  # inotify_init here: fails when out of inotify instances
            observer.daemon = True
            observer.start()
        except OSError as exc:
            log.warning(
                "filesystem events unavailable (%s): falling back to polling every "
                "Refresh_Interval",
                exc.strerror or exc,
            )
            return False
        self._observer = observer
        return True

    def update(self, dirs: set[str]) -> None:
        observer = self._observer
        if observer is None:
            return
        for d in list(self._watches):
            if d not in dirs:
                with contextlib.suppress(KeyError, OSError, RuntimeError):
                    observer.unschedule(self._watches.pop(d))  # type: ignore[attr-defined]
        for d in dirs - self._watches.keys():
            try:
                self._watches[d] = observer.schedule(  # type: ignore[attr-defined]
                    self._handler, d, recursive=False, event_filter=self._filter
                )
            except OSError as exc:
                if not self._failed:
                    log.warning(
                        "cannot watch %s (%s): falling back to polling every Refresh_Interval",
                        d,
                        exc,
                    )
                    self._failed = True

    def stop(self) -> None:
        observer = self._observer
        if observer is not None:
            observer.stop()  # type: ignore[attr-defined]
            observer.join(timeout=2)  # type: ignore[attr-defined]
            self._observer = None
