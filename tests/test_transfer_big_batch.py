"""A transfer big enough for bulk crypto (verified and opened in a worker thread, or on
the event loop in slices: node.crypto_work) answers every frame as a small one does: the good ones accepted and stored, each bad one refused or
kept back with its own code, and nothing of the bad ones stored; and each frame of a
batch is stored with its own document, even when another frame claims its id. Real
nodes, real HTTP, frames crafted with the nodes' own keys (and a stranger's)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest
import pytest_asyncio

from federation import Federation
from transfer_helpers import (CHAOZHOU, RAOPING, ROOT, SHANTOU, document_frame, draft, frame,
                              quiet, read_rows, root_and_two_cities, transfer)
from node.clock import now_ms
from node.crypto_work import OFF_LOOP_FRAMES, SLICE_FRAMES
from node.inbound import NEWER_KEY_GRACE_MS
from protocol import frames, sealing
from protocol.documents import encode_content
from protocol.keys import NodeKeys
from protocol.messages import DocumentBody

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_and_two_cities(tmp_path_factory.mktemp("big-batch"))
    yield federation
    await federation.stop_all()


def ids_in(node, table: str) -> set[bytes]:
    return {row[0] for row in read_rows(node, f"SELECT message_id FROM {table}")}


async def test_a_big_batch_answers_each_frame_as_a_small_one_would(federation, http,
                                                                  crypto_threads):
    root, chaozhou, shantou = (federation.nodes[i] for i in (ROOT, CHAOZHOU, SHANTOU))
    stranger = NodeKeys.generate()
    sealed = DocumentBody(sealing.seal(b"not a document", root.keys.public.box_key))
    long_ago = now_ms() - NEWER_KEY_GRACE_MS - 60_000
    good = [document_frame(chaozhou, root) for _ in range(OFF_LOOP_FRAMES)]
    bad = {
        # signed by someone else: recent, so perhaps a newer key of chaozhou's: kept back
        "forged, recent": (frame(sealed, origin=CHAOZHOU, destination=ROOT, keys=stranger),
                           "deferred", "bad_signature"),
        "forged, old": (frame(sealed, origin=CHAOZHOU, destination=ROOT, keys=stranger,
                              created_at=long_ago), "rejected", "bad_signature"),
        "unknown origin": (frame(sealed, origin="gd.meizhou", destination=ROOT,
                                 keys=stranger), "deferred", "unknown_origin"),
        "not on the route": (frame(sealed, origin=CHAOZHOU, destination=RAOPING,
                                   keys=chaozhou.keys), "rejected", "not_addressed_here"),
        "sealed to another": (document_frame(chaozhou, root,
                                             box_key=shantou.keys.public.box_key),
                              "rejected", "cannot_decrypt"),
    }
    frames_of = [data for _, data in good]
    batch = frames_of[:8] + [data for (_, data), _, _ in bad.values()] + frames_of[8:]
    assert len(batch) >= OFF_LOOP_FRAMES
    await quiet(federation)
    seen_before, inbound_before = ids_in(root, "seen"), ids_in(root, "inbound")

    answer = await transfer(http, root, batch)

    good_ids = {message_id for message_id, _ in good}
    assert set(answer["accepted"]) == good_ids and len(answer["accepted"]) == len(good)
    for what, ((message_id, _), kind, code) in bad.items():
        matches = [item for item in answer[kind] if item[0] == message_id]
        assert [item[1] for item in matches] == [code], (what, answer)
    assert len(answer["rejected"]) + len(answer["deferred"]) == len(bad)
    # Stored: exactly the good documents, and no trace of the bad frames.
    assert ids_in(root, "inbound") - inbound_before == good_ids
    assert ids_in(root, "seen") - seen_before == good_ids


def same_id_document(sender, recipient, message_id: bytes, title: str) -> bytes:
    content = encode_content(draft(sender.id, [recipient.id], title=title), {})
    made = frames.make_frame(DocumentBody(sealing.seal(content, recipient.keys.public.box_key)),
                             origin=sender.id, destination=recipient.id, created_at=now_ms(),
                             message_id=message_id)
    return frames.encode_frame(made, sender.keys)


async def test_two_frames_claiming_one_id_each_keep_their_own_document(federation, http):
    await two_frames_claiming_one_id(federation, http, size=2)


async def test_the_same_in_a_batch_big_enough_for_bulk_crypto(federation, http, crypto_threads):
    await two_frames_claiming_one_id(federation, http,
                                     size=OFF_LOOP_FRAMES + SLICE_FRAMES + 1)  # two slices


async def two_frames_claiming_one_id(federation, http, size: int) -> None:
    # Ids are the sender's to choose: another member may reuse one, in the same batch.
    root, chaozhou, shantou = (federation.nodes[i] for i in (ROOT, CHAOZHOU, SHANTOU))
    shared = frames.new_message_id()
    first = same_id_document(chaozhou, root, shared, "潮州市的公文")
    second = same_id_document(shantou, root, shared, "汕头市冒用同一标识的公文")
    filler = [data for _, data in (document_frame(chaozhou, root) for _ in range(size - 2))]
    await quiet(federation)

    answer = await transfer(http, root, [first, second, *filler])

    assert answer["accepted"].count(shared) == 2  # the second is a duplicate by its id
    ((origin, doc_id),) = read_rows(root, f"SELECT origin, doc_id FROM inbound "
                                          f"WHERE message_id = x'{shared.hex()}'")
    ((title, issuer_id),) = read_rows(root, f"SELECT title, origin FROM documents "
                                            f"WHERE doc_id = x'{doc_id.hex()}'")
    assert (origin, issuer_id, title) == (CHAOZHOU, CHAOZHOU, "潮州市的公文")
