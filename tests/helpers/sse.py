"""A tiny SSE reader for tests: parses `id:` / `data:` / comment lines into frames."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field


@dataclass
class SseFrame:
    id: int | None = None
    data: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)  # every field name seen (e.g. "event")

    @property
    def is_ping(self) -> bool:
        return not self.data and "ping" in self.comments


async def sse_frames(lines: AsyncIterator[str]) -> AsyncIterator[SseFrame]:
    """Frames from an `httpx.Response.aiter_lines()`; a blank line ends each frame."""
    frame = SseFrame()
    async for line in lines:
        if line == "":
            if frame.data or frame.comments or frame.id is not None:
                yield frame
            frame = SseFrame()
            continue
        if line.startswith(":"):
            frame.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        frame.fields.append(name)
        if name == "id":
            frame.id = int(value)
        elif name == "data":
            frame.data.append(value)
