"""The `file` output: records appended to a file per tag (or one named file), in the formats of
Fluent Bit's out_file.

    out_file (default)  tag: [1712000000.123456789, {"log":"..."}]
    plain               {"log":"..."}
    csv                 1712000000.123456789,"value1","value2"
    ltsv                "time":1712000000.123457<TAB>"key1":"value1"
    template            Template with {time} and {key} placeholders (default "{time} {message}")

Byte for byte as Fluent Bit 5 writes them: nanoseconds in out_file and csv, C's %f elsewhere;
csv/ltsv values and csv's column line as msgpack-c prints objects (strings between quotes,
maps as {"k"=>v}); a template placeholder naming no key is written as it stands. The file is
the tag made safe for a path (characters other than letters, digits, - _ . become _, `.` and
`..` components become _). A batch is acknowledged once it is written to the file (the page
cache, as Fluent Bit: no fsync). A file that cannot be opened (a missing directory without
Mkdir, no permission) is retried with the retry policy: the data waits on disk meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Section
from shipper.config.schema import build, opt
from shipper.match import Matcher
from shipper.outputs.base import Delivery, DeliveryError, Output

log = logging.getLogger(__name__)

FORMATS = ("out_file", "plain", "csv", "ltsv", "template")
_DELIMITERS = {"\\t": "\t", "tab": "\t", "space": " ", "comma": ","}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileOptions:
    path: str = opt("Path", "str", "", help="Directory of the files (default: the working one).")
    file: str = opt("File", "str", "", help="File name (default: the record's tag).")
    format: str = opt(
        "Format",
        "str",
        "out_file",
        choices=(*FORMATS, "msgpack"),
        help="out_file (tag: [time, record]), plain (JSON), csv, ltsv or template.",
    )
    mkdir: bool = opt("Mkdir", "bool", False, help="Create the directory (0755) if missing.")
    delimiter: str = opt(
        "Delimiter", "str", "", help="csv/ltsv separator: \\t (tab), space or comma."
    )
    label_delimiter: str = opt(
        "Label_Delimiter", "str", "", help="ltsv label/value separator (default ':')."
    )
    template: str = opt(
        "Template", "str", "{time} {message}", help="template: {time} and {key} placeholders."
    )
    csv_column_names: bool = opt(
        "csv_column_names", "bool", False, help="csv: a first line with the keys."
    )


def _num(t: float) -> str:
    return f"{t:f}"


def _ns(t: float) -> str:
    sec = int(t)
    nsec = min(round((t - sec) * 1e9), 999_999_999)
    return f"{sec}.{nsec:09d}"


def _value(v: Any) -> str:
    return orjson.dumps(v).decode()


def mp_print(v: Any) -> str:
    """An object as msgpack-c's msgpack_object_print writes it (what out_file's csv and ltsv
    use): strings between quotes as they are, nil, maps as {k=>v, ...}, floats with %f."""
    if isinstance(v, str):
        return f'"{v}"'
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:f}"
    if isinstance(v, list):
        return "[" + ", ".join(mp_print(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{mp_print(k)}=>{mp_print(x)}" for k, x in v.items()) + "}"
    return str(v)


def safe_tag(tag: str) -> str:
    """The tag as a relative path, as Fluent Bit's out_file makes it."""
    parts = [p for p in re.split(r"[/\\]+", tag) if p]
    safe = ["_" if p in (".", "..") else _UNSAFE.sub("_", p) for p in parts]
    return "/".join(safe) or "_"


def _split(rec: Record) -> tuple[float, Record]:
    t = rec.get("date", 0.0)
    return (t if isinstance(t, int | float) else 0.0), {k: v for k, v in rec.items() if k != "date"}


