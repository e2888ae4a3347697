"""Where a node does its bulk crypto: sealing and signing a send, verifying and opening
a transfer.

Theory of operation. That work is about 0.15 ms of libsodium per frame, and libsodium
lets go of the GIL while it runs. A handful of frames is done on the event loop,
where it is; from ``OFF_LOOP_FRAMES`` frames in one call it is done one of two ways,
chosen by ``[delivery] crypto_threads``:

- **in a worker thread** (the default). A node alone on its machine then uses a second
  core for crypto while its loop stores, sends and gossips. The price is the GIL:
  the thread takes it back after every libsodium call, and while the loop is busy each
  of those waits is a hand-off between threads.
- **on the loop, in slices** of about ``SLICE_FRAMES`` frames, letting every other task
  of the loop run between two slices (a slice is a few milliseconds). Where nodes
  share the machine's cores (the two nodes of ``govnode bench delivery``, several
  nodes on one small server) the other node already keeps the other core busy, and
  the hand-offs are pure cost: the bench's two nodes use about 5-9% less CPU per
  document this way, and deliver 3-4% more documents per second.

Either way the results come back in the order of the items, each item's own.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence, TypeVar

OFF_LOOP_FRAMES = 16  # from this many frames in one call; below, the hop costs more
SLICE_FRAMES = 16  # frames between two turns of the loop when crypto runs on it

Item = TypeVar("Item")
Result = TypeVar("Result")


async def map_crypto(work: Callable[[Item], Result], items: Sequence[Item], *,
                     in_threads: bool, frames: Callable[[Item], int] = lambda item: 1
                     ) -> list[Result]:
    """``[work(item) for item in items]``, done where this node does its bulk crypto;
    ``frames(item)`` is how many frames an item's work seals or checks."""
    weights = [frames(item) for item in items]
    if sum(weights) < OFF_LOOP_FRAMES:
        return [work(item) for item in items]
    if in_threads:
        return await asyncio.to_thread(lambda: [work(item) for item in items])
    results: list[Result] = []
    in_slice = 0
    for item, weight in zip(items, weights):
        if in_slice >= SLICE_FRAMES:
            await asyncio.sleep(0)  # the loop's other tasks: transfers, gossip, pages
            in_slice = 0
        results.append(work(item))
        in_slice += weight
    return results
