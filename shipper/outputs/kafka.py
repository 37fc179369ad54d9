"""The `kafka` output: one Kafka message per record, as Fluent Bit's out_kafka makes them, sent
with aiokafka (asyncio, no librdkafka) and acks=all.

The message is the record with its time first under Timestamp_Key (`@timestamp`; double,
iso8601 with microseconds or iso8601_ns), as JSON (Format json, the default) or msgpack, or
with Format raw the string under raw_log_key alone. The topic is the record's Topic_Key value
when that is one of Topics (or any value with Dynamic_topic on), else the first of Topics; the
key is the record's Message_Key_Field value, else Message_Key.

At least once, stricter than Fluent Bit (which acknowledges once librdkafka has queued the
message): a batch is acknowledged, and so its file offsets stored, only after the broker
acknowledged every message of it with acks=all. A broker that is down, a leader election, a
timeout: the whole batch is sent again with the retry policy, so the broker may hold copies of
what was in flight when it failed, and nothing is lost. `rdkafka.*` keys that have an aiokafka
equivalent are mapped; acks weaker than all are refused, and so is every other rdkafka key.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from shipper import telemetry
from shipper.chunk import Chunk, Record
from shipper.config.model import ConfigError, Prop, Section
from shipper.config.schema import build, opt, parse_bool, parse_int
from shipper.match import Matcher
from shipper.outputs.base import Delivery, DeliveryError, Output

# rdkafka.<property> -> (aiokafka argument, parser). Acks and compression are checked apart.
RDKAFKA: dict[str, tuple[str, Any]] = {
    "client.id": ("client_id", str),
    "message.max.bytes": ("max_request_size", parse_int),
    "request.timeout.ms": ("request_timeout_ms", parse_int),
    "linger.ms": ("linger_ms", parse_int),
    "queue.buffering.max.ms": ("linger_ms", parse_int),
    "batch.size": ("max_batch_size", parse_int),
    "retry.backoff.ms": ("retry_backoff_ms", parse_int),
    "metadata.max.age.ms": ("metadata_max_age_ms", parse_int),
    "connections.max.idle.ms": ("connections_max_idle_ms", parse_int),
    "enable.idempotence": ("enable_idempotence", parse_bool),
}
POSITIVE = {"max_request_size", "request_timeout_ms", "max_batch_size"}
# What librdkafka tunes that aiokafka has no knob for: refused with that said.
NO_EFFECT = {
    "log.connection.close",
    "socket.keepalive.enable",
    "batch.num.messages",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "statistics.interval.ms",
    "debug",
}
TIMEOUT_KEYS = ("message.timeout.ms", "delivery.timeout.ms")
ACKS_KEYS = ("request.required.acks", "acks")
COMPRESSION_KEYS = ("compression.codec", "compression.type")
SECURITY_KEY = "security.protocol"
Sent = tuple["asyncio.Future[Any]", list[int]]  # a batch handed to aiokafka, its messages
MAX_WAIT = 300.0  # a batch not acknowledged in this time is sent again (message.timeout.ms)
WAIT_ARG = "message_timeout"  # not an aiokafka argument: taken out before the client is made


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaOptions:
    brokers: tuple[str, ...] = opt(
        "Brokers", "list", (), required=True, help="Bootstrap brokers, host:port, comma separated."
    )
    topics: tuple[str, ...] = opt(
        "Topics", "list", ("fluent-bit",), help="Topics; the first is the default."
    )
    topic_key: str = opt("Topic_Key", "str", "", help="Record key naming the topic.")
    dynamic_topic: bool = opt(
        "Dynamic_topic", "bool", False, help="Any Topic_Key value is a topic, listed or not."
    )
    message_key: str = opt("Message_Key", "str", "", help="Static message key.")
    message_key_field: str = opt(
        "Message_Key_Field", "str", "", help="Record key whose value is the message key."
    )
    timestamp_key: str = opt("Timestamp_Key", "str", "@timestamp", help="Key of the time.")
    timestamp_format: str = opt(
        "Timestamp_Format",
        "str",
        "double",
        choices=("double", "iso8601", "iso8601_ns"),
        help="double (seconds), iso8601 (microseconds) or iso8601_ns.",
    )
    format: str = opt(
        "Format",
        "str",
        "json",
        choices=("json", "msgpack", "raw", "gelf", "avro"),
        help="json, msgpack or raw (the raw_log_key string). gelf and avro: not supported.",
    )
    raw_log_key: str = opt("raw_log_key", "str", "", help="Format raw: the key sent.")
    queue_full_retries: int = opt(
        "queue_full_retries", "int", 10, help="Accepted (aiokafka has no local queue limit)."
    )
    client_id: str = opt("client_id", "str", "", help="Kafka client id.")
    group_id: str = opt("group_id", "str", "", help="Accepted (a producer joins no group).")


class _ClientLog(logging.Handler):
    """aiokafka's own log (every refused connection, every retry) at debug level in the
    agent's log: the output's warning already says what failed and what happens next."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger("shipper.kafka.client").debug("%s", record.getMessage())


