"""The `file` output: records appended to a file per tag (or one named file), in the formats of
Fluent Bit's out_file.

    out_file (default)  tag: [1712000000.123456, {"log":"..."}]
    plain               {"log":"..."}
    csv                 1712000000.123456,"value1","value2"
    ltsv                "time":1712000000.123456<TAB>"key1":"value1"
    template            Template with {time} and {key} placeholders (default "{time} {message}")

Time is the record's time in seconds with six decimals (C's %f), as Fluent Bit prints it; the
record goes out without it. A batch is acknowledged once it is written to the file (the page
cache, as Fluent Bit: no fsync). A file that cannot be opened (a missing directory without
Mkdir, no permission) is retried with the retry policy: the data waits on disk meanwhile.
"""

from __future__ import annotations

import asyncio
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

FORMATS = ("out_file", "plain", "csv", "ltsv", "template")
_DELIMITERS = {"\\t": "\t", "tab": "\t", "space": " ", "comma": ","}
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


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


def _value(v: Any) -> str:
    return orjson.dumps(v).decode()


def _split(rec: Record) -> tuple[float, Record]:
    t = rec.get("date", 0.0)
    return (t if isinstance(t, int | float) else 0.0), {k: v for k, v in rec.items() if k != "date"}


class Formatter:
    """Records -> the text of one format (one line per record)."""

    def __init__(self, opts: FileOptions) -> None:
        self.fmt = opts.format
        default_delim = "\t" if self.fmt == "ltsv" else ","
        self.delim = _DELIMITERS.get(opts.delimiter.lower(), default_delim)
        self.label = _DELIMITERS.get(opts.label_delimiter.lower(), opts.label_delimiter or ":")
        self.template = opts.template
        self.column_names = opts.csv_column_names

    def header(self, records: list[Record]) -> str:
        """csv_column_names: the line that heads a new csv file."""
        if self.fmt != "csv" or not self.column_names or not records:
            return ""
        return self.delim.join(["timestamp", *_split(records[0])[1]]) + "\n"

    def lines(self, tag: str, records: list[Record]) -> str:
        out: list[str] = []
        for rec in records:
            t, body = _split(rec)
            if self.fmt == "out_file":
                out.append(f"{tag}: [{_num(t)}, {_value(body)}]")
            elif self.fmt == "plain":
                out.append(_value(body))
            elif self.fmt == "csv":
                out.append(self.delim.join([_num(t), *(_value(v) for v in body.values())]))
            elif self.fmt == "ltsv":
                pairs = [f'"time"{self.label}{_num(t)}']
                pairs += [f"{_value(k)}{self.label}{_value(v)}" for k, v in body.items()]
                out.append(self.delim.join(pairs))
            else:
                out.append(self._template(t, body))
        return "".join(line + "\n" for line in out)

    def _template(self, t: float, body: Record) -> str:
        def sub(m: re.Match[str]) -> str:
            key = m.group(1).strip()
            if key == "time":
                return _num(t)
            v = body.get(key)
            if v is None:
                return ""
            return v if isinstance(v, str) else _value(v)

        return _PLACEHOLDER.sub(sub, self.template)


class FileOutput(Output):
    plugin = "file"

    def __init__(self, *, opts: FileOptions, **kw: Any) -> None:
        super().__init__(**kw)
        self.opts = opts
        self.formatter = Formatter(opts)

    def target(self, tag: str) -> str:
        name = self.opts.file or tag
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
            with open(path, "a", encoding="utf-8") as f:
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
    return FileOutput(opts=opts, name=name, matcher=matcher, delivery=delivery)