class Formatter:
    """Records -> the text of one format (one line per record)."""

    def __init__(self, opts: FileOptions) -> None:
        self.fmt = opts.format
        default_delim = "\t" if self.fmt == "ltsv" else ","
        self.delim = _DELIMITERS.get(opts.delimiter.lower(), default_delim)
        # As Fluent Bit: only \t/tab, space and comma are taken, anything else is the default.
        self.label = _DELIMITERS.get(opts.label_delimiter.lower(), ":")
        self.template = opts.template
        self.column_names = opts.csv_column_names

    def header(self, records: list[Record]) -> str:
        """csv_column_names: the line that heads a new csv file."""
        if self.fmt != "csv" or not self.column_names or not records:
            return ""
        keys = [mp_print(k) for k in _split(records[0])[1]]
        return "timestamp" + self.delim + self.delim.join(keys) + "\n"

    def lines(self, tag: str, records: list[Record]) -> str:
        out: list[str] = []
        for rec in records:
            t, body = _split(rec)
            if self.fmt == "out_file":
                out.append(f"{tag}: [{_ns(t)}, {_value(body)}]")
            elif self.fmt == "plain":
                out.append(_value(body))
            elif not body:
                continue  # csv and ltsv write nothing for an empty record
            elif self.fmt == "csv":
                out.append(self.delim.join([_ns(t), *(mp_print(v) for v in body.values())]))
            elif self.fmt == "ltsv":
                pairs = [f'"time"{self.label}{_num(t)}']
                pairs += [f"{mp_print(k)}{self.label}{mp_print(v)}" for k, v in body.items()]
                out.append(self.delim.join(pairs))
            else:
                out.append(self._template(t, body))
        return "".join(line + "\n" for line in out)

    def _template(self, t: float, body: Record) -> str:
        def sub(m: re.Match[str]) -> str:
            key = m.group(1)
            if key == "time":
                return _num(t)
            if key not in body:
                return m.group(0)  # as Fluent Bit: the placeholder stays
            v = body[key]
            return v if isinstance(v, str) else mp_print(v)

        return _PLACEHOLDER.sub(sub, self.template)


class FileOutput(Output):
    plugin = "file"

    def __init__(self, *, opts: FileOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.opts = opts
        self.formatter = Formatter(opts)

    def target(self, tag: str) -> str:
        name = self.opts.file or safe_tag(tag)
        return os.path.join(self.opts.path, name) if self.opts.path else name

    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        # One (file, text) pair per run of chunks with the same target, in order.
        groups: list[list[str]] = []
        for chunk in batch:
            path = self.target(chunk.tag)
            records = chunk.records
            text = self.formatter.lines(chunk.tag, records)
            if not groups or groups[-1][0] != path:
                groups.append([path, text, self.formatter.header(records)])
            else:
                groups[-1][1] += text
        packed: bytes = msgpack.packb(groups)
        return packed

    def encode(self, records: list[Record]) -> bytes:  # pragma: no cover - encode_chunks rules
        raise NotImplementedError

    async def send(self, payload: bytes, records: list[Record]) -> None:
        groups = msgpack.unpackb(payload)
        try:
            await asyncio.to_thread(self._append, groups)
        except OSError as exc:
            raise DeliveryError(
                f"cannot write {exc.filename or 'the file'}: {exc.strerror}", retryable=True
            ) from None

    def _append(self, groups: list[list[str]]) -> None:
        for path, text, header in groups:
            directory = os.path.dirname(path)
            if self.opts.mkdir and directory:
                os.makedirs(directory, mode=0o755, exist_ok=True)
            # surrogateescape: a lone surrogate in a record (a filter may make one) is written
            # as a byte instead of failing the whole batch
            with open(path, "a", encoding="utf-8", errors="surrogateescape") as f:
                # The column line heads a new (empty) file only.
                f.write(header + text if header and f.tell() == 0 else text)


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> FileOutput:
    opts = build(FileOptions, section)
    if opts.format == "msgpack":
        prop = section.get("format")
        raise ConfigError(
            f"Format msgpack is not supported here: use one of {', '.join(FORMATS)}",
            file=section.file,
            line=prop.line if prop else section.line,
            key="Format",
        )
    for key in ("path", "file"):
        prop = section.get(key)
        if prop is not None and "$" in prop.value:
            raise ConfigError(
                "record accessors in Path/File (per-record destinations) are not supported: "
                "use a static Path and File, or route with Match to several file outputs",
                file=prop.file,
                line=prop.line,
                key=prop.key,
            )
    for key in ("delimiter", "label_delimiter"):
        prop = section.get(key)
        if prop is not None and prop.value.strip().lower() not in _DELIMITERS:
            log.warning(
                "%s:%d: %s %r is not \\t, tab, space or comma: ignored, as Fluent Bit does",
                prop.file,
                prop.line,
                prop.key,
                prop.value.strip(),
            )
    return FileOutput(opts=opts, name=name, matcher=matcher, delivery=delivery)
