"""How delivery treats a neighbour's answers it cannot act on: it backs off, never spins.

A real root node queues frames for a next hop whose URL points at a small aiohttp
server playing a neighbour that misbehaves (a buggy or older peer); that peer is the
only stand-in here.
"""

from __future__ import annotations

import logging
import sqlite3

import aiohttp
import pytest
from aiohttp import web

from federation import Federation, wait_until
from node.delivery import ACK_LIMITS, Delivery, DeliverySettings
from node.store.db import transaction
from protocol import frames
from protocol.messages import DocumentBody
from protocol.wire import pack, unpack

pytestmark = pytest.mark.asyncio

HOP = "gd.elsewhere"


async def serve(transfer) -> tuple[web.AppRunner, str]:
    """A stand-in neighbour answering ``POST /v1/transfer`` with ``transfer``."""
    app = web.Application()
    app.router.add_post("/v1/transfer", transfer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def neighbour(answer: dict) -> tuple[web.AppRunner, str, list[int]]:
    requests: list[int] = []

    async def transfer(request: web.Request) -> web.Response:
        requests.append(len(await request.read()))
        return web.Response(body=pack(answer), content_type="application/msgpack")

    runner, url = await serve(transfer)
    return runner, url, requests


@pytest.mark.parametrize("answer", [
    {"accepted": [], "rejected": [], "deferred": []},
    {"accepted": [b"\x00" * 16], "rejected": [[b"", "malformed", "?"]], "deferred": []},
], ids=["empty", "about-other-frames"])
async def test_an_answer_about_none_of_the_frames_is_a_failure_not_a_retry_loop(
        tmp_path, answer):
    federation = Federation(tmp_path)
    root = await federation.create_root("gd")
    runner, url, requests = await neighbour(answer)
    async with aiohttp.ClientSession() as session:
        delivery = Delivery(root.context, session=lambda: session, peer_urls=lambda hop: (url,),
                            settings=DeliverySettings(initial_backoff_ms=60_000))
        try:
            message_id = frames.new_message_id()
            made = frames.make_frame(DocumentBody(b"\x01" * 64), origin="gd", destination=HOP,
                                     created_at=1, message_id=message_id)
            async with transaction(root.db):
                await root.context.outbox.add(message_id, HOP, HOP,
                                              frames.encode_frame(made, root.keys), 1)
            delivery.wake(HOP)
            await wait_until(lambda: delivery.failures.get(HOP, 0) >= 1,
                             what="the transfer to count as failed")
            assert len(requests) == 1  # backing off (a minute), not asking again at once
            assert await root.context.outbox.depths() == {HOP: 1}  # the frame is kept
        finally:
            await delivery.stop()
            await runner.cleanup()
            await federation.stop_all()


async def test_frames_whose_deletion_failed_are_sent_again_and_then_deleted(
        tmp_path, monkeypatch, caplog):
    # Another process holds the write lock just when the acknowledgement arrives, for
    # longer than a node waits for it: the deletion fails. Nothing is lost (the
    # neighbour has the frames); they go again, and the next answer gets them deleted.
    monkeypatch.setattr("node.store.connection.LOCK_WAIT_S", 0.3)
    federation = Federation(tmp_path)
    root = await federation.create_root("gd")
    held: list[sqlite3.Connection] = []
    requests: list[int] = []

    async def transfer(request: web.Request) -> web.Response:
        batch = unpack(await request.read(), ACK_LIMITS)["frames"]
        requests.append(len(batch))
        if len(requests) == 1:  # hold the lock across this answer and its deletion
            lock = sqlite3.connect(root.data.database_file, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")
            held.append(lock)
        else:
            for lock in held:
                lock.rollback()
                lock.close()
            held.clear()
        accepted = [frames.parse_frame(data).frame.message_id for data in batch]
        return web.Response(body=pack({"accepted": accepted, "rejected": [], "deferred": []}),
                            content_type="application/msgpack")

    runner, url = await serve(transfer)

    async def drained() -> bool:
        return await root.context.outbox.depths() == {}

    async with aiohttp.ClientSession() as session:
        delivery = Delivery(root.context, session=lambda: session, peer_urls=lambda hop: (url,),
                            settings=DeliverySettings())
        try:
            made = frames.make_frame(DocumentBody(b"\x01" * 64), origin="gd", destination=HOP,
                                     created_at=1, message_id=frames.new_message_id())
            async with transaction(root.db):
                await root.context.outbox.add(made.message_id, HOP, HOP,
                                              frames.encode_frame(made, root.keys), 1)
            with caplog.at_level(logging.WARNING, logger="govnode.delivery"):
                delivery.wake(HOP)
                await wait_until(lambda: len(requests) >= 2, what="the frame to go again")
                await wait_until(drained, what="the outbox to drain")
            assert requests == [1, 1]
            assert "could not delete 1 frames gd.elsewhere acknowledged" in caplog.text
        finally:
            for lock in held:
                lock.close()
            await delivery.stop()
            await runner.cleanup()
            await federation.stop_all()
