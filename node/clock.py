"""The node's one source of wall-clock time (protocol/ is handed times, never reads them)."""

import asyncio
import time

from protocol.frames import new_message_id


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> bytes:
    """A new time-ordered 16-byte id for a frame (SPEC §4)."""
    return new_message_id(created_at=now_ms())


def new_document_id() -> bytes:
    """A new 16-byte document id (公文标识), all random: people find a document by typing
    the first few hex digits of its id, which in a time-ordered id would be the time."""
    return new_message_id()


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
