"""What the HTTP server reports, computed from telemetry.REGISTRY: Prometheus families under
Fluent Bit's names (rendered by prometheus_client), the /api/v1/metrics JSON, and the health
state by Fluent Bit's Health_Check rule.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from shipper import __version__, telemetry
from shipper.config.service import ServiceOptions
from shipper.telemetry import FilterStats, InputStats, OutputStats, Registry

log = logging.getLogger(__name__)

# Per-file series are what an operator needs to find a lagging file, but a DaemonSet may
# follow thousands: only the files furthest behind get one; the per-input sum covers all.
BEHIND_FILES_MAX = 20

_INPUT_COUNTERS = (
    ("fluentbit_input_records", "Number of input records.", "records"),
    ("fluentbit_input_bytes", "Number of input bytes.", "bytes"),
    ("fluentbit_input_files_opened", "Number of opened files.", "files_opened"),
    ("fluentbit_input_files_closed", "Number of closed files.", "files_closed"),
    ("fluentbit_input_files_rotated", "Number of rotated files.", "files_rotated"),
    ("shipper_input_long_lines", "Lines cut or skipped at the line limit.", "long_lines"),
    (
        "shipper_input_copytruncate_recovered",
        "Truncations (copytruncate) whose unread bytes were read from the copy.",
        "copies_recovered",
    ),
    (
        "shipper_input_copytruncate_recovered_bytes",
        "Bytes read from copies after a truncation.",
        "copy_bytes",
    ),
    (
        "shipper_input_copytruncate_missed",
        "Truncations with unread bytes and no copy found (those bytes are lost).",
        "copies_missed",
    ),
    (
        "shipper_input_copytruncate_missed_bytes",
        "Unread bytes of truncated files with no copy found.",
        "missed_bytes",
    ),
    (
        "shipper_input_rotated_lost_files",
        "Rotated generations deleted before they were read to their end.",
        "rotated_lost_files",
    ),
    (
        "shipper_input_rotated_lost_bytes",
        "Bytes of rotated generations deleted before they were read (known size - offset).",
        "rotated_lost_bytes",
    ),
)
_OUTPUT_COUNTERS = (
    ("fluentbit_output_proc_records", "Number of processed output records.", "proc_records"),
    ("fluentbit_output_proc_bytes", "Number of processed output bytes.", "proc_bytes"),
    ("fluentbit_output_errors", "Number of output errors.", "errors"),
    ("fluentbit_output_retries", "Number of output retries.", "retries"),
    (
        "fluentbit_output_retries_failed",
        "Number of abandoned batches because the maximum number of re-tries was reached.",
        "retries_failed",
    ),
    ("fluentbit_output_dropped_records", "Number of dropped records.", "dropped_records"),
)


class ShipperCollector(Collector):
    """A custom collector: the counters live in telemetry's plain objects (cheap to bump on
    the hot path) and are read only when someone scrapes."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or telemetry.REGISTRY

    def collect(self) -> Iterator[Metric]:
        inputs = self.registry.live_inputs()
        outputs = self.registry.live_outputs()
        yield from _counters(_INPUT_COUNTERS, inputs)
        yield from _counters(_OUTPUT_COUNTERS, outputs)
        yield from _input_gauges(inputs)
        yield from _filter_counters(list(self.registry.filters.values()))
        now = time.time()
        uptime = GaugeMetricFamily(
            "fluentbit_uptime",
            "Number of seconds that Fluent Bit has been running.",
            labels=["hostname"],
        )
        uptime.add_metric([_hostname()], int(now - telemetry.START_TIME))
        yield uptime
        start = GaugeMetricFamily(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            labels=["hostname"],
        )
        start.add_metric([_hostname()], int(telemetry.START_TIME))
        yield start
        info = InfoMetricFamily("fluentbit_build", "Build version information.")
        info.add_metric(
            [], {"version": __version__, "edition": "shipper", "os": platform.system().lower()}
        )
        yield info
        reloads = GaugeMetricFamily(
            "fluentbit_hot_reloaded_times", "Number of hot reloads.", labels=["hostname"]
        )
        reloads.add_metric([_hostname()], self.registry.reloads)
        yield reloads


def _counters(
    table: tuple[tuple[str, str, str], ...], stats: list[InputStats] | list[OutputStats]
) -> Iterator[Metric]:
    for name, doc, attr in table:
        fam = CounterMetricFamily(name, doc, labels=["name"])
        for s in stats:
            fam.add_metric([s.name], getattr(s, attr))
        yield fam


_FILTER_COUNTERS = (
    ("fluentbit_filter_records", "Number of records entering the filter.", "records"),
    ("fluentbit_filter_drop_records", "Number of dropped records.", "drop_records"),
    ("fluentbit_filter_add_records", "Number of added records.", "add_records"),
    ("fluentbit_filter_emit_records", "Number of re-emitted records.", "emit_records"),
)


