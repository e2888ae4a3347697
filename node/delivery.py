"""Outbound delivery: per-next-hop queues drained in batches, with capped backoff.

Theory of operation. Frames wait in the outbox (SQLite) keyed by next hop. One worker
per next hop takes the oldest frames (up to ``batch_frames`` and about ``batch_bytes``),
POSTs them to ``/v1/transfer`` and deletes exactly those the neighbour acknowledged
(accepted, or refused with a code, which is logged: a refused frame will never be
accepted later). A worker that fails backs off exponentially with full jitter, capped
at ``max_backoff_ms`` (default 60 s), so that a neighbour down for a day is retried
every minute, not once a day. Workers are independent: a hop that is down delays only
its own queue. A neighbour seen alive (a gossip exchange, or a transfer from it) is
retried at once, so a queue drains within moments of recovery.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import aiohttp

from protocol.errors import ProtocolError
from protocol.wire import Limits, pack, unpack

from node.context import NodeContext
from node.store.db import transaction

log = logging.getLogger("govnode.delivery")
TRANSFER_PATH = "/v1/transfer"
ACK_LIMITS = Limits(max_bytes=4 * 1024 * 1024, max_array_len=65536, max_map_len=8, max_depth=4)


@dataclass(frozen=True)
class DeliverySettings:
    batch_frames: int = 256
    batch_bytes: int = 4 * 1024 * 1024
    initial_backoff_ms: int = 200
    max_backoff_ms: int = 60_000
    request_timeout_ms: int = 30_000


class HopFailed(Exception):
    pass


class Delivery:
    def __init__(self, context: NodeContext, *, session: Callable[[], aiohttp.ClientSession],
                 peer_urls: Callable[[str], Sequence[str]], settings: DeliverySettings,
                 on_result: Callable[[str, bool, str], None] = lambda hop, ok, error: None,
                 rng: random.Random | None = None) -> None:
        self.context = context
        self.settings = settings
        self._session = session
        self._peer_urls = peer_urls
        self._on_result = on_result
        self._rng = rng or random.Random()
        self._wakeups: dict[str, asyncio.Event] = {}  # new frames for the hop
        self._alive: dict[str, asyncio.Event] = {}  # the hop was seen alive: stop backing off
        self._workers: dict[str, asyncio.Task] = {}
        self.failures: dict[str, int] = {}
        self.sent_frames = 0
        self.early_retries = 0  # backoffs cut short because the neighbour was seen alive
        self._stopping = False

    # --- control --------------------------------------------------------------

    def wake(self, hop: str) -> None:
        """New frames for ``hop``: make sure its worker runs and looks now."""
        if self._stopping:
            return
        self._wakeups.setdefault(hop, asyncio.Event()).set()
        worker = self._workers.get(hop)
        if worker is None or worker.done():
            self._workers[hop] = asyncio.create_task(self._work(hop), name=f"deliver to {hop}")

    def neighbour_alive(self, hop: str) -> None:
        """``hop`` answered something: forget its backoff and retry at once."""
        if self.failures.pop(hop, 0):
            self._alive.setdefault(hop, asyncio.Event()).set()

    async def start(self) -> None:
        for hop in (await self.context.outbox.depths()):
            self.wake(hop)

    async def stop(self) -> None:
        self._stopping = True
        for worker in self._workers.values():
            worker.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()

    # --- one hop ----------------------------------------------------------------

    async def _work(self, hop: str) -> None:
        wakeup = self._wakeups[hop]
        while True:
            wakeup.clear()
            batch = await self.context.outbox.batch(hop, max_frames=self.settings.batch_frames,
                                                    max_bytes=self.settings.batch_bytes)
            if not batch:
                await wakeup.wait()
                continue
            try:
                await self._transfer(hop, [q.frame for q in batch], [q.message_id for q in batch])
            except HopFailed as failure:
                await self._back_off(hop, str(failure))
                continue
            self.failures.pop(hop, None)

    async def _transfer(self, hop: str, frames: list[bytes], message_ids: list[bytes]) -> None:
        urls = self._peer_urls(hop)
        if not urls:
            raise HopFailed(f"no known endpoint for {hop}")
        body = pack({"from": self.context.node_id, "frames": frames})
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_ms / 1000)
        try:
            async with self._session().post(urls[0] + TRANSFER_PATH, data=body, timeout=timeout,
                                            headers=_MSGPACK) as response:
                answer = await response.read()
                status = response.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
            raise HopFailed(f"{urls[0]}: {type(error).__name__} {error}") from None
        if status != 200:
            raise HopFailed(f"{hop} answered HTTP {status}: {answer[:200]!r}")
        done = self._acknowledged(hop, answer, set(message_ids))
        async with transaction(self.context.db):
            await self.context.outbox.remove(done)
        self.sent_frames += len(done)
        self._on_result(hop, True, "")

    def _acknowledged(self, hop: str, answer: bytes, sent: set[bytes]) -> list[bytes]:
        try:
            ack = unpack(answer, ACK_LIMITS, what="transfer acknowledgement")
            accepted = [mid for mid in ack["accepted"] if mid in sent]
            for mid, code, detail in ack["rejected"]:
                if mid in sent:
                    log.error("%s refused frame %s: %s %s", hop, bytes(mid).hex(), code, detail)
                    accepted.append(mid)
        except (ProtocolError, KeyError, TypeError, ValueError) as error:
            raise HopFailed(f"{hop} sent an unreadable acknowledgement: {error}") from None
        return accepted

    async def _back_off(self, hop: str, error: str) -> None:
        failures = self.failures[hop] = self.failures.get(hop, 0) + 1
        self._on_result(hop, False, error)
        ceiling = min(self.settings.max_backoff_ms,
                      self.settings.initial_backoff_ms * 2 ** min(failures - 1, 20))
        delay = ceiling * (0.5 + self._rng.random() / 2) / 1000
        log.info("delivery to %s failed (%d in a row), retry in %.1f s: %s", hop, failures,
                 delay, error)
        alive = self._alive.setdefault(hop, asyncio.Event())
        alive.clear()
        try:  # new frames do not end the wait (they would hammer a dead hop); life does
            await asyncio.wait_for(alive.wait(), timeout=delay)
            self.early_retries += 1
        except asyncio.TimeoutError:
            pass


_MSGPACK = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}
