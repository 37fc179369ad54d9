"""RayHandler: the LineHandler (shipper/lines.py) that knows Ray's files.

Record keys, in order (docs/ray-logs.md): `date`, `log`, the path key, the offset key, `session`,
`component`, the line's fields (`level`, `pid`, `tid`, `source`, `message`, ...), the name's
ids (`worker_id`, `job_id`, `pid`, `stream`, `module`, ...) and, in worker `.out/.err`, what the
last marker lines announced (`job_id`, `task_name`, `actor_name`, `task_id`). A line field and
a name id of the same key (a core worker's `pid`) agree; the line's value is kept.

Everything that does not change per line (the frame of keys, the name ids) is computed once
per source. A line with a header becomes its record right away (one dict copy of the frame,
filled by the parser); the joiner then only decides which lines go with it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import orjson

from shipper.chunk import Encoded, Record
from shipper.escape import needs_per_line
from shipper.lines import HandlerFactory, LineHandler, PlainHandler, SourceContext
from shipper.ray.fast import FastRay, encode_items, free_rows
from shipper.ray.lines import LineParser
from shipper.ray.markers import adopt_markers, apply_marker, export_markers, is_marker
from shipper.ray.multiline import Group, Joiner, RayJoiner, make_joiner
from shipper.ray.names import describe, file_kind, session_of

__all__ = ["RayHandler", "handler_factory", "make_ray_handler"]

# Keys a parsed line brings itself; a name id under the same key must not override it.
_LINE_KEYS = frozenset({"level", "pid", "tid", "source", "message"})


class RayHandler:
    """Ray-aware records for one source (a file or stdin); see make_ray_handler."""

    __slots__ = (
        "_emit_markers",
        "_fast",
        "_fast_free",
        "_frame",
        "_free_tail",
        "_joiner",
        "_marked",
        "_markers",
        "_meta",
        "_name_all",
        "_name_fill",
        "_name_rest",
        "_need_head",
        "_offsets",
        "_okey",
        "_parser",
        "held_lines",
        "unread",
    )

    def __init__(
        self,
        ctx: SourceContext,
        *,
        ray_metadata: bool = True,
        multiline: tuple[str, ...] = (),
        tz_offset: float | None = None,
        emit_markers: bool = False,
    ) -> None:
        if ctx.stream:
            # stdin: a line's `(component)` prefix names its writer (docs/ray-logs.md); lines
            # without one belong to the source itself.
            name: dict[str, object] = {"component": "stdin"}
            kind, session = "ray", None
        else:
            name = describe(ctx.real_path)
            kind, session = file_kind(ctx.real_path), session_of(ctx.real_path)
        self._meta = ray_metadata
        # Only worker stdout/stderr carry Ray's magic marker lines.
        self._marked = ray_metadata and name["component"] in ("worker", "io_worker")
        self._emit_markers = emit_markers
        self._joiner: Joiner | None = make_joiner(multiline, free_text=kind == "free")
        # Only the `ray` joiner asks whether a line has a header; without metadata that is the
        # one regex we run per line.
        self._need_head = (
            not ray_metadata and isinstance(self._joiner, RayJoiner) and kind != "free"
        )
        reserved = frozenset(k for k in (ctx.path_key, ctx.offset_key) if k)
        self._parser = LineParser(tz_offset, prefix_component=ctx.stream, reserved=reserved)

        frame: dict[str, Any] = {"date": 0.0, "log": ""}
        if ctx.path_key:
            frame[ctx.path_key] = ctx.path
        self._okey = ctx.offset_key or None
        if self._okey:
            frame[self._okey] = 0
        if ray_metadata:
            if session is not None:
                frame["session"] = session
            frame["component"] = name["component"]
        self._frame = frame
        self._name_all = {k: v for k, v in name.items() if k != "component"}
        self._name_rest = {k: v for k, v in self._name_all.items() if k not in _LINE_KEYS}
        # Name ids a line may also carry (a core worker's pid; an event file's source): the
        # line's value stays, the name's fills in when the line has none (JSON lines have no
        # pid).
        self._name_fill = tuple((k, v) for k, v in self._name_all.items() if k in _LINE_KEYS)
        self._markers: dict[str, str] = {}
        self._free_tail: bytes | None = None  # see _free_frame
        # End offsets of the lines fed but not yet emitted (only with the offset key).
        self._offsets: deque[int | None] = deque()
        self.held_lines = 0
        self.unread = 0
        self._fast = self._make_fast(kind, ctx, tz_offset) if not emit_markers else None
        # User output: fast while a chunk holds nothing but plain lines (see fast.plain_text).
        self._fast_free = (
            ray_metadata
            and kind == "free"
            and not ctx.stream
            and not self._okey
            and not emit_markers
            and (self._joiner is None or isinstance(self._joiner, RayJoiner))
            and list(frame)[:2] == ["date", "log"]
        )

    # -- LineHandler -------------------------------------------------------------------------

    def feed(self, lines: list[str], now: float, offsets: list[int] | None = None) -> list[Record]:
        if self._okey:
            if offsets is not None and len(offsets) == len(lines):
                self._offsets.extend(offsets)
            else:
                self._offsets.extend([None] * len(lines))
        out: list[Record] = []
        if not self._marked:
            self._feed(lines, now, out)
        else:
            # Marker lines cut the batch: what comes before is emitted under the old markers.
            start = 0
            for i, line in enumerate(lines):
                if is_marker(line):
                    if i > start:
                        self._feed(lines[start:i], now, out)
                    self._marker(line, now, out)
                    start = i + 1
            self._feed(lines[start:] if start else lines, now, out)
        self.held_lines = 0 if self._joiner is None else self._joiner.held
        return out

    def flush(self, now: float) -> list[Record]:
        out: list[Record] = []
        if self._joiner is not None and self._joiner.held:
            groups: list[Group] = []
            self._joiner.flush(groups)
            self._emit(groups, out)
        self.held_lines = 0
        return out

    def encode(self, complete: bytes, now: float) -> Encoded | None:
        """The fast path (shipper/ray/fast.py) where it applies; its runs of rows in order,
        the rest through `feed` as if the lines had come one by one."""
        self.unread = 0
        if self._fast_free:
            return self._encode_free(complete, now)
        fast = self._fast
        plan = fast.plan(complete) if fast is not None else None
        if fast is None or plan is None:
            return None
        if plan.whole and (self._joiner is None or not self._joiner.held):
            # The usual chunk (see below), without the loop.
            self.unread = len(complete) - complete.rfind(b"\n") - 1
            return Encoded([plan.out], plan.lines - 1)
        parts: list[bytes] = []
        count = 0
        split: list[bytes] | None = None
        for is_fast, start, end in plan.runs:
            if is_fast:
                if self._joiner is not None and self._joiner.held:
                    # The run's first line has a header: what is held is complete.
                    count += _dump(self.flush(now), parts)
                parts.append(fast.encode_rows(plan, start, end))
                count += end - start
                continue
            if start == plan.lines - 1:
                raw = [complete[complete.rfind(b"\n") + 1 :]]
            else:
                if split is None:
                    split = complete.split(b"\n")
                raw = split[start:end]
            count += self._feed_raw(raw, now, parts)
        if plan.defer:
            # The last line has a header: it waits unread for the next read (see
            # LineHandler.unread), and no record held before it can go on.
            self.unread = len(complete) - complete.rfind(b"\n") - 1
            if self._joiner is not None and self._joiner.held:
                count += _dump(self.flush(now), parts)
        return Encoded(parts, count)

    def _encode_free(self, complete: bytes, now: float) -> Encoded | None:
        """Runs of plain lines through the fast path (fast.free_rows), each special line (and
        a traceback until it ends) through `feed`, in order."""
        if needs_per_line(complete):
            return None  # the reader's per-line path strips CRs and replaces bad bytes
        joiner = self._joiner
        parts: list[bytes] = []
        count = 0
        pos, end = 0, len(complete)
        head = b'{"date":' + orjson.dumps(now) + b',"log":"'
        while pos <= end:
            if joiner is None or not joiner.held:  # plain lines are records of their own
                run, n, nxt = free_rows(complete, pos, head, self._free_frame())
                if run is None:  # a DEL with control characters: line by line
                    stop = end if nxt < 0 else nxt - 1  # the newline before the special line
                    count += self._feed_raw(complete[pos:stop].split(b"\n"), now, parts)
                else:
                    parts += run
                    count += n
                if nxt < 0:
                    break
                pos = nxt
            nl = complete.find(b"\n", pos)
            stop = end if nl < 0 else nl
            count += self._feed_raw([complete[pos:stop]], now, parts)
            pos = stop + 1
        return Encoded(parts, count)

    def _free_frame(self) -> bytes:
        """What follows the log text in every plain record (from its closing quote on):
        `_free` builds it once, again only when a marker line changes it."""
        tail = self._free_tail
        if tail is None:
            tail = orjson.dumps(self._free("", 0.0)).partition(b',"log":""')[2]
            self._free_tail = tail = b'"' + tail + b"\n"
        return tail

    def _feed_raw(self, raw: list[bytes], now: float, parts: list[bytes]) -> int:
        """Lines of a chunk that needs no per-line cleaning (see needs_per_line) to `feed`."""
        return _dump(self.feed([r.decode() for r in raw], now), parts)

    def _make_fast(self, kind: str, ctx: SourceContext, tz_offset: float | None) -> FastRay | None:
        """A fast path when this source's records are ones it makes exactly: Ray's header
        files (not user output, markers, stdin prefixes or offsets), keys in the usual places."""
        frame = self._frame
        if (
            not self._meta
            or kind != "ray"
            or ctx.stream
            or self._okey
            or self._marked
            or not (self._joiner is None or isinstance(self._joiner, RayJoiner))
            or (tz_offset is not None and (tz_offset * 3600.0) % 1.0 != 0.0)
            or set(frame) & (_LINE_KEYS | set(self._name_rest))
            or list(frame)[:2] != ["date", "log"]
        ):
            return None
        rest_items = list(self._name_rest.items())
        fill = self._name_fill

        def rest(line_keys: frozenset[str]) -> bytes:
            return encode_items(rest_items + [(k, v) for k, v in fill if k not in line_keys])

        return FastRay(
            frame_tail=encode_items(list(frame.items())[2:]),
            rest=rest,
            epoch=self._parser.epoch,
            zone=tz_offset,
            joins=self._joiner is not None,
        )

    def reset(self) -> None:
        # Markers are kept: after a copytruncate the same worker goes on printing for the same
        # task, and Ray does not repeat the marker.
        if self._joiner is not None:
            self._joiner.reset()
        self._offsets.clear()
        self.held_lines = 0

    def export_state(self) -> bytes | None:
        """The worker markers in force, for this file's successor and the offsets DB."""
        return export_markers(self._markers) if self._marked else None

    def adopt_state(self, state: bytes | None) -> None:
        """Go on under a predecessor's (or the DB's) markers, before reading anything."""
        if self._marked and state:
            self._markers = adopt_markers(state)
            self._free_tail = None

    # -- records -----------------------------------------------------------------------------

    def _heads(self, lines: list[str], now: float) -> list[Any]:
        """Per line: its complete record if it has a Ray header, else None."""
        parse = self._parser.parse
        frame = self._frame
        name_rest, fill, markers = self._name_rest, self._name_fill, self._markers
        heads: list[Any] = []
        append = heads.append
        for line in lines:
            rec = parse(line, now, frame)
            if rec is not None:
                rec["log"] = line
                if name_rest:
                    rec.update(name_rest)
                for k, v in fill:
                    if k not in rec:
                        rec[k] = v
                if markers:
                    rec.update(markers)
            append(rec)
        return heads

    def _free(self, line: str, t: float) -> Record:
        """The record of a line (or joined lines) without a Ray header."""
        rec = self._frame.copy()
        rec["date"] = t
        rec["log"] = line
        if self._meta:
            if self._name_all:
                rec.update(self._name_all)
            if self._markers:
                rec.update(self._markers)
        return rec

    def _feed(self, lines: list[str], now: float, out: list[Record]) -> None:
        if not lines:
            return
        joiner = self._joiner
        okey = self._okey
        if joiner is None:
            # One record per line.
            if self._meta:
                for line, rec in zip(lines, self._heads(lines, now), strict=True):
                    out.append(self._free(line, now) if rec is None else rec)
            else:
                for line in lines:
                    out.append(self._free(line, now))
            if okey:
                pop = self._offsets.popleft
                for rec in out[len(out) - len(lines) :]:
                    self._set_offset(rec, okey, pop())
            return
        if self._meta:
            heads = self._heads(lines, now)
        elif self._need_head:
            is_header = self._parser.is_header
            heads = [True if is_header(line) else None for line in lines]
        else:
            heads = [None] * len(lines)
        groups: list[Group] = []
        joiner.push_many(lines, heads, now, groups)
        if groups:
            self._emit(groups, out)

    def _emit(self, groups: list[Group], out: list[Record]) -> None:
        """Joined groups `[head, t, line, ...]` -> records, in order."""
        meta = self._meta
        okey = self._okey
        for g in groups:
            head = g[0]
            n = len(g) - 2
            if meta and head is not None:
                rec = head
                if n > 1:
                    rec["log"] = "\n".join(g[2:])
                    if "message" in rec:
                        # The message of a joined record is all of it, not its first line.
                        rec["message"] = "\n".join([str(rec["message"]), *g[3:]])
            else:
                rec = self._free(g[2] if n == 1 else "\n".join(g[2:]), g[1])
            if okey:
                end = None
                for _ in range(n):
                    end = self._offsets.popleft()
                self._set_offset(rec, okey, end)
            out.append(rec)

    @staticmethod
    def _set_offset(rec: Record, okey: str, off: int | None) -> None:
        if off is None:
            rec.pop(okey, None)  # the reader gave no offsets for this line
        else:
            rec[okey] = off

    # -- worker markers ----------------------------------------------------------------------

    def _marker(self, line: str, now: float, out: list[Record]) -> None:
        """Consume a worker magic line (after what was printed before it is out)."""
        if self._joiner is not None and self._joiner.held:
            groups: list[Group] = []
            self._joiner.flush(groups)
            self._emit(groups, out)
        apply_marker(self._markers, line)
        self._free_tail = None
        if self._emit_markers:
            rec = self._free(line, now)
            if self._okey:
                self._set_offset(rec, self._okey, self._offsets.popleft())
            out.append(rec)
        elif self._okey:
            self._offsets.popleft()