def _filter_counters(filters: list[FilterStats]) -> Iterator[Metric]:
    for name, doc, attr in _FILTER_COUNTERS:
        fam = CounterMetricFamily(name, doc, labels=["name"])
        for s in filters:
            fam.add_metric([s.name], getattr(s, attr))
        yield fam
    extra: dict[str, CounterMetricFamily] = {}
    for s in filters:
        for key, value in sorted(s.extra.items()):
            if key not in extra:
                extra[key] = CounterMetricFamily(
                    f"shipper_filter_{key}", f"Filter counter {key}.", labels=["name"]
                )
            extra[key].add_metric([s.name], value)
    yield from extra.values()


def _input_gauges(inputs: list[InputStats]) -> Iterator[Metric]:
    def gauge(name: str, doc: str) -> GaugeMetricFamily:
        return GaugeMetricFamily(name, doc, labels=["name"])

    files_open = gauge("shipper_input_files_open", "Files open now.")
    behind = gauge(
        "shipper_input_bytes_behind",
        "Bytes written to followed files and not read yet (sum over files).",
    )
    per_file = GaugeMetricFamily(
        "shipper_input_file_bytes_behind",
        f"Bytes not read yet of the {BEHIND_FILES_MAX} files furthest "
        "behind (files caught up have no series).",
        labels=["name", "path"],
    )
    buffered = gauge(
        "shipper_input_buffer_bytes", "Bytes of records read and not yet delivered by every output."
    )
    limit = gauge("shipper_input_buffer_limit_bytes", "Mem_Buf_Limit.")
    paused = gauge("shipper_input_paused", "1 while reading waits for Mem_Buf_Limit.")
    for s in inputs:
        files_open.add_metric([s.name], s.files_open)
        by_path = s.behind_probe() if s.behind_probe is not None else s.bytes_behind
        behind.add_metric([s.name], sum(by_path.values()))
        lagging = sorted(((n, p) for p, n in by_path.items() if n > 0), reverse=True)
        for n, path in lagging[:BEHIND_FILES_MAX]:
            per_file.add_metric([s.name, path], n)
        buffered.add_metric([s.name], s.buffer_bytes)
        limit.add_metric([s.name], s.buffer_limit)
        paused.add_metric([s.name], 1 if s.paused else 0)
    yield from (files_open, behind, per_file, buffered, limit, paused)


_HOST: list[str] = []


def _hostname() -> str:
    if not _HOST:
        _HOST.append(socket.gethostname())
    return _HOST[0]


def prometheus_registry(registry: Registry | None = None) -> CollectorRegistry:
    """Our families, plus the process's own (memory, CPU, fds) under shipper_process_*: the
    unprefixed process_start_time_seconds is Fluent Bit's, from the collector above."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(ShipperCollector(registry))
    if os.path.isdir("/proc/self"):
        ProcessCollector(namespace="shipper", registry=reg)
    return reg


def metrics_json(registry: Registry | None = None) -> dict[str, object]:
    """/api/v1/metrics: Fluent Bit's shape, {"input": {name: {...}}, "filter": {},
    "output": {name: {...}}}."""
    reg = registry or telemetry.REGISTRY
    return {
        "input": {
            s.name: {
                "records": s.records,
                "bytes": s.bytes,
                "files_opened": s.files_opened,
                "files_closed": s.files_closed,
                "files_rotated": s.files_rotated,
            }
            for s in reg.live_inputs()
        },
        "filter": {
            s.name: {
                "records": s.records,
                "drop_records": s.drop_records,
                "add_records": s.add_records,
                **({"emit_records": s.emit_records} if s.emit_records else {}),
                **s.extra,
            }
            for s in reg.filters.values()
        },
        "output": {
            s.name: {
                "proc_records": s.proc_records,
                "proc_bytes": s.proc_bytes,
                "errors": s.errors,
                "retries": s.retries,
                "retries_failed": s.retries_failed,
                "dropped_records": s.dropped_records,
            }
            for s in reg.live_outputs()
        },
    }


@dataclass(frozen=True, slots=True)
class Health:
    """Fluent Bit's /api/v2/health fields."""

    status: str  # "ok" or "error"
    errors: int  # output errors within the last HC_Period
    retries_failed: int  # batches dropped at Retry_Limit within the last HC_Period
    error_limit: int
    retry_failure_limit: int
    period_limit: int

    @property
    def healthy(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def health(
    service: ServiceOptions, registry: Registry | None = None, now: float | None = None
) -> Health:
    """Unhealthy when, within the last HC_Period, the outputs' errors exceed HC_Errors_Count
    or their failed retries exceed HC_Retry_Failure_Count (both strictly, as Fluent Bit).
    With Health_Check off the agent is healthy while it serves."""
    reg = registry or telemetry.REGISTRY
    mono = time.monotonic() if now is None else now
    since = mono - service.hc_period
    errors = sum(_count_since(s.error_times, since) for s in reg.live_outputs())
    failed = sum(_count_since(s.retry_failure_times, since) for s in reg.live_outputs())
    bad = service.health_check and (
        errors > service.hc_errors_count or failed > service.hc_retry_failure_count
    )
    return Health(
        "error" if bad else "ok",
        errors,
        failed,
        service.hc_errors_count,
        service.hc_retry_failure_count,
        int(service.hc_period),
    )


def _count_since(times: deque[float], since: float) -> int:
    # the deques are in time order: count from the newest end, stop at the first older one
    n = 0
    for t in reversed(times):
        if t < since:
            break
        n += 1
    return n
