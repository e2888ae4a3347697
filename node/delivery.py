"""Outbound delivery: per-next-hop queues drained in batches, with capped backoff.

Theory of operation. Frames wait in the outbox (SQLite) keyed by next hop. One worker
per next hop takes the oldest frames (up to ``batch_frames`` and about ``batch_bytes``),
POSTs them to ``/v1/transfer`` and deletes exactly those the neighbour acknowledged
(accepted, or refused with a code, which is logged: a refused frame will never be
accepted later). Frames the neighbour *deferred* (it cannot verify their origin yet:
a certificate still on its way; or it does not know their type: an older version)
stay queued for the next attempt. An answer that moves none of the frames counts as
a failed transfer, so a confused neighbour is backed off from, never asked in a loop.

Up to ``transfers_in_flight`` batches (default 2) of one hop travel at once, each with
other frames, so a busy neighbour finds the next batch waiting when it finishes one
instead of idling while this node handles the acknowledgement (the acknowledged frames
are deleted, a commit, beside the next transfer rather than before it); frames may therefore
arrive out of order, which the receiver's dedupe and the receipts' sequence numbers
already allow. When a transfer fails, the others in flight finish first, then the
worker backs off, exponentially with full jitter, capped
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
from node.http_client import Unreachable, post_msgpack
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
    transfers_in_flight: int = 2  # per hop: the neighbour works on one while the next travels


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
        sending: dict[asyncio.Task, set[bytes]] = {}  # transfers in flight, their frame ids
        removing: dict[asyncio.Task, set[bytes]] = {}  # acknowledged frames being deleted
        try:
            while True:
                wakeup.clear()
                _forget_removed(removing)
                if len(sending) < self.settings.transfers_in_flight:
                    batch = await self.context.outbox.batch(
                        hop, max_frames=self.settings.batch_frames,
                        max_bytes=self.settings.batch_bytes,
                        skip=set().union(*sending.values(), *removing.values()))
                    if batch:
                        ids = [q.message_id for q in batch]
                        transfer = asyncio.create_task(
                            self._transfer(hop, [q.frame for q in batch], ids))
                        sending[transfer] = set(ids)
                        continue
                    if not sending:
                        await wakeup.wait()
                        continue
                failure = await self._next_done(hop, sending, removing, wakeup)
                if failure is not None:  # let the others finish, then back off
                    if sending:
                        await asyncio.wait(list(sending))
                        self._collect(hop, sending, removing)
                    await self._back_off(hop, str(failure))
        finally:  # stopping: end the transfers too, and let them unwind (roll back)
            for transfer in sending:
                transfer.cancel()
            # Deletes of acknowledged frames take milliseconds: let them finish (one
            # cut short would only mean those frames are sent again, and deduplicated).
            await asyncio.gather(*sending, *removing, return_exceptions=True)

    async def _next_done(self, hop: str, sending: dict[asyncio.Task, set[bytes]],
                         removing: dict[asyncio.Task, set[bytes]],
                         wakeup: asyncio.Event) -> HopFailed | None:
        """Wait for a transfer to end (or, with room for another, for new frames)."""
        waiting: set[asyncio.Future] = set(sending)
        woken = None
        if len(sending) < self.settings.transfers_in_flight:
            woken = asyncio.ensure_future(wakeup.wait())
            waiting.add(woken)
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if woken is not None:
                woken.cancel()
        return self._collect(hop, sending, removing)

    def _collect(self, hop: str, sending: dict[asyncio.Task, set[bytes]],
                 removing: dict[asyncio.Task, set[bytes]]) -> HopFailed | None:
        """Forget finished transfers, starting the deletion of what each had acknowledged;
        the last failure among them, if any."""
        failure = None
        for transfer in [t for t in sending if t.done()]:
            del sending[transfer]
            error = transfer.exception()
            if isinstance(error, HopFailed):
                failure = error
            elif error is not None:
                raise error
            else:
                self.failures.pop(hop, None)
                done = transfer.result()
                if done:
                    removing[asyncio.create_task(self._remove(hop, done))] = set(done)
        return failure

    async def _remove(self, hop: str, message_ids: list[bytes]) -> None:
        """Delete acknowledged frames. Not durable (no fsync of its own), and a failure
        (say, the database locked by another process for longer than the wait) is only
        logged: a deletion lost either way means these frames go again, and the
        neighbour, which has them, deduplicates them. Here they go again at once, so
        that the next acknowledgement gets them deleted."""
        try:
            async with transaction(self.context.db, durable=False):
                await self.context.outbox.remove(message_ids)
        except Exception as error:  # noqa: BLE001 - see above; the worker carries on
            log.warning("could not delete %d frames %s acknowledged; sending them again: "
                        "%s", len(message_ids), hop, error)
            self.wake(hop)

    async def _transfer(self, hop: str, frames: list[bytes], message_ids: list[bytes]
                        ) -> list[bytes]:
        """POST one batch; the ids it is done with (accepted, or refused for good), which
        the worker deletes from the outbox. Their deletion (a commit) does not hold the
        place of the next transfer: the neighbour gets that one meanwhile."""
        urls = self._peer_urls(hop)
        if not urls:
            raise HopFailed(f"no known endpoint for {hop}")
        body = pack({"from": self.context.node_id, "frames": frames})
        try:
            status, answer = await post_msgpack(self._session(), urls[0] + TRANSFER_PATH, body,
                                                timeout_ms=self.settings.request_timeout_ms)
        except Unreachable as error:
            raise HopFailed(str(error)) from None
        if status != 200:
            raise HopFailed(f"{hop} answered HTTP {status}: {answer[:200]!r}")
        done, deferred = self._acknowledged(hop, answer, set(message_ids))
        self.sent_frames += len(done)
        self._on_result(hop, True, "")
        if deferred and not done:  # nothing moved: wait before asking again
            raise HopFailed(f"{hop} cannot take {len(deferred)} frame(s) yet")
        if not done and not deferred:  # an answer about none of them: do not spin
            raise HopFailed(f"{hop} acknowledged none of the {len(message_ids)} frames sent")
        return done

    def _acknowledged(self, hop: str, answer: bytes, sent: set[bytes]
                      ) -> tuple[list[bytes], list[bytes]]:
        """(frames done with: accepted or refused for good, frames to keep and retry)."""
        try:
            ack = unpack(answer, ACK_LIMITS, what="transfer acknowledgement")
            done = [mid for mid in ack["accepted"] if mid in sent]
            for mid, code, detail in ack["rejected"]:
                if mid in sent:
                    log.error("%s refused frame %s: %s %s", hop, bytes(mid).hex(), code, detail)
                    done.append(mid)
            deferred = [item[0] for item in ack.get("deferred", ()) if item[0] in sent]
        except (ProtocolError, KeyError, TypeError, ValueError, IndexError) as error:
            raise HopFailed(f"{hop} sent an unreadable acknowledgement: {error}") from None
        return done, deferred

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


def _forget_removed(removing: dict[asyncio.Task, set[bytes]]) -> None:
    """Drop finished deletions (``_remove`` logs its own failures), so that frames whose
    deletion failed are taken into batches again."""
    for removal in [task for task in removing if task.done()]:
        del removing[removal]

