"""Bad content in well-formed frames to ``POST /v1/transfer`` is refused with a clear
code and stores nothing: receipts for a transition the table forbids (or from the
wrong node, or for a document never sent; early receipts wait for the missing one),
documents that do not open (sealed to another key, too short, not a valid document,
issued by another node, not addressed here) and attachments over the configured
limit, on sending and on receiving. The federation is built as in
tests/test_transfer_input.py; the helpers are those of tests/transfer_helpers.py."""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import pytest_asyncio

from federation import Federation, wait_until
from transfer_helpers import (CHAOZHOU, RAOPING, ROOT, SHANTOU, assert_refused,
                              delivered_document, delivery_row, document_frame, draft,
                              edited_content, frame, quiet, read_rows, receipt_frame, snapshot,
                              stores_nothing, transfer)
from node import actions
from node.sending import AttachmentFile, attach, send_document
from protocol import frames
from protocol.documents import encode_content
from protocol.errors import InvalidDocument
from protocol.keys import NodeKeys
from protocol.messages import DocumentBody
from protocol.wire import pack
from protocol.workflow import Action
from test_transfer_input import root_two_cities_and_a_county

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- the federation ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_two_cities_and_a_county(tmp_path_factory.mktemp("transfer-input-documents"))
    yield federation
    await federation.stop_all()


# --- receipts the table forbids ---------------------------------------------------------------


@pytest.mark.parametrize("step", ["completed", "assigned", "instructed", "delivered", "approved"])
async def test_a_receipt_for_a_step_not_allowed_from_delivered_is_illegal_transition(
        federation, http, step):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    delivery_id = await delivered_document(federation)
    message_id, data = receipt_frame(chaozhou, root, delivery_id, 2, step)
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "illegal_transition")
    assert await delivery_row(root, delivery_id) == ("delivered", 1)


async def test_a_return_receipt_without_a_reason_is_illegal_transition(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    delivery_id = await delivered_document(federation)
    message_id, data = receipt_frame(chaozhou, root, delivery_id, 2, "returned", detail=" ")
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "illegal_transition")


async def test_a_receipt_from_another_node_than_the_recipient_is_not_permitted(federation, http):
    root, shantou = federation.nodes[ROOT], federation.nodes[SHANTOU]
    delivery_id = await delivered_document(federation)
    message_id, data = receipt_frame(shantou, root, delivery_id, 2, "signed_for")
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data], sender=SHANTOU), message_id,
                       "not_permitted")
    assert await delivery_row(root, delivery_id) == ("delivered", 1)


async def test_a_receipt_for_a_document_never_sent_is_illegal_transition(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    message_id, data = receipt_frame(chaozhou, root, frames.new_message_id(), 1, "delivered")
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "illegal_transition")


