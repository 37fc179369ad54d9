"""The agent's life: startup, main loop, shutdown (uvicorn's three phases).

Signals only set flags: SIGTERM/SIGINT ask for a graceful stop (stop reading, deliver, store
offsets, exit within Grace); SIGHUP asks for a reload when Hot_Reload is on. A second SIGINT
or SIGTERM stops at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable

from shipper.config.model import ConfigError, Document
from shipper.pipeline import Pipeline

log = logging.getLogger(__name__)


class App:
    def __init__(self, doc: Document, *, reload_doc: Callable[[], Document] | None = None) -> None:
        self.doc = doc
        self.reload_doc = reload_doc
        self.pipeline = Pipeline.build(doc)  # validates before anything is read
        self.should_exit = asyncio.Event()
        self.should_reload = asyncio.Event()
        self.force_exit = False
        self.reloads = 0

    # -- phases ----------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        tasks = await self.startup()
        try:
            return await self.main_loop(tasks)
        finally:
            self._remove_signals(loop)

    async def startup(self) -> list[asyncio.Task[None]]:
        log.info("shipper starting: %d input(s), %d filter(s), %d output(s) from %s",
                 len(self.pipeline.inputs), len(self.pipeline.filters),
                 len(self.pipeline.outputs), self.doc.source)
        return await self.pipeline.start()

    async def main_loop(self, tasks: list[asyncio.Task[None]]) -> int:
        while True:
            exit_wait = asyncio.ensure_future(self.should_exit.wait())
            reload_wait = asyncio.ensure_future(self.should_reload.wait())
            running = [t for t in tasks if not t.done()]
            await asyncio.wait([exit_wait, reload_wait, *running],
                                         return_when=asyncio.FIRST_COMPLETED)
            exit_wait.cancel()
            reload_wait.cancel()
            crashed = [t for t in tasks if t.done() and (t.cancelled() or t.exception())]
            if all(t.done() for t in tasks) and not crashed:
                log.info("every input finished")
                return await self.shutdown(tasks)
            if crashed:
                for t in crashed:
                    exc = t.exception() if not t.cancelled() else None
                    log.critical("input %s stopped unexpectedly: %r", t.get_name(), exc,
                                 exc_info=exc)
                await self.shutdown(tasks)
                return 1
            if self.should_exit.is_set():
                return await self.shutdown(tasks)
            if self.should_reload.is_set():
                self.should_reload.clear()
                tasks = await self.reload(tasks)

    async def shutdown(self, tasks: list[asyncio.Task[None]]) -> int:
        grace = self.pipeline.service.grace
        log.info("shutting down: draining for up to %.1fs", grace)
        await self.pipeline.shutdown(tasks, grace=grace)
        log.info("stopped")
        return 0

    async def reload(self, tasks: list[asyncio.Task[None]]) -> list[asyncio.Task[None]]:
        """Build the new pipeline first (a bad config keeps the old one running)."""
        if self.reload_doc is None:
            return tasks
        try:
            doc = self.reload_doc()
            new = Pipeline.build(doc)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return tasks
        await self.pipeline.shutdown(tasks, grace=self.pipeline.service.grace, keep_held=True)
        self.doc, self.pipeline = doc, new
        self.reloads += 1
        log.info("configuration reloaded (%d)", self.reloads)
        return await self.pipeline.start()

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
            self.force_exit = True
            raise SystemExit(1)
        self.should_exit.set()

    def _on_hup(self) -> None:
        if self.pipeline.service.hot_reload:
            self.should_reload.set()
        else:
            log.info("SIGHUP ignored: Hot_Reload is off")
