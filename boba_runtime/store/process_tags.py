"""`host:pid:random` tags: which process holds a claim (an outbox row being sent, a call
record being written), and whether that process is certainly gone.

One answer for every claim kind: another host cannot be checked (the claim's age
decides), a pid on this host that no longer runs is gone, someone else's live process is
not. Whether a tag with this very pid but another random part is gone depends on the
claim: a restarted container's pid 1 reuses the pid (gone), but tests open several
stores in one process (alive).
"""

from __future__ import annotations

import os
import socket


def new_process_tag() -> str:
    """`host:pid:random` (the random part tells a restarted container's pid 1 from its
    previous life)."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"


def tagged_process_is_gone(tag: str, me: str, *, same_pid_is_gone: bool) -> bool:
    """True when `tag` names a process on this host that is certainly not running."""
    host, _, rest = tag.partition(":")
    pid_text, _, _ = rest.partition(":")
    if tag == me or host != me.partition(":")[0] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return same_pid_is_gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    return False
