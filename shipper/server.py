"""The HTTP server of `HTTP_Server on`: Fluent Bit's monitoring endpoints on HTTP_Listen:HTTP_Port.

  /                            build information (JSON)
  /api/v1/uptime               uptime (JSON)
  /api/v1/health               `ok` (200) or `error` (500) by the Health_Check rule
  /api/v2/health               the same as JSON, with the counts behind it
  /api/v1/metrics              counters per plugin instance (JSON)
  /api/v1/metrics/prometheus   Prometheus text (OpenMetrics when the scraper asks for it)
  /api/v2/metrics/prometheus   the same
  /api/v2/reload               POST/PUT: hot reload; GET: {"hot_reload_count": N}

It runs on the agent's event loop: handlers only read counters and set a flag, so a scrape
never waits for the pipeline and the pipeline never waits for a scrape.
"""

from __future__ import annotations

import logging
import platform
import time
from typing import Protocol

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from shipper import __version__, metrics, telemetry
from shipper.config.service import ServiceOptions

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 1.0  # seconds open connections (keep-alive scrapers) get at stop


class Control(Protocol):
    """What the server needs from the app."""

    @property
    def service(self) -> ServiceOptions: ...

    @property
    def reload_count(self) -> int: ...

    def request_reload(self) -> tuple[str, int]:
        """Ask for a reload: ("done", 0), ("not enabled", -1) or ("in progress", -2)."""
        ...


class HttpServer:
    def __init__(self, control: Control, host: str, port: int) -> None:
        self.control = control
        self.host = host
        self.port = port
        self._prometheus = metrics.prometheus_registry()
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind exactly HTTP_Listen:HTTP_Port; OSError when that is not possible."""
        app = web.Application()
        app.router.add_get("/", self._root)
        app.router.add_get("/api/v1/uptime", self._uptime)
        app.router.add_get("/api/v1/health", self._health_v1)
        app.router.add_get("/api/v2/health", self._health_v2)
        app.router.add_get("/api/v1/metrics", self._metrics_json)
        app.router.add_get("/api/v1/metrics/prometheus", self._prometheus_text)
        app.router.add_get("/api/v2/metrics/prometheus", self._prometheus_text)
        app.router.add_route("*", "/api/v2/reload", self._reload)
        # No access log: a probe every few seconds would drown the agent's own log.
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        log.info("HTTP server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- handlers -------------------------------------------------------------------------
    async def _root(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "fluent-bit": {"version": __version__, "edition": "shipper", "flags": []},
                "shipper": {"version": __version__, "python": platform.python_version()},
            }
        )

    async def _uptime(self, request: web.Request) -> web.Response:
        secs = int(time.time() - telemetry.START_TIME)
        days, rest = divmod(secs, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        human = (
            f"Fluent Bit has been running:  {days} day, {hours} hour, {minutes} minute "
            f"and {seconds} second"
        )
        return web.json_response({"uptime_sec": secs, "uptime_hr": human})

    async def _health_v1(self, request: web.Request) -> web.Response:
        state = metrics.health(self.control.service)
        return web.Response(text=f"{state.status}\n", status=200 if state.healthy else 500)

    async def _health_v2(self, request: web.Request) -> web.Response:
        state = metrics.health(self.control.service)
        return web.json_response(state.as_dict(), status=200 if state.healthy else 500)

    async def _metrics_json(self, request: web.Request) -> web.Response:
        return web.json_response(metrics.metrics_json())

    async def _prometheus_text(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(self._prometheus)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def _reload(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response({"hot_reload_count": self.control.reload_count})
        if request.method not in ("POST", "PUT"):
            return web.json_response({"reload": "method not allowed", "status": -3}, status=400)
        # Fluent Bit's answer shape. It answers "not enabled" with 200; a 400 makes
        # `curl -f` and deploy scripts notice that nothing will happen.
        answer, status = self.control.request_reload()
        return web.json_response(
            {"reload": answer, "status": status}, status=200 if status == 0 else 400
        )
