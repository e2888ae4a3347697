"""Where a node does its bulk crypto: sealing and signing a send, verifying and opening
a transfer.

Theory of operation. That work costs about 0.15 ms of libsodium per 4 KiB frame, and
more for a bigger one, and libsodium lets go of the GIL while it runs. Work is
counted in frames weighted by size (``frame_weight``: one, and one more per 64 KiB a
frame holds). A call weighing less than ``OFF_LOOP_FRAMES`` is done on the event loop,
where it is; a heavier one is done one of two ways, chosen by
``[delivery] crypto_threads``:

- **in a worker thread** (the default). A node alone on its machine then uses a second
  core for crypto while its loop stores, sends and gossips. The price is the GIL:
  the thread takes it back after every libsodium call, and while the loop is busy each
  of those waits is a hand-off between threads.
- **on the loop, in slices** of at least ``SLICE_FRAMES`` weight (a slice ends after
  the item that reaches it), letting every other task of the loop run between two
  slices. A slice is a few milliseconds, or one big frame's work: an 8 MiB frame
  takes about 0.1 s to seal and sign, 40 ms to verify and open, on this 2-core
  machine. Where nodes share the machine's cores (the two nodes of ``govnode bench
  delivery``, several nodes on one small server) the other node already keeps the
  other core busy, and the hand-offs are pure cost: in the bench, about 5% less CPU
  per document this way.

Either way the results come back in the order of the items, each item's own.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Sequence, TypeVar

OFF_LOOP_FRAMES = 16  # from this weight in one call; below, the hop costs more than it frees
SLICE_FRAMES = 16  # weight done between two turns of the loop when crypto runs on it
WEIGHT_BYTES = 64 * 1024  # a frame weighs one more per this many bytes it holds

Item = TypeVar("Item")
Result = TypeVar("Result")


def frame_weight(size: int) -> int:
    """The weight of sealing or checking one frame of ``size`` bytes."""
    return 1 + size // WEIGHT_BYTES


async def map_crypto(work: Callable[[Item], Result], items: Sequence[Item], *,
                     in_threads: bool, weight: Callable[[Item], int]) -> list[Result]:
    """``[work(item) for item in items]``, done where this node does its bulk crypto;
    ``weight(item)`` is what the item's work weighs (``frame_weight``)."""
    weights = [weight(item) for item in items]
    if sum(weights) < OFF_LOOP_FRAMES:
        return [work(item) for item in items]
    if in_threads:
        return await _in_a_thread(lambda: [work(item) for item in items])
    results: list[Result] = []
    in_slice = 0
    for item, item_weight in zip(items, weights):
        if in_slice >= SLICE_FRAMES:
            await asyncio.sleep(0)  # the loop's other tasks: transfers, gossip, pages
            in_slice = 0
        results.append(work(item))
        in_slice += item_weight
    return results


async def _in_a_thread(run: Callable[[], Result]) -> Result:
    return await asyncio.to_thread(run)
