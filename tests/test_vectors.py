"""The SPEC's test vectors, checked both ways: the code reproduces them byte for byte,
and the bytes in the SPEC decode and verify as the SPEC says they do."""

from __future__ import annotations

from pathlib import Path

import pytest
from nacl.public import PrivateKey, SealedBox

from protocol import certs, directory, frames, ids, sealing, vectors
from protocol.keys import NodeKeys, fingerprint

SPEC = Path(__file__).resolve().parent.parent / "protocol" / "SPEC.md"


@pytest.fixture(scope="module")
def spec_vectors() -> dict[str, bytes]:
    return vectors.parse(SPEC.read_text(encoding="utf-8"))


def test_spec_holds_exactly_the_generated_vectors(spec_vectors):
    generated = vectors.generate()
    assert list(spec_vectors) == list(generated), "SPEC.md vector names differ; run " \
        "python -m protocol.vectors --write protocol/SPEC.md"
    for name, value in generated.items():
        assert spec_vectors[name] == value, f"vector {name} in SPEC.md is out of date"


def _chain(spec_vectors):
    return [certs.decode_certificate(spec_vectors[f"cert.{n}"]) for n in ("gd", "chaozhou", "raoping")]


def test_certificate_chain_vector_validates_against_its_anchor(spec_vectors):
    anchor = fingerprint(spec_vectors["key.gd.verify_key"])
    leaf = certs.validate_chain(_chain(spec_vectors), trust_anchor=anchor, now_ms=vectors.NOW_MS)
    assert leaf.subject == "gd.chaozhou.raoping"
    assert leaf.division == "445122"
    assert leaf.keys.verify_key == spec_vectors["key.raoping.verify_key"]


def test_keys_derive_from_the_published_seeds(spec_vectors):
    root = NodeKeys.from_seed(spec_vectors["key.gd.seed"])
    assert root.public.verify_key == spec_vectors["key.gd.verify_key"]
    assert root.public.box_key == spec_vectors["key.gd.box_key"]


def test_document_frame_vector_verifies_and_opens_only_at_its_recipient(spec_vectors):
    frame = frames.parse_frame(spec_vectors["frame.document"]).verify(spec_vectors["key.gd.verify_key"])
    assert (frame.origin, frame.destination, frame.message_id) == ("gd", "gd.chaozhou.raoping", bytes(range(16)))
    county = NodeKeys.from_seed(spec_vectors["key.raoping.seed"])
    text = sealing.open_sealed(frame.body.sealed, county.public.box_key, county.box_secret).decode()
    assert text == "关于做好2026年元旦春节期间有关工作的通知"
    city = NodeKeys.from_seed(spec_vectors["key.chaozhou.seed"])
    with pytest.raises(sealing.CannotDecrypt):
        sealing.open_sealed(frame.body.sealed, city.public.box_key, city.box_secret)


def test_sealed_vector_opens_with_plain_libsodium(spec_vectors):
    county = NodeKeys.from_seed(spec_vectors["key.raoping.seed"])
    plain = SealedBox(PrivateKey(county.box_secret)).decrypt(spec_vectors["sealed.to_raoping"])
    assert plain.decode().startswith("关于做好")


def test_receipt_frame_vector(spec_vectors):
    frame = frames.parse_frame(spec_vectors["frame.receipt"]).verify(spec_vectors["key.raoping.verify_key"])
    assert frame.body.step == "signed_for" and frame.body.actor == "张璐"
    assert frame.body.document_id == bytes(range(16))
    assert ids.route(frame.origin, frame.destination) == ("gd.chaozhou", "gd")


def test_receipts_frame_vector(spec_vectors):
    frame = frames.parse_frame(spec_vectors["frame.receipts"]).verify(
        spec_vectors["key.raoping.verify_key"])
    assert frame.type == "receipts" and frame.destination == "gd"
    assert [(item.document_id, item.seq, item.step) for item in frame.body.items] == [
        (bytes([1] * 16), 1, "delivered"), (bytes([2] * 16), 1, "delivered")]


def test_revocation_vector_verifies_under_the_city_and_revokes_the_county(spec_vectors):
    chain = _chain(spec_vectors)
    revocation = certs.decode_revocation(spec_vectors["revocation.raoping"])
    certs.verify_revocation(revocation, chain[1])
    anchor = fingerprint(spec_vectors["key.gd.verify_key"])
    with pytest.raises(certs.Revoked):
        certs.validate_chain(chain, trust_anchor=anchor, now_ms=vectors.NOW_MS, revocations=[revocation])


def test_digest_vector_recomputes_from_the_records(spec_vectors):
    records = [directory.Record.from_bytes("cert", spec_vectors[f"cert.{n}"])
               for n in ("gd", "chaozhou", "raoping")]
    records.append(directory.decode_record(spec_vectors["record.endpoint.raoping"]))
    assert directory.digest_of(records).root == spec_vectors["digest.root"]
    assert directory.digest_of(reversed(records)).root == spec_vectors["digest.root"]
