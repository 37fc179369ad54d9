"""Secrets of the outputs (passwords, auth/token/key header values), scrubbed from every log
line of the agent whatever the log level and whoever logged it, tracebacks included."""

from __future__ import annotations

import logging
import re
import traceback

# header names whose values are secrets
SECRET_HEADER = re.compile(
    r"auth|token|key|secret|pass|cookie|session|signature|credential", re.IGNORECASE
)

_SECRETS: list[str] = []  # every output's secrets, longest first: scrubbed from all log lines


def register_secrets(values: list[str]) -> None:
    """Remember secrets for `redact` and make sure every log line of the agent is scrubbed."""
    known = set(_SECRETS) | {v for v in values if len(v) >= 3}
    _SECRETS[:] = sorted(known, key=len, reverse=True)
    root = logging.getLogger("shipper")
    targets: list[logging.Filterer] = [*root.handlers] or [root]
    for target in targets:
        if not any(isinstance(f, _Scrub) for f in target.filters):
            target.addFilter(_Scrub())


def redact(text: str) -> str:
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "*****")
    return text


class _Scrub(logging.Filter):
    """A handler filter: the final text of a log record, traceback included, without any
    registered secret, whoever logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not _SECRETS:
            return True
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = redact(text), ()
        return True
