"""The agent's life: startup, main loop, shutdown (uvicorn's three phases).

Signals only set flags: SIGTERM/SIGINT ask for a graceful stop (stop reading, deliver, store
offsets, exit within Grace); SIGHUP asks for a reload when Hot_Reload is on. A second SIGINT
or SIGTERM stops at once. The HTTP server (HTTP_Server on) lives as long as the app, across
reloads, and can ask for a reload as SIGHUP does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from shipper import telemetry
from shipper.config.model import Document
from shipper.config.service import ServiceOptions
from shipper.outputs.base import Output
from shipper.pipeline import Pipeline, log_level
from shipper.reload import hand_over

if TYPE_CHECKING:  # aiohttp is slow to import: imported only with HTTP_Server on
    from shipper.server import HttpServer

log = logging.getLogger(__name__)


class App:
    def __init__(
        self,
        doc: Document,
        *,
        reload_doc: Callable[[], Document] | None = None,
        outputs: Sequence[Output] = (),
    ) -> None:
        """`outputs`: built in code, besides the document's (no reload then)."""
        self.doc = doc
        self.reload_doc = reload_doc
        self.pipeline = Pipeline.build(doc, outputs=outputs)  # validates before anything is read
        self.should_exit = asyncio.Event()
        self.should_reload = asyncio.Event()
        self.reloads = 0
        self.exit_code = 0
        self.reloading = False
        self.server: HttpServer | None = None

    # -- what the HTTP server sees ---------------------------------------------------------
    @property
    def service(self) -> ServiceOptions:
        return self.pipeline.service

    @property
    def reload_count(self) -> int:
        return self.reloads

    def request_reload(self) -> tuple[str, int]:
        """POST/PUT /api/v2/reload, with Fluent Bit's answers."""
        if not self.pipeline.service.hot_reload or self.reload_doc is None:
            return "not enabled", -1
        if self.reloading or self.should_reload.is_set():
            return "in progress", -2
        self.should_reload.set()
        return "done", 0

    # -- phases ----------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        try:
            try:
                tasks = await self.startup()
            except OSError as exc:
                service = self.pipeline.service
                log.error(
                    "cannot serve HTTP on %s:%d (HTTP_Listen, HTTP_Port): %s",
                    service.http_listen,
                    service.http_port,
                    exc.strerror or exc,
                )
                for inp in self.pipeline.inputs:
                    inp.close()
                return 1
            return await self.main_loop(tasks)
        finally:
            await self._stop_server()
            self._remove_signals(loop)

    async def startup(self) -> list[asyncio.Task[None]]:
        log.info(
            "shipper starting: %d input(s), %d filter(s), %d output(s) from %s",
            len(self.pipeline.inputs),
            len(self.pipeline.filters),
            len(self.pipeline.outputs),
            self.doc.source,
        )
        # Bind before reading anything: a port in use fails the start, not half of it.
        await self._start_server(self.pipeline.service)
        return await self.pipeline.start(on_fatal=self._on_fatal)

    async def main_loop(self, tasks: list[asyncio.Task[None]]) -> int:
        while True:
            exit_wait = asyncio.ensure_future(self.should_exit.wait())
            reload_wait = asyncio.ensure_future(self.should_reload.wait())
            running = [t for t in tasks if not t.done()]
            await asyncio.wait(
                [exit_wait, reload_wait, *running], return_when=asyncio.FIRST_COMPLETED
            )
            exit_wait.cancel()
            reload_wait.cancel()
            crashed = [t for t in tasks if t.done() and (t.cancelled() or t.exception())]
            if all(t.done() for t in tasks) and not crashed:
                log.info("every input finished")
                return await self.shutdown(tasks)
            if crashed:
                for t in crashed:
                    exc = t.exception() if not t.cancelled() else None
                    log.critical(
                        "input %s stopped unexpectedly: %r", t.get_name(), exc, exc_info=exc
                    )
                await self.shutdown(tasks)
                return 1
            if self.should_exit.is_set():
                return await self.shutdown(tasks)
            if self.should_reload.is_set():
                self.should_reload.clear()
                tasks = await self.reload(tasks)

    def _on_fatal(self, reason: str) -> None:
        """An output can never deliver again (stdout closed): stop, and say so by exit code."""
        self.exit_code = 1
        self.should_exit.set()

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> int:
        grace = self.pipeline.service.grace
        log.info("shutting down: draining for up to %.1fs", grace)
        await self.pipeline.shutdown(tasks, grace=grace)
        log.info("stopped")
        return self.exit_code

    async def reload(self, tasks: list[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
        """Build and validate the new pipeline first: a bad config keeps the old one running.
        Then the old one hands its files over (shipper.reload) and the new one starts."""
        if self.reload_doc is None:
            return tasks
        self.reloading = True
        try:
            mark = telemetry.REGISTRY.mark()
            try:
                doc = self.reload_doc()
                new = Pipeline.build(doc)
            except Exception as exc:  # ConfigError, or a plugin refusing its options
                telemetry.REGISTRY.rollback(mark)
                telemetry.reload_refused(exc)
                return tasks
            old = self.pipeline
            log.info(
                "reloading %s: draining the running pipeline for up to %.1fs",
                doc.source,
                old.service.grace,
            )
            await hand_over(old, tasks, new)
            telemetry.REGISTRY.retire(mark)
            self.doc, self.pipeline = doc, new
            await self._move_server(old.service, new.service)
            if new.service.log_level != old.service.log_level:
                # only when the file changed it: a -v/-q given at start stays otherwise
                logging.getLogger("shipper").setLevel(log_level(new.service.log_level))
            tasks = await new.start(on_fatal=self._on_fatal)
            self.reloads += 1
            telemetry.reload_done(self.reloads, doc.source)
            return tasks
        finally:
            self.reloading = False

    # -- HTTP server -----------------------------------------------------------------------
    async def _start_server(self, service: ServiceOptions) -> None:
        if not service.http_server:
            return
        from shipper.server import HttpServer

        server = HttpServer(self, service.http_listen, service.http_port)
        await server.start()
        self.server = server

    async def _stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.stop()

    async def _move_server(self, old: ServiceOptions, new: ServiceOptions) -> None:
        """Rebind only when HTTP_Server/Listen/Port changed: scrapers keep their connection
        otherwise (the health rule and reload switch are read live from `service`)."""
        where = (new.http_server, new.http_listen, new.http_port)
        if (old.http_server, old.http_listen, old.http_port) == where and (
            self.server is not None
        ) == new.http_server:
            return
        await self._stop_server()
        try:
            await self._start_server(new)
        except OSError as exc:
            log.error(
                "reload: cannot serve HTTP on %s:%d: %s; running without it",
                new.http_listen,
                new.http_port,
                exc.strerror or exc,
            )

    # -- signals ---------------------------------------------------------------------------
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_signal_handler(signal.SIGTERM, self._on_exit_signal)
        loop.add_signal_handler(signal.SIGINT, self._on_exit_signal)
        loop.add_signal_handler(signal.SIGHUP, self._on_hup)

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def _on_exit_signal(self) -> None:
        if self.should_exit.is_set():
            raise SystemExit(1)
        self.should_exit.set()

    def _on_hup(self) -> None:
        # Unlike the endpoint, a SIGHUP during a reload is queued: the file may have changed
        # again after the running reload read it.
        if self.pipeline.service.hot_reload and self.reload_doc is not None:
            self.should_reload.set()
        else:
            log.info("SIGHUP ignored: Hot_Reload is off")
