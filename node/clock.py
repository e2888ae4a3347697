"""The node's one source of wall-clock time (protocol/ is handed times, never reads them)."""

import asyncio
import time


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less if ``stop`` is set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
