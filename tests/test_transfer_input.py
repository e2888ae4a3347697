"""Bad input to ``POST /v1/transfer`` is refused with a clear code and stores nothing.

Acceptance for the delivery issue: forged origin, replayed frame, frame for a node that
is neither this one nor on its route, receipt for a transition the table forbids,
document that does not open, oversized attachment, malformed transfer body.

One small federation (root ``gd``; cities ``gd.chaozhou`` and ``gd.shantou``; county
``gd.chaozhou.raoping``), built through the ``govnode`` commands, serves each module.
Frames are crafted here with ``protocol.frames`` and the nodes' real keys (or
strangers' keys) and posted with real HTTP. A refused frame is named in the answer's
``rejected`` list with its code (HTTP 200); a transfer body that cannot be read at all
is a 4xx. Around every refusal the target's document tables are read through a
separate read-only SQLite connection, once every outbox in the federation is empty
(nothing in flight), and must be exactly the same afterwards.

This file covers the frames and the transfer body: forged and revoked origins,
replays, frames not on the route, oversized and malformed transfer bodies. Receipts
the table forbids, documents that do not open and oversized attachments are in
tests/test_transfer_input_documents.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

import pytest
import pytest_asyncio

from federation import Federation, govnode, wait_until
from transfer_helpers import (CHAOZHOU, DOCUMENT_TABLES, RAOPING, ROOT, SHANTOU,
                              assert_body_refused, assert_refused, counts, document_frame, draft,
                              frame, post, quiet, read_rows, stores_nothing, transfer)
from node.clock import now_ms
from node.http_api import MAX_TRANSFER_BYTES
from node.inbound import MAX_CLOCK_SKEW_MS, NEWER_KEY_GRACE_MS, REPLAY_WINDOW_MS
from node.store.db import transaction
from protocol import frames, sealing
from protocol.documents import encode_content
from protocol.keys import NodeKeys
from protocol.messages import DocumentBody, PingBody
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack

pytestmark = pytest.mark.asyncio(loop_scope="module")

DAY_MS = 24 * 3600 * 1000


# --- the federation ----------------------------------------------------------------


async def root_two_cities_and_a_county(path: Path) -> Federation:
    """gd with 潮州 and 汕头 under it and 饶平 under 潮州, converged."""
    federation = Federation(path)
    await federation.create_root(ROOT)
    await federation.enroll(CHAOZHOU, "潮州市人民政府办公室")
    await federation.enroll(SHANTOU, "汕头市人民政府办公室")
    await federation.enroll(RAOPING, "饶平县人民政府办公室")
    await federation.wait_converged()
    return federation


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_two_cities_and_a_county(tmp_path_factory.mktemp("transfer-input"))
    yield federation
    await federation.stop_all()


# --- forged origin ------------------------------------------------------------------------


async def test_a_frame_claiming_another_members_origin_is_bad_signature(federation, http):
    """A recent frame whose signature fails is kept back at the sender (its origin may
    have re-keyed, the new certificate still on its way); past the grace window it
    is refused for good. Nothing is stored either way."""
    chaozhou, shantou, root = (federation.nodes[n] for n in (CHAOZHOU, SHANTOU, ROOT))
    # Claims gd.shantou, signed with gd.chaozhou's real key.
    content = encode_content(draft(SHANTOU, [ROOT]), {})
    message_id, data = frame(DocumentBody(sealing.seal(content, root.keys.public.box_key)),
                             origin=SHANTOU, destination=ROOT, keys=chaozhou.keys)
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "bad_signature",
                       kind="deferred")
    old = now_ms() - NEWER_KEY_GRACE_MS - 60_000
    message_id, data = frame(DocumentBody(sealing.seal(content, root.keys.public.box_key)),
                             origin=SHANTOU, destination=ROOT, keys=chaozhou.keys, created_at=old)
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "bad_signature")
    # A stranger's key claiming the root itself, posted to a city.
    message_id, data = document_frame(root, chaozhou, created_at=old)
    forged = frames.encode_frame(frames.parse_frame(data).frame, NodeKeys.generate())
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [forged]), message_id, "bad_signature")
    assert shantou.enrolled  # the impersonated origin is a real, valid member


async def test_a_frame_altered_after_signing_is_bad_signature(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    old = now_ms() - NEWER_KEY_GRACE_MS - 60_000
    message_id, data = document_frame(root, chaozhou, created_at=old)
    signed = frames.parse_frame(data)
    wire = {**signed.frame.to_wire(), "at": signed.frame.created_at + 1}
    altered = encode_envelope(pack(wire), signed.signature)  # the old signature, new bytes
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [altered]), message_id, "bad_signature")


@pytest.mark.parametrize("origin", ["gd.huizhou", "gd.chaozhou.chaoan"])
async def test_a_frame_from_a_non_member_is_unknown_origin(federation, http, origin):
    """Deferred, not dropped: the origin's certificate may still be on its way by gossip;
    the sender keeps the frame and nothing is stored here."""
    chaozhou = federation.nodes[CHAOZHOU]
    content = encode_content(draft(origin, [CHAOZHOU]), {})
    message_id, data = frame(DocumentBody(sealing.seal(content, chaozhou.keys.public.box_key)),
                             origin=origin, destination=CHAOZHOU, keys=NodeKeys.generate())
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [data], sender=origin), message_id,
                       "unknown_origin", kind="deferred")


# --- replayed frames ------------------------------------------------------------------------


async def test_the_same_frame_twice_is_accepted_twice_and_stored_once(federation, http):
    chaozhou, shantou = federation.nodes[CHAOZHOU], federation.nodes[SHANTOU]
    await quiet(federation)
    before = counts(shantou)
    message_id, data = document_frame(chaozhou, shantou)
    answer = await transfer(http, shantou, [data])
    assert answer == {"accepted": (message_id,), "rejected": (), "deferred": ()}
    after = counts(shantou)
    # document, its inbound row, its delivered receipt (recorded and queued), the seen id
    assert {t: after[t] - before[t] for t in DOCUMENT_TABLES} == {
        "documents": 1, "attachments": 0, "deliveries": 0, "inbound": 1, "receipts": 1,
        "outbox": 1, "seen": 1}
    async with stores_nothing(federation, shantou):  # the receipt has left; now again:
        assert await transfer(http, shantou, [data]) == {"accepted": (message_id,),
                                                         "rejected": (), "deferred": ()}
        assert await transfer(http, shantou, [data, data]) == {
            "accepted": (message_id, message_id), "rejected": (), "deferred": ()}


async def test_a_fresh_frame_twice_in_one_batch_is_stored_once(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    await quiet(federation)
    before = counts(chaozhou)
    message_id, data = document_frame(root, chaozhou)
    answer = await transfer(http, chaozhou, [data, data], sender=ROOT)
    assert answer == {"accepted": (message_id, message_id), "rejected": (), "deferred": ()}
    after = counts(chaozhou)
    assert (after["documents"] - before["documents"], after["inbound"] - before["inbound"],
            after["seen"] - before["seen"]) == (1, 1, 1)


async def test_a_relayed_frame_replayed_to_the_relay_is_forwarded_once(federation, http):
    root, chaozhou, shantou = (federation.nodes[n] for n in (ROOT, CHAOZHOU, SHANTOU))
    message_id, data = document_frame(chaozhou, shantou)
    assert await transfer(http, root, [data]) == {"accepted": (message_id,), "rejected": (), "deferred": ()}
    await wait_until(lambda: bool(read_rows(shantou, "SELECT 1 FROM inbound WHERE message_id = "
                                                 f"x'{message_id.hex()}'")),
                     what="the relayed frame at gd.shantou")
    async with stores_nothing(federation, root), stores_nothing(federation, shantou):
        assert await transfer(http, root, [data]) == {"accepted": (message_id,), "rejected": (), "deferred": ()}
        await quiet(federation)  # had it been queued again, it would be delivered by now


async def test_a_frame_older_than_the_replay_window_is_replay(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    message_id, data = document_frame(root, chaozhou,
                                      created_at=now_ms() - REPLAY_WINDOW_MS - DAY_MS)
    async with stores_nothing(federation, chaozhou):
        detail = assert_refused(await transfer(http, chaozhou, [data], sender=ROOT),
                                message_id, "replay")
    assert "replay window" in detail


async def test_a_frame_from_the_future_is_malformed(federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    message_id, data = document_frame(root, chaozhou,
                                      created_at=now_ms() + MAX_CLOCK_SKEW_MS + 60_000)
    async with stores_nothing(federation, chaozhou):
        detail = assert_refused(await transfer(http, chaozhou, [data], sender=ROOT),
                                message_id, "malformed")
    assert "future" in detail


# --- not on the route ------------------------------------------------------------------------

NOT_ON_ROUTE = [
    # (origin, destination, posted to)
    (CHAOZHOU, RAOPING, SHANTOU),  # another city's county
    (ROOT, "gd.shantou.nanao", CHAOZHOU),  # below another city
    (CHAOZHOU, RAOPING, ROOT),  # the origin's parent: not on the way down
    (RAOPING, ROOT, SHANTOU),  # a city beside the route up
    (SHANTOU, ROOT, SHANTOU),  # a frame the target itself sent, back at it
]


@pytest.mark.parametrize("origin, destination, target", NOT_ON_ROUTE)
async def test_a_frame_whose_route_does_not_pass_here_is_not_addressed_here(
        federation, http, origin, destination, target):
    sender, node = federation.nodes[origin], federation.nodes[target]
    sealed = sealing.seal(b"for the destination only", NodeKeys.generate().public.box_key)
    message_id, data = frame(DocumentBody(sealed), origin=origin, destination=destination,
                             keys=sender.keys)
    async with stores_nothing(federation, node):
        assert_refused(await transfer(http, node, [data], sender=origin), message_id,
                       "not_addressed_here")


async def test_a_frame_on_its_route_is_relayed_and_arrives(federation, http):
    """The control for the refusals above: a relay on the route takes the frame."""
    raoping, root, shantou = (federation.nodes[n] for n in (RAOPING, ROOT, SHANTOU))
    message_id, data = document_frame(raoping, shantou)
    assert await transfer(http, root, [data], sender=RAOPING) == {"accepted": (message_id,),
                                                                  "rejected": (), "deferred": ()}
    await wait_until(lambda: bool(read_rows(shantou, "SELECT 1 FROM inbound WHERE message_id = "
                                                 f"x'{message_id.hex()}'")),
                     what="the frame relayed to gd.shantou")


async def test_a_frame_type_that_transfer_does_not_carry_is_refused_at_a_relay(federation, http):
    chaozhou, root = federation.nodes[CHAOZHOU], federation.nodes[ROOT]
    message_id, data = frame(PingBody(), origin=CHAOZHOU, destination=SHANTOU,
                             keys=chaozhou.keys)
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "malformed")
    message_id, data = frame(PingBody(), origin=CHAOZHOU, destination=ROOT, keys=chaozhou.keys)
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [data]), message_id, "malformed")


async def test_a_frame_of_a_type_this_node_does_not_know_is_kept_back_at_the_sender(
        federation, http):
    """A newer version may add frame types (as ``receipts`` was added): an older node
    answers ``deferred`` with the frame's id, so the sender keeps it until the node is
    upgraded instead of losing it; nothing is stored."""
    chaozhou, root = federation.nodes[CHAOZHOU], federation.nodes[ROOT]
    message_id = frames.new_message_id()
    payload = pack({"v": 1, "t": "teleport", "id": message_id, "o": CHAOZHOU, "d": SHANTOU,
                    "at": now_ms(), "b": {}})
    data = encode_envelope(payload, chaozhou.keys.sign(Domain.FRAME, payload))
    async with stores_nothing(federation, root):
        detail = assert_refused(await transfer(http, root, [data]), message_id,
                                "unknown_type", kind="deferred")
    assert "teleport" in detail


# --- oversized transfers ---------------------------------------------------------------------


async def test_a_transfer_body_over_the_limit_is_too_large(federation, http):
    chaozhou = federation.nodes[CHAOZHOU]
    body = pack({"from": ROOT, "frames": [b"\x00" * (MAX_TRANSFER_BYTES - 1024 + 1),
                                          b"\x00" * 2048]})
    assert len(body) > MAX_TRANSFER_BYTES

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)]

    async with stores_nothing(federation, chaozhou):
        assert_body_refused(*await post(http, chaozhou, body), "too_large")  # declared length
        assert_body_refused(*await post(http, chaozhou, chunked()), "too_large")  # streamed


async def test_a_frame_over_the_frame_size_limit_is_refused(federation, http):
    chaozhou = federation.nodes[CHAOZHOU]
    body = pack({"from": ROOT, "frames": [b"\x00" * (16 * 1024 * 1024 + 1)]})
    assert len(body) < MAX_TRANSFER_BYTES
    async with stores_nothing(federation, chaozhou):
        status, answer = await post(http, chaozhou, body)
    assert 400 <= status < 500 and answer["error"] in {"too_large", "malformed"}, answer


# --- malformed transfer bodies ----------------------------------------------------------------


def _valid_frame(federation: Federation) -> bytes:
    return document_frame(federation.nodes[ROOT], federation.nodes[CHAOZHOU])[1]


MALFORMED_BODIES = [
    pytest.param(lambda f: b"", "malformed", id="empty"),
    pytest.param(lambda f: b"\xc1\x00garbage", "malformed", id="garbage"),
    pytest.param(lambda f: pack([ROOT, [_valid_frame(f)]]), "malformed", id="array-not-map"),
    pytest.param(lambda f: pack({"from": ROOT, "frames": _valid_frame(f)}), "malformed",
                 id="frames-not-an-array"),
    pytest.param(lambda f: pack({"from": ROOT, "frames": [1, "two"]}), "malformed",
                 id="frames-not-bytes"),
    pytest.param(lambda f: pack({"from": ROOT, "frames": [_valid_frame(f), "text"]}),
                 "malformed", id="one-item-not-bytes"),
    pytest.param(lambda f: pack({"frames": [_valid_frame(f)]}), "malformed", id="missing-from"),
    pytest.param(lambda f: pack({"from": ROOT}), "malformed", id="missing-frames"),
    pytest.param(lambda f: pack({"from": 7, "frames": [_valid_frame(f)]}), "malformed",
                 id="from-not-a-string"),
    pytest.param(lambda f: pack({"from": ROOT, "frames": [_valid_frame(f)], "x": 1}),
                 "malformed", id="unknown-field"),
    pytest.param(lambda f: pack({"from": ROOT, "frames": [[_valid_frame(f)]]}), "malformed",
                 id="nested-arrays"),
    pytest.param(lambda f: pack({"from": "GD/../x", "frames": [_valid_frame(f)]}),
                 "bad_node_id", id="from-not-a-node-id"),
]


@pytest.mark.parametrize("make_body, code", MALFORMED_BODIES)
async def test_a_malformed_transfer_body_is_refused_whole(federation, http, make_body, code):
    chaozhou = federation.nodes[CHAOZHOU]
    body = make_body(federation)
    async with stores_nothing(federation, chaozhou):
        status, answer = await post(http, chaozhou, body)
        assert_body_refused(status, answer, code)


async def test_items_that_are_not_frames_are_refused_one_by_one(federation, http):
    chaozhou = federation.nodes[CHAOZHOU]
    batch = [b"", b"\x00", pack({"v": 1}), encode_envelope(b"\x80", b"\x00" * 64)]
    async with stores_nothing(federation, chaozhou):
        answer = await transfer(http, chaozhou, batch, sender=ROOT)
    assert answer["accepted"] == ()
    assert [(mid, code) for mid, code, _ in answer["rejected"]] == [(b"", "malformed")] * 4


# --- revoked origin (last: it takes gd.chaozhou.raoping out of the federation) ----------------


async def test_a_frame_from_a_revoked_node_is_revoked(federation, http):
    root, chaozhou, raoping = (federation.nodes[n] for n in (ROOT, CHAOZHOU, RAOPING))
    await govnode("revoke", RAOPING, "--reason", "机构撤并", "--data",
                  str(federation.data_dir(CHAOZHOU)))
    await wait_until(lambda: not root.directory.is_valid_member(RAOPING, now_ms())
                     and not chaozhou.directory.is_valid_member(RAOPING, now_ms()),
                     what="the revocation at gd and gd.chaozhou")
    to_root_id, to_root = document_frame(raoping, root)  # direct delivery
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [to_root], sender=RAOPING), to_root_id,
                       "revoked")
    relayed_id, relayed = document_frame(raoping, federation.nodes[SHANTOU])  # via its city
    async with stores_nothing(federation, chaozhou):
        assert_refused(await transfer(http, chaozhou, [relayed], sender=RAOPING), relayed_id,
                       "revoked")


async def test_frame_ids_past_the_replay_window_are_forgotten_and_their_replays_refused(
        federation, http):
    root, chaozhou = federation.nodes[ROOT], federation.nodes[CHAOZHOU]
    now = now_ms()
    old_created = now - REPLAY_WINDOW_MS - MAX_CLOCK_SKEW_MS - DAY_MS
    old_id, old_frame = document_frame(chaozhou, root, created_at=old_created)
    recent_id = frames.new_message_id()
    async with transaction(root.db):  # as if accepted back then, and just now
        await root.context.outbox.mark_seen([old_id], old_created)
        await root.context.outbox.mark_seen([recent_id], now)
    assert await root.forget_old_frame_ids() >= 1
    seen = {mid for (mid,) in read_rows(root, "SELECT message_id FROM seen")}
    assert old_id not in seen and recent_id in seen
    # Forgetting it lets nothing back in: the frame is refused by its age.
    async with stores_nothing(federation, root):
        assert_refused(await transfer(http, root, [old_frame]), old_id, "replay")
