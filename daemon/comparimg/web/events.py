"""Server-sent events: a fan-out of daemon and web events to every open `/api/events` stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

QUEUE_SIZE = 256


class EventHub:
    """Publishes (kind, data) events to subscribers; a subscriber too slow to keep up loses old events."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue] = set()
        self.closed = False

    def subscribe(self) -> asyncio.Queue:
        """Return a new queue that receives every event published from now on (None when closing)."""
        queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        """Stop delivering to `queue`."""
        self._queues.discard(queue)

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        """Deliver one event to every subscriber (call on the event loop thread)."""
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait((kind, data))

    def close(self) -> None:
        """Tell every subscriber to end its stream."""
        self.closed = True
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)


def sse_frame(kind: str, data: dict[str, Any]) -> bytes:
    """Return one server-sent event as bytes: `event: KIND` and its JSON `data` line."""
    payload = json.dumps({"type": kind, **data}, separators=(",", ":"), default=str)
    return f"event: {kind}\ndata: {payload}\n\n".encode()
