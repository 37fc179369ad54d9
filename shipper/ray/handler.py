"""RayHandler: the LineHandler (shipper/lines.py) that knows Ray's files.

Record keys, in order (docs/ray-logs.md): `date`, `log`, the path key, the offset key, `session`,
`component`, the line's fields (`level`, `pid`, `tid`, `source`, `message`, `logger`, Serve's
and JSON lines' keys; shipper/ray/lines.py), the name's ids (`worker_id`, `job_id`, `pid`,
`stream`, `module`, ...), in worker `.out/.err` what the last marker lines announced (`job_id`,
`task_name`, `actor_name`, `task_id`), and in a job driver's log the job id it said it runs as.
A line field and a name id of the same key (a core worker's `pid`) agree; the line's value is
kept.

Everything that does not change per line (the frame of keys, the name ids) is computed once
per source. A line with a header becomes its record right away (one dict copy of the frame,
filled by the parser); the joiner then only decides which lines go with it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from shipper.chunk import Record
from shipper.lines import HandlerFactory, LineHandler, PlainHandler, SourceContext
from shipper.ray.encoder import FastEncoding
from shipper.ray.fast import FastRay
from shipper.ray.lines import LineParser, unprefixed
from shipper.ray.markers import adopt_markers, apply_marker, export_markers, is_marker
from shipper.ray.multiline import Group, Joiner, RayJoiner, make_joiner
from shipper.ray.names import describe, file_kind, session_of
from shipper.ray.structured import apply_context, driver_job

__all__ = ["RayHandler", "handler_factory", "make_ray_handler"]

# Keys a parsed line brings itself; a name id under the same key must not override it.
_LINE_KEYS = frozenset({"level", "pid", "tid", "source", "message"})


class RayHandler(FastEncoding):
    """Ray-aware records for one source (a file or stdin); see make_ray_handler."""

    __slots__ = (
        "_context",
        "_emit_markers",
        "_fast",
        "_fast_free",
        "_frame",
        "_job",
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
        "_prefixed",
        "held_lines",
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
        self._prefixed = name["component"] == "job_driver"
        self._job: str | None = None  # the job a driver's log said it runs as
        self._joiner: Joiner | None = make_joiner(
            multiline, free_text=kind == "free", prefixed=self._prefixed
        )
        # Only the `ray` joiner asks whether a line has a header; without metadata that is the
        # one regex we run per line.
        self._need_head = (
            not ray_metadata and isinstance(self._joiner, RayJoiner) and kind != "free"
        )
        reserved = frozenset(k for k in (ctx.path_key, ctx.offset_key) if k)
        self._parser = LineParser(
            tz_offset,
            prefix_component=ctx.stream,
            reserved=reserved,
            forwarded=self._prefixed or ctx.stream,
        )
        # User output, job supervisors (a few lines a job) and stdin may hold Ray's
        # TextFormatter lines, whose context ends the message (see split_context); Ray's own
        # daemon files, which take the fast path, never do.
        self._context = (
            ray_metadata and (kind == "free" or name["component"] == "job_supervisor")
        ) or ctx.stream

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
        self._free_tail = None
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
            or self._context
            or not (self._joiner is None or isinstance(self._joiner, RayJoiner))
            or (tz_offset is not None and (tz_offset * 3600.0) % 1.0 != 0.0)
            or set(frame) & (_LINE_KEYS | set(self._name_rest))
            or list(frame)[:2] != ["date", "log"]
        ):
            return None
        return FastRay.for_source(
            frame=frame,
            name_rest=self._name_rest,
            name_fill=self._name_fill,
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
            if self._job is not None:
                rec["job_id"] = self._job
        return rec

    def _feed(self, lines: list[str], now: float, out: list[Record]) -> None:
        if not lines:
            return
        joiner = self._joiner
        okey = self._okey
        if joiner is None:
            # One record per line.
            if self._meta:
                context = self._context
                for line, rec in zip(lines, self._heads(lines, now), strict=True):
                    if rec is None:
                        rec = self._free(line, now)
                    elif context:
                        apply_context(rec, self._parser.reserved)
                    if self._prefixed:
                        self._driver_job(rec)
                    out.append(rec)
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
        context = self._context
        for g in groups:
            head = g[0]
            n = len(g) - 2
            if meta and head is not None:
                rec = head
                if n > 1:
                    rec["log"] = "\n".join(g[2:])
                    if "message" in rec:
                        # The message of a joined record is all of it, not its first line.
                        rest = [unprefixed(x) for x in g[3:]] if self._prefixed else g[3:]
                        rec["message"] = "\n".join([str(rec["message"]), *rest])
                if context:
                    apply_context(rec, self._parser.reserved)
            else:
                rec = self._free(g[2] if n == 1 else "\n".join(g[2:]), g[1])
            if self._prefixed:
                self._driver_job(rec)
            if okey:
                end = None
                for _ in range(n):
                    end = self._offsets.popleft()
                self._set_offset(rec, okey, end)
            out.append(rec)

    def _driver_job(self, rec: Record) -> None:
        """At emission, in line order: the same records whatever the reads were."""
        job = driver_job(rec, self._job)
        if job != self._job:
            self._job, self._free_tail = job, None

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
