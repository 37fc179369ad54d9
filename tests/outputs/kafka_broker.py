"""A Kafka-protocol broker on 127.0.0.1 for tests: librdkafka's mock cluster.

librdkafka (Debian's librdkafka1, the library kcat and confluent-kafka use) carries a broker
written by its authors to test clients against: it speaks the Kafka protocol over TCP
(ApiVersions, Metadata, Produce with acks, Fetch, ListOffsets, consumer groups), keeps each
partition's log in memory and can take a broker down (listener and connections closed,
connections refused) and up again with its log intact: a broker restart, as clients see it.
No Apache Kafka or Redpanda installs from a package registry here (see README, Kafka).
The mock keeps about 5 MB per partition: older messages are pruned (the log start offset
moves on), so a test that reads everything back stays well under that.

Run as a subprocess: `python -m tests.outputs.kafka_broker` prints the bootstrap address, then
reads commands on stdin, answering `ok` to each: `down`, `up`, `rtt MS` (answers held back
that long after the request is handled), `slow API_KEY MS` (the same for the next request of
that API only), `topic NAME PARTITIONS`,
`error API_KEY ERROR_CODE COUNT` (the next COUNT requests of that API fail with that code).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

BROKER_ID = 1


def load() -> ctypes.CDLL:
    name = ctypes.util.find_library("rdkafka") or "librdkafka.so.1"
    lib = ctypes.CDLL(name)
    vp, cp, i32 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32
    lib.rd_kafka_conf_new.restype = vp
    lib.rd_kafka_conf_set.argtypes = [vp, cp, cp, cp, ctypes.c_size_t]
    lib.rd_kafka_new.restype = vp
    lib.rd_kafka_new.argtypes = [ctypes.c_int, vp, cp, ctypes.c_size_t]
    lib.rd_kafka_mock_cluster_new.restype = vp
    lib.rd_kafka_mock_cluster_new.argtypes = [vp, ctypes.c_int]
    lib.rd_kafka_mock_cluster_bootstraps.restype = cp
    lib.rd_kafka_mock_cluster_bootstraps.argtypes = [vp]
    lib.rd_kafka_mock_broker_set_down.argtypes = [vp, i32]
    lib.rd_kafka_mock_broker_set_up.argtypes = [vp, i32]
    # variadic: (err, rtt_ms) pairs follow the fixed arguments
    lib.rd_kafka_mock_broker_push_request_error_rtts.argtypes = [
        vp,
        i32,
        ctypes.c_int16,
        ctypes.c_size_t,
    ]
    lib.rd_kafka_mock_broker_set_rtt.argtypes = [vp, i32, ctypes.c_int]
    lib.rd_kafka_mock_topic_create.argtypes = [vp, cp, ctypes.c_int, ctypes.c_int]
    lib.rd_kafka_mock_push_request_errors_array.argtypes = [
        vp,
        ctypes.c_int16,
        ctypes.c_size_t,
        ctypes.POINTER(ctypes.c_int),
    ]
    return lib


def available() -> bool:
    try:
        load()
    except (OSError, AttributeError):
        return False
    return True


def main() -> int:
    lib = load()
    err = ctypes.create_string_buffer(512)
    conf = lib.rd_kafka_conf_new()
    # The handle only hosts the cluster: it connects nowhere, so it has nothing to say.
    lib.rd_kafka_conf_set(conf, b"log_level", b"0", err, len(err))
    handle = lib.rd_kafka_new(0, conf, err, len(err))  # 0: a producer
    if not handle:
        print(f"rd_kafka_new: {err.value.decode()}", file=sys.stderr)
        return 1
    cluster = lib.rd_kafka_mock_cluster_new(handle, 1)
    print(lib.rd_kafka_mock_cluster_bootstraps(cluster).decode(), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "down":
            lib.rd_kafka_mock_broker_set_down(cluster, BROKER_ID)
        elif cmd[0] == "up":
            lib.rd_kafka_mock_broker_set_up(cluster, BROKER_ID)
        elif cmd[0] == "rtt":
            lib.rd_kafka_mock_broker_set_rtt(cluster, BROKER_ID, int(cmd[1]))
        elif cmd[0] == "slow":  # the next request of an API handled, its answer held back
            api, ms = int(cmd[1]), int(cmd[2])
            lib.rd_kafka_mock_broker_push_request_error_rtts(
                cluster, BROKER_ID, api, 1, ctypes.c_int(0), ctypes.c_int(ms)
            )
        elif cmd[0] == "topic":
            lib.rd_kafka_mock_topic_create(cluster, cmd[1].encode(), int(cmd[2]), 1)
        elif cmd[0] == "error":
            api, code, count = (int(x) for x in cmd[1:4])
            codes = (ctypes.c_int * count)(*([code] * count))
            lib.rd_kafka_mock_push_request_errors_array(cluster, api, count, codes)
        print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
