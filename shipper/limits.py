"""Process limits an agent that keeps every followed file open needs raised.

Container runtimes and systemd units often start processes with a soft limit of 1024 open
files and a much higher hard limit. tail keeps each followed file open, so at the soft limit
a DaemonSet following thousands of files would silently follow only part of them. Raising the
soft limit to the hard one is what Go's runtime and Fluent Bit's packaging do too.
"""

from __future__ import annotations

import logging
import resource

log = logging.getLogger(__name__)


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, exc)
            return soft
        log.debug("open-files limit raised from %d to %d", soft, target)
        return target
    return soft
