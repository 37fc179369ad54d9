"""The [SERVICE] section's key table."""

from __future__ import annotations

from dataclasses import dataclass

from shipper.config.schema import opt


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceOptions:
    flush: float = opt("Flush", "time", 1.0, help="Seconds records are batched for outputs.")
    grace: float = opt("Grace", "time", 5.0, help="Seconds to drain on SIGTERM before exit.")
    log_level: str = opt(
        "Log_Level",
        "str",
        "info",
        choices=("off", "error", "warn", "warning", "info", "debug", "trace"),
        help="The agent's own log level (on stderr).",
    )
    daemon: bool = opt("Daemon", "bool", False, help="Accepted; shipper stays in the foreground.")
    http_server: bool = opt(
        "HTTP_Server", "bool", False, help="Serve health, metrics and reload over HTTP."
    )
    http_listen: str = opt("HTTP_Listen", "str", "0.0.0.0", help="Address of the HTTP server.")
    http_port: int = opt("HTTP_Port", "int", 2020, help="Port of the HTTP server.")
    hot_reload: bool = opt(
        "Hot_Reload", "bool", False, help="Reload the configuration on SIGHUP or /api/v2/reload."
    )
    parsers_file: tuple[str, ...] = opt(
        "Parsers_File",
        "str",
        (),
        multi=True,
        help="A file of [PARSER]/[MULTILINE_PARSER] sections (repeatable; a relative name "
        "is looked up in the working directory, then in the configuration's directory).",
    )
    health_check: bool = opt(
        "Health_Check", "bool", False, help="Let /api/v1/health report errors by the HC_* rule."
    )
    hc_errors_count: int = opt("HC_Errors_Count", "int", 5, help="Errors per period for unhealthy.")
    hc_retry_failure_count: int = opt(
        "HC_Retry_Failure_Count", "int", 5, help="Failed retries per period for unhealthy."
    )
    hc_period: float = opt("HC_Period", "time", 60.0, help="Health check period in seconds.")
    scheduler_base: float = opt(
        "scheduler.base", "time", 5.0, help="Base of the exponential retry backoff, in seconds."
    )
    scheduler_cap: float = opt(
        "scheduler.cap", "time", 2000.0, help="Longest retry wait, in seconds."
    )
    storage_path: str | None = opt("storage.path", "str", None, help="Accepted for compatibility.")
    storage_sync: str = opt("storage.sync", "str", "normal", help="Accepted for compatibility.")
    storage_metrics: bool = opt(
        "storage.metrics", "bool", False, help="Accepted for compatibility."
    )
    storage_backlog_mem_limit: int = opt(
        "storage.backlog.mem_limit", "size", 5 * 1024 * 1024, help="Accepted for compatibility."
    )