def _dump(records: list[Record], parts: list[bytes]) -> int:
    dumps = orjson.dumps
    parts += [dumps(r) + b"\n" for r in records]
    return len(records)


def make_ray_handler(
    ctx: SourceContext,
    *,
    ray_metadata: bool,
    multiline: tuple[str, ...],
    tz_offset: float | None,
    emit_markers: bool = False,
) -> LineHandler:
    """The handler for one source. Without Ray metadata or joining: Fluent Bit's plain records.

    `multiline`: the `multiline.parser` names (`python`, `ray`); ValueError for others.
    `tz_offset`: hours east of UTC of the time Ray's lines are written in (`Time_Offset`);
    None = this machine's local time zone.
    """
    if not emit_markers:
        return handler_factory(ray_metadata=ray_metadata, multiline=multiline, tz_offset=tz_offset)(
            ctx
        )
    return RayHandler(
        ctx,
        ray_metadata=ray_metadata,
        multiline=multiline,
        tz_offset=tz_offset,
        emit_markers=emit_markers,
    )


def handler_factory(
    *, ray_metadata: bool, multiline: tuple[str, ...], tz_offset: float | None
) -> HandlerFactory:
    """The one choice of handler for an input's sources (tail's files, stdin): Fluent Bit's
    plain records without Ray metadata or joining, else RayHandler. ValueError for an
    unknown `multiline` name, raised here, at configuration time."""
    if not ray_metadata and not multiline:
        return PlainHandler
    make_joiner(multiline, free_text=False)  # validates the names

    def factory(ctx: SourceContext) -> LineHandler:
        return RayHandler(ctx, ray_metadata=ray_metadata, multiline=multiline, tz_offset=tz_offset)

    return factory