def _route_client_log() -> None:
    client = logging.getLogger("aiokafka")
    if not any(isinstance(h, _ClientLog) for h in client.handlers):
        client.addHandler(_ClientLog())
        client.propagate = False


def _iso(t: float, digits: int) -> str:
    sec = int(t)
    frac = round((t - sec) * 10**digits)
    base = dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:0{digits}d}Z"


class KafkaOutput(Output):
    plugin = "kafka"

    def __init__(self, *, opts: KafkaOptions, client_args: dict[str, Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.opts = opts
        self.client_args = dict(client_args)
        self.max_wait = float(self.client_args.pop(WAIT_ARG, MAX_WAIT))
        self._producer: Any = None
        self._topics = set(opts.topics)
        self._partial: dict[int, tuple[bytes, set[int]]] = {}  # batch -> messages acked
        from aiokafka.partitioner import DefaultPartitioner

        self._partitioner = DefaultPartitioner()

    # -- encoding -------------------------------------------------------------------------
    def _time(self, t: float) -> Any:
        fmt = self.opts.timestamp_format
        return t if fmt == "double" else _iso(t, 6 if fmt == "iso8601" else 9)

    def _route(self, rec: Record) -> tuple[str, str | None]:
        o = self.opts
        topic = o.topics[0]
        if o.topic_key:
            value = rec.get(o.topic_key)
            if isinstance(value, str) and (o.dynamic_topic or value in self._topics):
                topic = value
        key = rec.get(o.message_key_field) if o.message_key_field else None
        if not isinstance(key, str):
            key = o.message_key or None
        return topic, key

    def encode_chunks(self, batch: list[Chunk]) -> bytes | None:
        """[[topic, key, value], ...] for the whole batch, made once: a re-send re-encodes
        nothing."""
        o = self.opts
        messages: list[list[Any]] = []
        no_raw = 0
        for chunk in batch:
            for rec in chunk.records:
                topic, key = self._route(rec)
                if o.format == "raw":
                    raw = rec.get(o.raw_log_key)
                    if not isinstance(raw, str):
                        no_raw += 1
                        continue
                    value = raw.encode()
                else:
                    t = rec.get("date", 0.0)
                    body = {o.timestamp_key: self._time(t if isinstance(t, int | float) else 0.0)}
                    body.update((k, v) for k, v in rec.items() if k != "date")
                    value = orjson.dumps(body) if o.format == "json" else msgpack.packb(body)
                messages.append([topic, key, value])
        if no_raw:  # nothing to send for them, ever: dropped and counted
            reason = f"no string under raw_log_key {o.raw_log_key!r}"
            telemetry.output_dropped(self.stats, no_raw, reason)
        packed: bytes = msgpack.packb(messages, use_bin_type=True)
        return packed

    def encode(self, records: list[Record]) -> bytes:  # pragma: no cover - encode_chunks rules
        raise NotImplementedError

    # -- delivery -------------------------------------------------------------------------
    async def _client(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            # librdkafka's batch.size default (1,000,000 bytes), not aiokafka's 16 KiB
            largest = self.client_args.get("max_request_size", 1_048_576)
            args = {"max_batch_size": min(1_000_000, largest), **self.client_args}
            producer = AIOKafkaProducer(
                bootstrap_servers=list(self.opts.brokers), acks="all", **args
            )
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _enqueue(
        self, producer: Any, messages: list[list[Any]], todo: list[int], sent: list[Sent]
    ) -> None:
        """Queue the messages `todo` as record batches, one partition each, appending
        (future, message indices) to `sent` as each batch is handed over: one await per
        batch, not per record. Keyed messages go where aiokafka's partitioner puts them
        (murmur2); keyless ones to one partition per topic and call, chosen at random."""
        by_part: dict[tuple[str, int], list[int]] = {}
        parts: dict[str, list[int]] = {}
        sticky: dict[str, int] = {}
        for i in todo:
            topic, key, _ = messages[i]
            if topic not in parts:
                parts[topic] = sorted(await producer.partitions_for(topic))
                sticky[topic] = random.choice(parts[topic])
            part = (
                self._partitioner(key.encode(), parts[topic], parts[topic])
                if key
                else sticky[topic]
            )
            by_part.setdefault((topic, part), []).append(i)
        for (topic, part), indices in by_part.items():
            batch, in_batch = producer.create_batch(), list[int]()
            for i in indices:
                _, key, value = messages[i]
                key_bytes = key.encode() if key else None
                if batch.append(key=key_bytes, value=value, timestamp=None) is None:
                    sent.append((await producer.send_batch(batch, topic, partition=part), in_batch))
                    batch, in_batch = producer.create_batch(), []
                    if batch.append(key=key_bytes, value=value, timestamp=None) is None:
                        # Larger than a whole batch: the broker would refuse it for ever.
                        reason = f"a {len(value)}-byte message is larger than a batch"
                        telemetry.output_dropped(self.stats, 1, reason)
                        continue
                in_batch.append(i)
            if in_batch:
                sent.append((await producer.send_batch(batch, topic, partition=part), in_batch))

    async def send(self, payload: bytes, records: list[Record]) -> None:
        from aiokafka.errors import KafkaError, MessageSizeTooLargeError

        messages = msgpack.unpackb(payload, raw=False)
        # A retry of this same batch sends only what the broker has not acked yet.
        entry = self._partial.get(id(payload))
        acked = entry[1] if entry is not None and entry[0] is payload else set()
        todo = [i for i in range(len(messages)) if i not in acked]
        sent: list[Sent] = []
        stopped: BaseException | None = None
        try:
            await self._enqueue(await self._client(), messages, todo, sent)
        except (KafkaError, OSError) as exc:  # no metadata in time, broker gone: stop queuing
            stopped = exc
        try:
            # Every batch queued settles (acked, or failed after aiokafka's own retries)
            # before this one is judged: none is left in flight behind a re-send.
            results = await asyncio.wait_for(
                asyncio.gather(*(f for f, _ in sent), return_exceptions=True), self.max_wait
            )
        except TimeoutError:
            raise DeliveryError("kafka: no acknowledgement in time", retryable=True) from None
        failed: list[BaseException] = [] if stopped is None else [stopped]
        for (_, indices), result in zip(sent, results, strict=True):
            if isinstance(result, MessageSizeTooLargeError):
                # Refused for ever however often it is sent: dropped, as Fluent Bit does.
                telemetry.output_dropped(self.stats, len(indices), "refused as too large")
                acked.update(indices)
            elif isinstance(result, BaseException):
                failed.append(result)
            else:
                acked.update(indices)
        if not failed:
            self._partial.pop(id(payload), None)
            return
        self._remember(payload, acked)
        raise DeliveryError(
            f"kafka: {len(messages) - len(acked)} of {len(messages)} messages not acknowledged: "
            f"{failed[0]!r}",
            retryable=True,
        )

    def _remember(self, payload: bytes, acked: set[int]) -> None:
        # Holding the payload keeps its id from being reused; a batch given up for good (a
        # Retry_Limit) leaves an entry behind, so only the latest few are kept.
        self._partial[id(payload)] = (payload, acked)
        while len(self._partial) > 2 * max(1, self.delivery.workers):
            del self._partial[next(iter(self._partial))]

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def _client_args(section: Section, opts: KafkaOptions) -> dict[str, Any]:
    args: dict[str, Any] = {"client_id": opts.client_id} if opts.client_id else {}
    for prop in section.props:
        if prop.name.startswith("rdkafka."):
            try:
                _rdkafka_arg(prop, prop.name[len("rdkafka.") :], prop.value.strip(), args)
            except ValueError as exc:
                _refuse(prop, f"bad value: {exc}")
    return args


def _rdkafka_arg(prop: Prop, name: str, value: str, args: dict[str, Any]) -> None:
    """One `rdkafka.NAME value`: into the client's arguments, or refused by name."""
    low = value.lower()
    if name in ACKS_KEYS:
        if low not in ("all", "-1"):
            _refuse(prop, "acks weaker than all can lose acknowledged records: use all")
    elif name in COMPRESSION_KEYS:
        if low not in ("none", "gzip"):
            _refuse(prop, f"compression {value!r} is not supported: use gzip or none")
        if low == "gzip":
            args["compression_type"] = "gzip"
    elif name == SECURITY_KEY:
        if low != "plaintext":
            _refuse(prop, "only plaintext is supported (no SSL/SASL in this output)")
    elif name in TIMEOUT_KEYS:
        ms = parse_int(value)
        if ms < 1:
            raise ValueError(f"{value} is out of range")
        args[WAIT_ARG] = ms / 1000
    elif name in NO_EFFECT:
        _refuse(prop, "no equivalent in this output's Kafka client (aiokafka): remove it")
    elif name in RDKAFKA:
        arg, parse = RDKAFKA[name]
        args[arg] = parse(value)
        if type(args[arg]) is int and args[arg] < (1 if arg in POSITIVE else 0):
            raise ValueError(f"{value} is out of range")
    else:
        known = ", ".join(
            sorted([*ACKS_KEYS, *COMPRESSION_KEYS, SECURITY_KEY, *TIMEOUT_KEYS, *RDKAFKA])
        )
        _refuse(prop, f"unsupported librdkafka property (supported: {known})")


def _refuse(prop: Prop, message: str) -> None:
    raise ConfigError(message, file=prop.file, line=prop.line, key=prop.key)


def create(section: Section, *, name: str, matcher: Matcher, delivery: Delivery) -> KafkaOutput:
    opts = build(KafkaOptions, section, prefix_keys=("rdkafka.",))
    fmt = section.get("format")
    if opts.format in ("gelf", "avro") and fmt is not None:
        _refuse(fmt, f"Format {opts.format} is not supported here: use json, msgpack or raw")
    if opts.format == "raw" and not opts.raw_log_key:
        raise ConfigError(
            "Format raw needs raw_log_key", file=section.file, line=section.line, key="raw_log_key"
        )
    for key, values in (("Brokers", opts.brokers), ("Topics", opts.topics)):
        if not values:
            prop = section.get(key.lower())
            raise ConfigError(
                "must not be empty",
                file=section.file,
                line=prop.line if prop else section.line,
                key=key,
            )
    client_args = _client_args(section, opts)
    _route_client_log()
    return KafkaOutput(
        opts=opts, client_args=client_args, name=name, matcher=matcher, delivery=delivery
    )