async def test_an_early_receipt_waits_for_the_missing_one_then_both_apply(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    delivery_id = await delivered_document(federation)
    third_id, third = receipt_frame(chaozhou, root, delivery_id, 3, "assigned")
    assert await transfer(http, root, [third]) == {"accepted": (third_id,), "rejected": (), "deferred": ()}
    assert await delivery_row(root, delivery_id) == ("delivered", 1)
    assert [(seq, step, applied) for seq, step, applied in read_rows(
        root, f"SELECT seq, step, applied FROM receipts WHERE message_id = "
              f"x'{delivery_id.hex()}' ORDER BY seq")] == [(1, "delivered", 1), (3, "assigned", 0)]
    second_id, second = receipt_frame(chaozhou, root, delivery_id, 2, "signed_for")
    assert await transfer(http, root, [second]) == {"accepted": (second_id,), "rejected": (), "deferred": ()}
    assert await delivery_row(root, delivery_id) == ("assigned", 3)
    assert [(seq, step, applied) for seq, step, applied in read_rows(
        root, f"SELECT seq, step, applied FROM receipts WHERE message_id = "
              f"x'{delivery_id.hex()}' ORDER BY seq")] == [
        (1, "delivered", 1), (2, "signed_for", 1), (3, "assigned", 1)]
    # Another frame repeating an applied step is a harmless duplicate.
    again_id, again = receipt_frame(chaozhou, root, delivery_id, 2, "signed_for")
    await quiet(federation)
    before = snapshot(root)
    assert await transfer(http, root, [again]) == {"accepted": (again_id,), "rejected": (), "deferred": ()}
    after = snapshot(root)
    assert {t: rows for t, rows in after.items() if t != "seen"} == \
        {t: rows for t, rows in before.items() if t != "seen"}
    assert len(after["seen"]) == len(before["seen"]) + 1  # only its id is remembered


async def test_an_early_receipt_the_table_forbids_is_dropped_when_its_turn_comes(
        federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    delivery_id = await delivered_document(federation)
    third_id, third = receipt_frame(chaozhou, root, delivery_id, 3, "completed")
    second_id, second = receipt_frame(chaozhou, root, delivery_id, 2, "signed_for")
    for message_id, data in ((third_id, third), (second_id, second)):
        assert await transfer(http, root, [data]) == {"accepted": (message_id,), "rejected": (), "deferred": ()}
    assert await delivery_row(root, delivery_id) == ("signed_for", 2)
    steps = f"SELECT seq, step FROM receipts WHERE message_id = x'{delivery_id.hex()}' ORDER BY seq"
    assert read_rows(root, steps) == [(1, "delivered"), (2, "signed_for")]
    # The gap is open again: a legal third step applies.
    fixed_id, fixed = receipt_frame(chaozhou, root, delivery_id, 3, "assigned")
    assert await transfer(http, root, [fixed]) == {"accepted": (fixed_id,), "rejected": (), "deferred": ()}
    assert await delivery_row(root, delivery_id) == ("assigned", 3)


async def test_a_real_return_with_its_reason_reaches_the_sender(federation):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    sent = await send_document(root.context, draft(ROOT, [CHAOZHOU]))
    ((_, delivery_id),) = sent.deliveries

    async def state_is(expected: str) -> bool:
        return (await delivery_row(root, delivery_id))[0] == expected

    await wait_until(lambda: state_is("delivered"), what="delivery")
    await actions.act(chaozhou.context, sent.document.doc_id, Action.RETURN, actor="李明",
                      detail="请补充附件后重新报送")
    await wait_until(lambda: state_is("returned"), what="the returned receipt applied at gd")


# --- documents that do not open ----------------------------------------------------------------


async def test_a_document_sealed_to_another_key_is_cannot_decrypt(federation, http):
    root, chaozhou, shantou = (federation.nodes[n] for n in (ROOT, CHAOZHOU, SHANTOU))
    for box_key in (shantou.keys.public.box_key, NodeKeys.generate().public.box_key):
        message_id, data = document_frame(root, chaozhou, box_key=box_key)
        async with stores_nothing(federation, chaozhou):
            assert_refused(await transfer(http, chaozhou, [data], sender=ROOT), message_id,
                           "cannot_decrypt")


async def test_a_sealed_box_shorter_than_its_overhead_is_cannot_decrypt(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    message_id, data = frame(DocumentBody(b"\x00" * 20), origin=ROOT, destination=CHAOZHOU,
                             keys=root.keys)
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [data], sender=ROOT), message_id,
                       "cannot_decrypt")


BAD_CONTENT = [
    pytest.param(b"\xc1 not msgpack", "malformed", id="not-msgpack"),
    pytest.param(pack([1, 2, 3]), "malformed", id="not-a-map"),
    pytest.param(pack({"v": 1, "ti": "标题"}), "malformed", id="missing-fields"),
    pytest.param(edited_content(extra="x"), "malformed", id="unknown-field"),
    pytest.param(edited_content(ti=7), "malformed", id="title-not-a-string"),
    pytest.param(edited_content(ti="  "), "invalid_document", id="empty-title"),
    pytest.param(edited_content(k="便条"), "invalid_document", id="unknown-kind"),
    pytest.param(edited_content(cl="绝密"), "invalid_document", id="top-secret"),
    pytest.param(edited_content(v=2), "unsupported_version", id="content-version-2"),
    pytest.param(edited_content(att=[{"n": "a.txt", "mt": "text/plain", "h": b"\x00" * 32,
                                      "sz": 3, "d": b"abc"}]),
                 "invalid_document", id="attachment-hash-mismatch"),
]


@pytest.mark.parametrize("content, code", BAD_CONTENT)
async def test_sealed_content_that_is_not_a_valid_document_is_refused(
        federation, http, content, code):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    message_id, data = document_frame(root, chaozhou, content=content)
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [data], sender=ROOT), message_id, code)


