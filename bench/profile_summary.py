"""Summarise a py-spy `--format raw` profile (collapsed stacks) of `boba serve` under load.

    py-spy record --pid SERVER_PID --duration 18 --rate 250 --format raw -o prof.collapsed
    python bench/profile_summary.py prof.collapsed

Prints, for each part of the stack we care about, the share of samples in which it appears
(inclusive: a sample counts for every part on its stack), and the top self-time frames.
"""

from __future__ import annotations

import collections
import sys

# (label, substring of a frame's "function (file:line)" text)
PARTS = [
    ("the call core (boba_proto.call / tools)", "boba_proto/call.py"),
    ("resampler + μ-law (boba_proto.audio)", "boba_proto/audio.py"),
    ("msgspec / JSON wire types (boba_proto.twilio, .agent)", "boba_proto/twilio.py"),
    ("  agent wire types", "boba_proto/agent.py"),
    ("call runtime (boba_runtime.call.runner)", "boba_runtime/call/runner.py"),
    ("agent link (boba_runtime.call.agent_link; also the raw /twilio reader since #18's listener)",
     "boba_runtime/call/agent_link.py"),
    ("public port: raw /twilio off Hypercorn (boba_runtime.cli.public_port)",
     "boba_runtime/cli/public_port.py"),
    ("trio-websocket (agent leg, before #18)", "trio_websocket/"),
    ("websockets sans-I/O (agent leg after #18; both legs with the listener)", "websockets/"),
    ("wsproto (framing: both legs before #18, the Twilio leg after)", "wsproto/"),
    ("/twilio handler (boba_web.twilio_stream: beside Quart, or the raw route)",
     "boba_web/twilio_stream.py"),
    ("Hypercorn", "hypercorn/"),
    ("Quart", "quart/"),
    ("trio core (scheduler, I/O manager)", "trio/_core/"),
    ("trio sockets / streams", "trio/_highlevel_socket.py"),
    ("trio memory channels", "trio/_channel.py"),
]


def main(path: str) -> int:
    total = 0
    inclusive: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    idle = 0
    for line in open(path, encoding="utf-8"):
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        if "get_events" in frames[-1] or "_thread_cache.py" in frames[-1]:
            idle += count  # the loop waiting in epoll, or a parked worker thread
            total -= count
            continue
        for label, needle in PARTS:
            if any(needle in frame for frame in frames):
                inclusive[label] += count
        leaf[frames[-1]] += count
    print(f"{total} busy samples ({idle} idle ones left out: epoll waits, parked threads)")
    print("\nshare of samples (inclusive):")
    for label, _ in PARTS:
        print(f"  {100 * inclusive[label] / max(total, 1):5.1f} %  {label}")
    print("\ntop self-time frames:")
    for frame, count in leaf.most_common(15):
        print(f"  {100 * count / max(total, 1):5.1f} %  {frame[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
