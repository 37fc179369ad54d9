"""The `kafka` output against a Kafka-protocol broker on 127.0.0.1 (librdkafka's mock cluster,
tests/outputs/kafka_broker.py), read back with an independent consumer (aiokafka's).

Must show (issue 16): written N, read back N, 0 lost, duplicates only from the broker restart.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import pytest

from tests.agent import Agent, wait_for
from tests.outputs.conftest import (
    append_lines,
    assert_refused,
    tail_input,
    write_config,
)
from tests.outputs.kafka_broker import available

ROOT = Path(__file__).resolve().parents[2]
needs_broker = pytest.mark.skipif(
    not available(), reason="no librdkafka (apt-get install librdkafka1)"
)


class Broker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.outputs.kafka_broker"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.address = self.proc.stdout.readline().strip()
        assert self.address.startswith("127.0.0.1:"), self.address

    def command(self, text: str) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def read_topic(address: str, topic: str) -> list[Any]:
    """Every message of `topic`, partition by partition, from the start to the end offsets."""

    async def run() -> list[Any]:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=address, enable_auto_commit=False)
        await consumer.start()
        try:
            parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            if not parts:
                await consumer._client.force_metadata_update()
                parts = [
                    TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()
                ]
            consumer.assign(parts)
            await consumer.seek_to_beginning(*parts)
            end = await consumer.end_offsets(parts)
            out: list[Any] = []

            async def behind() -> bool:
                return any([await consumer.position(tp) < end[tp] for tp in parts])

            while await behind():
                batch = await consumer.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    out += msgs
            return out
        finally:
            await consumer.stop()

    return asyncio.run(run())


@pytest.mark.kafka
@needs_broker
def test_topics_keys_and_formats(tmp_path: Path) -> None:
    broker = Broker()
    try:
        for topic in ("logs", "other", "packed", "raw"):
            broker.command(f"topic {topic} 1")
        a, b = tmp_path / "a.log", tmp_path / "b.log"
        append_lines(a, ["from a 1", "from a 2"])
        append_lines(b, ["from b 1"])
        kafka = {"Name": "kafka", "Brokers": broker.address, "Topics": "logs,other"}
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[
                tail_input(a, Tag="a", Exit_On_Eof="on"),
                tail_input(b, Tag="b", Exit_On_Eof="on"),
            ],
            # b's records name their topic and carry their key.
            filters=[{"Name": "modify", "Match": "b", "Add": ["route other", "who bee"]}],
            outputs=[
                {
                    **kafka,
                    "Match": "*",
                    "Topic_Key": "route",
                    "Message_Key": "default-key",
                    "Message_Key_Field": "who",
                    "rdkafka.request.required.acks": "-1",
                    "rdkafka.compression.codec": "gzip",
                },
                {
                    **kafka,
                    "Match": "a",
                    "Topics": "packed",
                    "Format": "msgpack",
                    "Timestamp_Key": "ts",
                    "Timestamp_Format": "iso8601",
                },
                {**kafka, "Match": "a", "Topics": "raw", "Format": "raw", "raw_log_key": "log"},
            ],
        )
        res = subprocess.run(
            [sys.executable, "-m", "shipper", "-c", str(cfg)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, res.stderr
        logs = read_topic(broker.address, "logs")
        assert [json.loads(m.value)["log"] for m in logs] == ["from a 1", "from a 2"]
        assert {m.key for m in logs} == {b"default-key"}
        first = json.loads(logs[0].value)
        assert next(iter(first)) == "@timestamp" and isinstance(first["@timestamp"], float)
        other = read_topic(broker.address, "other")
        assert [json.loads(m.value) | {"@timestamp": 0} for m in other] == [
            {"@timestamp": 0, "log": "from b 1", "route": "other", "who": "bee"}
        ]
        assert other[0].key == b"bee"
        packed = [msgpack.unpackb(m.value) for m in read_topic(broker.address, "packed")]
        assert [p["log"] for p in packed] == ["from a 1", "from a 2"]
        assert all(len(p["ts"]) == 27 and p["ts"].endswith("Z") for p in packed)  # .%06dZ
        assert [m.value for m in read_topic(broker.address, "raw")] == [b"from a 1", b"from a 2"]
    finally:
        broker.close()


@pytest.mark.kafka
@needs_broker
def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """N lines stream in; the broker goes down (connections closed, refused) and comes back
    mid-stream, with a batch written to its log whose acks never left. Read back: all N,
    0 lost; what was acked before the outage exactly once; duplicates only of that batch."""
    n = 3000
    lines = [f"line {i:05d}" for i in range(n)]
    log = tmp_path / "a.log"
    broker = Broker()
    try:
        broker.command("topic logs 3")
        broker.command("error 0 19 3")  # three NOT_ENOUGH_REPLICAS answers first: retried
        cfg = write_config(
            tmp_path / "c.conf",
            inputs=[tail_input(log, DB=str(tmp_path / "tail.db"))],
            outputs=[
                {
                    "Name": "kafka",
                    "Match": "*",
                    "Brokers": broker.address,
                    "Topics": "logs",
                    "rdkafka.request.timeout.ms": "3000",
                }
            ],
        )
        with Agent(["-c", str(cfg)], stdout=subprocess.DEVNULL) as agent:
            append_lines(log, lines[:1000])
            wait_for(lambda: len(read_topic(broker.address, "logs")) >= 1000, what="1000 in")
            before = Counter(json.loads(m.value)["log"] for m in read_topic(broker.address, "logs"))
            # The next Produce is written to the broker's log and its answer held back 10 s:
            # it is in the log, its ack on the way, when the broker goes down (connections
            # closed, new ones refused). The client never hears of it and sends it again.
            broker.command("slow 0 10000")
            append_lines(log, lines[1000:2000])
            wait_for(lambda: len(read_topic(broker.address, "logs")) > 1000, what="in flight")
            broker.command("down")
            append_lines(log, lines[2000:])
            agent.wait_stderr("delivery failed")  # the agent saw the broker gone
            broker.command("up")
            wait_for(
                lambda: (
                    {json.loads(m.value)["log"] for m in read_topic(broker.address, "logs")}
                    >= set(lines)
                ),
                timeout=60,
                what="every line after the restart",
            )
            assert agent.stop() == 0
        # The client library's own log is in the agent's log, in its shape.
        assert all(x.startswith("[") for x in agent.err_text().splitlines() if x.strip())
        got = Counter(json.loads(m.value)["log"] for m in read_topic(broker.address, "logs"))
        lost = set(lines) - set(got)
        dups = {k: c for k, c in got.items() if c > 1}
        print(
            f"kafka restart: written {n}, read back {len(got)} distinct, lost {len(lost)}, "
            f"duplicated {sum(c - 1 for c in dups.values())}"
        )
        assert not lost and set(got) == set(lines)
        assert all(before[k] == 1 and got[k] == 1 for k in before), "acked before: never again"
        assert all(k not in before for k in dups)
        # Duplicates exactly where they must be: the batch whose acks the restart swallowed.
        assert dups and set(dups) <= set(lines[1000:2000])
        assert all(c == 2 for c in dups.values())
    finally:
        broker.close()


@pytest.mark.kafka
@needs_broker
def test_broker_down_at_start(tmp_path: Path) -> None:
    """The agent starts while the broker is down: it keeps the records (retrying) and
    delivers them all once the broker is up."""
    log = tmp_path / "a.log"
    lines = [f"early {i}" for i in range(50)]
    append_lines(log, lines)
    broker = Broker()
    try:
        broker.command("topic logs 1")
        broker.command("down")
        out = {"Name": "kafka", "Match": "*", "Brokers": broker.address, "Topics": "logs"}
        cfg = write_config(tmp_path / "c.conf", inputs=[tail_input(log)], outputs=[out])
        with Agent(["-c", str(cfg)], stdout=subprocess.DEVNULL) as agent:
            agent.wait_stderr("delivery failed")
            broker.command("up")
            wait_for(lambda: len(read_topic(broker.address, "logs")) >= 50, what="50 records")
            assert agent.stop() == 0
        got = [json.loads(m.value)["log"] for m in read_topic(broker.address, "logs")]
        assert got == lines
    finally:
        broker.close()


def test_rdkafka_and_other_refusals(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    cases = [
        ({"rdkafka.request.required.acks": "1"}, "rdkafka.request.required.acks"),
        ({"rdkafka.acks": "0"}, "rdkafka.acks"),
        ({"rdkafka.security.protocol": "SASL_SSL"}, "rdkafka.security.protocol"),
        ({"rdkafka.compression.codec": "zstd"}, "rdkafka.compression.codec"),
        ({"rdkafka.queue.buffering.max.kbytes": "1024"}, "rdkafka.queue.buffering.max.kbytes"),
        ({"rdkafka.sasl.mechanism": "PLAIN"}, "rdkafka.sasl.mechanism"),
        ({"rdkafka.message.timeout.ms": "0"}, "rdkafka.message.timeout.ms"),
        ({"rdkafka.message.max.bytes": "-5"}, "rdkafka.message.max.bytes"),
        ({"Format": "gelf"}, "Format"),
        ({"schema_str": "{}"}, "schema_str"),
    ]
    for keys, key in cases:
        out = {"Name": "kafka", "Match": "*", "Brokers": "127.0.0.1:9", **keys}
        assert_refused(tmp_path, log, out, key)
    # Brokers is required; the accepted rdkafka keys pass --dry-run.
    cfg = write_config(
        tmp_path / "c.conf", inputs=[tail_input(log)], outputs=[{"Name": "kafka", "Match": "*"}]
    )
    res = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 1 and "Brokers" in res.stderr, res.stderr
    ok = {
        "Name": "kafka",
        "Match": "*",
        "Brokers": "127.0.0.1:9",
        "rdkafka.request.required.acks": "all",
        "rdkafka.linger.ms": "5",
        "rdkafka.client.id": "ray",
        "rdkafka.security.protocol": "plaintext",
        "rdkafka.message.timeout.ms": "60000",
    }
    cfg = write_config(tmp_path / "c.conf", inputs=[tail_input(log)], outputs=[ok])
    res = subprocess.run(
        [sys.executable, "-m", "shipper", "--dry-run", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