async def test_a_document_issued_by_another_node_than_the_frames_origin_is_malformed(
        federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    content = encode_content(draft(SHANTOU, [CHAOZHOU]), {})
    message_id, data = document_frame(root, chaozhou, content=content)
    async with stores_nothing(federation, chaozhou):
        detail = assert_refused(await transfer(http, chaozhou, [data], sender=ROOT),
                                message_id, "malformed")
    assert SHANTOU in detail and ROOT in detail


async def test_a_document_that_does_not_list_this_node_is_not_addressed_here(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    content = encode_content(draft(ROOT, [SHANTOU], cc_recipients=(RAOPING,)), {})
    message_id, data = document_frame(root, chaozhou, content=content)
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [data], sender=ROOT), message_id,
                       "not_addressed_here")


async def test_one_bad_frame_does_not_spoil_a_good_one_in_the_same_batch(federation, http):
    root, chaozhou, shantou = (federation.nodes[n] for n in (ROOT, CHAOZHOU, SHANTOU))
    bad_id, bad = document_frame(root, chaozhou, box_key=shantou.keys.public.box_key)
    good_id, good = document_frame(root, chaozhou)
    answer = await transfer(http, chaozhou, [bad, b"\x00garbage", good], sender=ROOT)
    assert answer["accepted"] == (good_id,)
    assert sorted((mid, code) for mid, code, _ in answer["rejected"]) == [
        (b"", "malformed"), (bad_id, "cannot_decrypt")]
    stored = {row[0] for row in read_rows(chaozhou, "SELECT message_id FROM inbound")}
    assert good_id in stored and bad_id not in stored
    assert not read_rows(chaozhou, f"SELECT 1 FROM seen WHERE message_id = x'{bad_id.hex()}'")


# --- oversized attachments -------------------------------------------------------------------


async def test_send_document_refuses_an_attachment_over_the_configured_limit(federation):
    root = federation.nodes[ROOT]
    limit = root.config.delivery["max_attachment_bytes"]
    cases = [
        [AttachmentFile("附件1.pdf", "application/pdf", b"\x00" * (limit + 1))],
        [AttachmentFile("附件1.pdf", "application/pdf", b"\x01" * (limit // 2 + 1)),
         AttachmentFile("附件2.pdf", "application/pdf", b"\x02" * (limit // 2 + 1))],
    ]
    for files in cases:
        async with stores_nothing(federation, root):
            with pytest.raises(InvalidDocument) as refused:
                await send_document(root.context, draft(ROOT, [CHAOZHOU]), files,
                                    max_attachment_bytes=limit)
        assert str(limit) in refused.value.detail and "附件" in refused.value.detail


async def test_a_received_attachment_over_the_configured_limit_is_refused(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    limit = chaozhou.config.delivery["max_attachment_bytes"]
    attachments, data = attach([AttachmentFile("附件1.pdf", "application/pdf",
                                               b"\x00" * (limit + 1))])
    content = encode_content(draft(ROOT, [CHAOZHOU], attachments=attachments), data)
    message_id, data = document_frame(root, chaozhou, content=content)
    async with stores_nothing(federation, chaozhou):
        detail = assert_refused(await transfer(http, chaozhou, [data], sender=ROOT),
                                message_id, "invalid_document")
    assert str(limit) in detail
