"""Open-file headroom for `boba serve` (CONTRACT §7, issue #13 point 5).

Every call, event-stream client and store connection holds a file descriptor. Many
systems start a process with a soft `RLIMIT_NOFILE` of 1024 while allowing far more (the
hard limit): 1,000 idle SSE clients then exhausted it and `/voice` and `/healthz` stopped
answering. `boba serve` raises the soft limit to the hard one at start, and logs it.
"""

from __future__ import annotations

import logging

log = logging.getLogger("boba.serve")


def raise_open_files_limit() -> tuple[int, int] | None:
    """Soft `RLIMIT_NOFILE` := hard; returns (before, after), or None where unsupported."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:
        target = max(soft, 1 << 20)  # "unlimited" is refused as a soft limit on some systems
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as error:
            log.warning("open files limit stays %d: cannot raise it to %d (%s)",
                        soft, target, error)
            return soft, soft
    after = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    log.info("open files limit: %d (was %d; hard limit %d)", after, soft, hard)
    return soft, after
