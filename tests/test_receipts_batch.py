"""Batches: many documents queued in one call, and a transfer batch's ``delivered``
receipts under one signature (``receipts`` frames).

``send_documents`` validates every draft before anything is stored and, for many
frames, seals and signs them in a worker thread. A destination that stores several documents from one origin in one transfer answers
with one ``receipts`` frame (one ``receipt`` frame for a single document); the origin
applies such a frame whole or not at all. Real nodes, real HTTP, frames crafted with
the nodes' own keys.
"""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import pytest_asyncio

from federation import Federation, wait_until
from transfer_helpers import (CHAOZHOU, ROOT, SHANTOU, assert_refused, delivered_document,
                              delivery_row, draft, frame, quiet, read_rows,
                              root_and_two_cities, stores_nothing, transfer)
from node.clock import now_ms
from node.crypto_work import OFF_LOOP_FRAMES
from node.sending import send_documents
from protocol.errors import InvalidDocument
from protocol import frames
from protocol.messages import ReceiptBody, ReceiptsBody

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_and_two_cities(tmp_path_factory.mktemp("receipts-batch"))
    yield federation
    await federation.stop_all()



def receipts_frame(sender, recipient, items: list[tuple[bytes, int, str]]
                   ) -> tuple[bytes, bytes]:
    body = ReceiptsBody(tuple(
        ReceiptBody(document_id=document_id, seq=seq, step=step, actor="王科长", at=now_ms())
        for document_id, seq, step in items))
    return frame(body, origin=sender.id, destination=recipient.id, keys=sender.keys)


def frames_seen(node) -> int:
    return read_rows(node, "SELECT COUNT(*) FROM seen")[0][0]


async def test_a_batch_of_documents_is_answered_by_one_receipts_frame(federation):
    root = federation.nodes[ROOT]
    await quiet(federation)
    seen_before = frames_seen(root)
    sent = await send_documents(root.context, [draft(ROOT, [CHAOZHOU]) for _ in range(5)])
    deliveries = [message_id for document in sent for _, message_id in document.deliveries]

    async def all_delivered() -> bool:
        return [await delivery_row(root, mid) for mid in deliveries] == \
            [("delivered", 1)] * len(deliveries)

    await wait_until(all_delivered, what="five delivered receipts back at gd")
    await quiet(federation)
    # Five documents went in one transfer; their five receipts came back in one frame.
    assert frames_seen(root) == seen_before + 1
    receipts = read_rows(root, "SELECT message_id, step FROM receipts WHERE seq = 1")
    assert {(mid, step) for mid, step in receipts} >= {(mid, "delivered") for mid in deliveries}


async def test_a_receipts_frame_applies_every_item(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    first, second = await delivered_document(federation), await delivered_document(federation)
    message_id, data = receipts_frame(chaozhou, root, [(first, 2, "signed_for"),
                                                       (second, 2, "signed_for")])
    assert (await transfer(http, root, [data]))["accepted"] == (message_id,)
    assert await delivery_row(root, first) == ("signed_for", 2)
    assert await delivery_row(root, second) == ("signed_for", 2)


@pytest.mark.parametrize(("bad_item", "code"), [
    ("forbidden", "illegal_transition"),
    ("never_sent", "illegal_transition"),
], ids=["step-the-table-forbids", "document-never-sent"])
async def test_one_refused_item_refuses_the_whole_frame(federation, http, bad_item, code):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    good, other = await delivered_document(federation), await delivered_document(federation)
    bad = (other, 2, "completed") if bad_item == "forbidden" else \
        (frames.new_message_id(), 1, "delivered")
    message_id, data = receipts_frame(chaozhou, root, [(good, 2, "signed_for"), bad])
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, code)
    assert await delivery_row(root, good) == ("delivered", 1)  # the good item not applied


async def test_a_receipts_frame_from_another_node_than_a_recipient_is_not_permitted(
        federation, http):
    root, shantou = federation.nodes[ROOT], federation.nodes[SHANTOU]
    delivery_id = await delivered_document(federation)  # sent to gd.chaozhou
    message_id, data = receipts_frame(shantou, root, [(delivery_id, 2, "signed_for")] * 2)
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data], sender=SHANTOU), message_id,
                       "not_permitted")


async def test_a_refused_frame_leaves_the_rest_of_the_batch_applied(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    good, other = await delivered_document(federation), await delivered_document(federation)
    good_id, good_frame = receipts_frame(chaozhou, root, [(good, 2, "signed_for")] * 2)
    bad_id, bad_frame = receipts_frame(chaozhou, root, [(other, 2, "signed_for"),
                                                        (other, 3, "completed")])
    answer = await transfer(http, root, [bad_frame, good_frame])
    assert answer["accepted"] == (good_id,)
    assert [(mid, code) for mid, code, _ in answer["rejected"]] == [(bad_id,
                                                                     "illegal_transition")]
    await wait_until(lambda: read_rows(root, f"SELECT 1 FROM seen WHERE message_id = "
                                             f"x'{good_id.hex()}'"), what="good frame seen")
    assert await delivery_row(root, good) == ("signed_for", 2)
    assert await delivery_row(root, other) == ("delivered", 1)


async def test_many_documents_sealed_in_bulk_each_arrive_once(federation, crypto_threads):
    root, chaozhou, shantou = (federation.nodes[n] for n in (ROOT, CHAOZHOU, SHANTOU))
    series = "线程" if crypto_threads.in_threads else "事件循环"  # each run's own titles
    drafts = [draft(ROOT, [CHAOZHOU], cc_recipients=(SHANTOU,), title=f"{series}第{n}号通知")
              for n in range(OFF_LOOP_FRAMES)]  # twice the threshold in frames
    handed_before = crypto_threads.handed_to_threads
    sent = await send_documents(root.context, drafts)
    sealed_in_a_thread = crypto_threads.handed_to_threads > handed_before
    assert sealed_in_a_thread == crypto_threads.in_threads
    deliveries = [message_id for document in sent for _, message_id in document.deliveries]
    assert len(deliveries) == 2 * OFF_LOOP_FRAMES

    async def all_delivered() -> bool:
        return [await delivery_row(root, mid) for mid in deliveries] == \
            [("delivered", 1)] * len(deliveries)

    await wait_until(all_delivered, what="every delivered receipt back at gd")
    for node in (chaozhou, shantou):
        titles = sorted(title for (title,) in read_rows(
            node, f"SELECT title FROM documents WHERE title LIKE '{series}第%号通知'"))
        assert titles == sorted(d.title for d in drafts), node.id  # each once, and readable


async def test_one_bad_draft_queues_none_of_the_batch(federation):
    root = federation.nodes[ROOT]
    good = [draft(ROOT, [CHAOZHOU], cc_recipients=(SHANTOU,)) for _ in range(OFF_LOOP_FRAMES)]
    stranger = draft(ROOT, ["gd.nowhere"])
    async with stores_nothing(federation, root):
        with pytest.raises(InvalidDocument, match="gd.nowhere is not a valid member"):
            await send_documents(root.context, good + [stranger])
    twice = good[:1] * 2
    async with stores_nothing(federation, root):
        with pytest.raises(InvalidDocument, match="already used"):
            await send_documents(root.context, good + twice)
