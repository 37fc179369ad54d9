"""The agent's own log on stderr, in Fluent Bit's line shape (cli and `shipper tail`)."""

from __future__ import annotations

import logging
import sys
import time


class _Levels(logging.Formatter):
    """Fluent Bit's log line shape: [2026/11/28 10:07:08] [ info] [tail.0] message."""

    NAMES = {
        logging.DEBUG: "debug",
        logging.INFO: " info",
        logging.WARNING: " warn",
        logging.ERROR: "error",
        logging.CRITICAL: "error",
    }

    def format(self, record: logging.LogRecord) -> str:
        when = time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(record.created))
        level = self.NAMES.get(record.levelno, "info")
        who = record.name.removeprefix("shipper.").removeprefix("shipper")
        who = f" [{who}]" if who else ""
        text = f"[{when}] [{level}]{who} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def setup_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Levels())
    root = logging.getLogger("shipper")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
