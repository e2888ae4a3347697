"""Signed frames (protocol.frames, protocol.messages, protocol.signing).

Round trips, message ids, signature verification, the age window and a sealed document
end to end. This file holds the keys, fixed frames, strategies and helpers the other
frame tests import; tampering, hostile envelopes and domain separation are in
tests/test_frames_tampering.py, the strict decoding of envelope and body fields in
tests/test_frames_fields.py.
"""

from __future__ import annotations

import hashlib
import struct

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import frames
from protocol.errors import BadSignature, Malformed, Replay, UnknownOrigin
from protocol.frames import (FRAME_VERSION, Frame, SignedFrame, check_age, encode_frame,
                             make_frame, new_message_id, open_frame, parse_frame, sign_frame)
from protocol.ids import MAX_ID_LEN
from protocol.keys import NodeKeys
from protocol.messages import (BODY_TYPES, MAX_TEXT, MESSAGE_ID_BYTES, DocumentBody,
                               GossipBody, GossipReplyBody, PingBody, ReceiptBody,
                               ReceiptsBody)
from protocol.signing import SIGNATURE_BYTES, Domain, encode_envelope, verify_bytes
from protocol.wire import pack

# --- fixtures and helpers -------------------------------------------------------

ORIGIN_KEYS = NodeKeys.from_seed(b"test_frames origin")
OTHER_KEYS = NodeKeys.from_seed(b"test_frames someone else")
VERIFY_KEY = ORIGIN_KEYS.public.verify_key
NOW_MS = 1_767_225_600_000
MSG_ID = bytes(range(16))
DOC_ID = bytes(range(16, 32))


def ping_frame(**overrides) -> Frame:
    arguments = dict(origin="gd.chaozhou.raoping", destination="gd", created_at=NOW_MS,
                     message_id=MSG_ID)
    arguments.update(overrides)
    return make_frame(PingBody(b"root-hash"), **arguments)


def receipt_frame() -> Frame:
    body = ReceiptBody(document_id=DOC_ID, seq=3, step="signed_for", actor="张三", at=NOW_MS,
                       detail="已签收")
    return make_frame(body, origin="gd.chaozhou.raoping", destination="gd.finance",
                      created_at=NOW_MS, message_id=MSG_ID)


def receipts_frame() -> Frame:
    items = (ReceiptBody(document_id=DOC_ID, seq=1, step="delivered", actor="gd.finance",
                         at=NOW_MS),
             ReceiptBody(document_id=MSG_ID, seq=1, step="delivered", actor="gd.finance",
                         at=NOW_MS))
    return make_frame(ReceiptsBody(items), origin="gd.finance", destination="gd.chaozhou",
                      created_at=NOW_MS, message_id=MSG_ID)


def document_frame() -> Frame:
    return make_frame(DocumentBody(b"\x01" * 80), origin="gd.chaozhou",
                      destination="gd.chaozhou.raoping", created_at=NOW_MS, message_id=MSG_ID)


def gossip_frame() -> Frame:
    body = GossipBody(root=b"r" * 16, push=(b"record",), covered=(0, 65535),
                      entries=(("cert", "gd.a", 2, b"h" * 8),))
    return make_frame(body, origin="gd.a", destination="gd", created_at=NOW_MS,
                      message_id=MSG_ID)


def gossip_reply_frame() -> Frame:
    body = GossipReplyBody(root=b"r" * 16, buckets=b"\x00\x01", records=(b"record",),
                           want=(("cert", "gd.a"),), refused=(("cert", "gd.b", "revoked"),))
    return make_frame(body, origin="gd", destination="gd.a", created_at=NOW_MS,
                      message_id=MSG_ID)


FIXED_FRAMES = {"ping": ping_frame, "receipt": receipt_frame, "receipts": receipts_frame,
                "document": document_frame,
                "gossip": gossip_frame, "gossip_reply": gossip_reply_frame}


def wire_of(frame: Frame) -> dict:
    return frame.to_wire()


def envelope_for(payload_value, keys: NodeKeys = ORIGIN_KEYS) -> bytes:
    """A properly signed envelope around an arbitrary (possibly invalid) payload value."""
    payload = pack(payload_value)
    return encode_envelope(payload, keys.sign(Domain.FRAME, payload))


def parse_and_verify(data: bytes, verify_key: bytes = VERIFY_KEY) -> Frame:
    return parse_frame(data).verify(verify_key)


def with_field(value: dict, key: str, replacement) -> dict:
    changed = dict(value)
    changed[key] = replacement
    return changed


def with_body_field(value: dict, key: str, replacement) -> dict:
    changed = dict(value)
    changed["b"] = with_field(value["b"], key, replacement)
    return changed


# --- strategies -------------------------------------------------------------------

SEGMENTS = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
NODE_IDS = (st.lists(SEGMENTS, min_size=1, max_size=8).map(".".join)
            .filter(lambda node_id: len(node_id) <= MAX_ID_LEN))
IDS16 = st.binary(min_size=MESSAGE_ID_BYTES, max_size=MESSAGE_ID_BYTES)
TIMES = st.integers(min_value=0, max_value=2**63 - 1)

DOCUMENT_BODIES = st.builds(DocumentBody, sealed=st.binary(max_size=300))
RECEIPT_BODIES = st.builds(
    ReceiptBody,
    document_id=IDS16,
    seq=st.integers(min_value=1, max_value=2**63 - 1),
    step=st.text(min_size=1, max_size=32).filter(lambda s: s.strip()),
    actor=st.text(max_size=60),
    at=TIMES,
    detail=st.text(max_size=60),
)
RECEIPTS_BODIES = st.lists(RECEIPT_BODIES, min_size=1, max_size=4).map(
    lambda items: ReceiptsBody(tuple(items)))
PING_BODIES = st.builds(PingBody, directory_root=st.binary(max_size=64))
SHORT_TEXT = st.text(max_size=12)
GOSSIP_BODIES = st.builds(
    GossipBody,
    root=IDS16,
    push=st.lists(st.binary(max_size=30), max_size=4).map(tuple),
    covered=st.lists(st.integers(0, 65535), max_size=6).map(tuple),
    entries=st.lists(st.tuples(SHORT_TEXT, SHORT_TEXT,
                               st.integers(-(2**63), 2**64 - 1), st.binary(max_size=8)),
                     max_size=4).map(tuple),
)
GOSSIP_REPLY_BODIES = st.builds(
    GossipReplyBody,
    root=IDS16,
    buckets=st.binary(max_size=40),
    records=st.lists(st.binary(max_size=30), max_size=4).map(tuple),
    want=st.lists(st.tuples(SHORT_TEXT, SHORT_TEXT), max_size=4).map(tuple),
    refused=st.lists(st.tuples(SHORT_TEXT, SHORT_TEXT, SHORT_TEXT), max_size=3).map(tuple),
)
# document/receipt/ping are the core types; gossip rides along so it is covered too.
BODIES = st.one_of(DOCUMENT_BODIES, RECEIPT_BODIES, RECEIPTS_BODIES, PING_BODIES, GOSSIP_BODIES,
                   GOSSIP_REPLY_BODIES)


@st.composite
def valid_frames(draw) -> Frame:
    return make_frame(draw(BODIES), origin=draw(NODE_IDS), destination=draw(NODE_IDS),
                      created_at=draw(TIMES), message_id=draw(IDS16))


# --- round trips ----------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames())
def test_encode_parse_verify_round_trip(frame):
    data = encode_frame(frame, ORIGIN_KEYS)
    signed = parse_frame(data)
    assert signed.frame == frame
    assert signed.origin == frame.origin
    assert signed.payload == pack(frame.to_wire())
    assert signed.verify(VERIFY_KEY) == frame
    assert signed.encode() == data
    assert open_frame(data, {frame.origin: VERIFY_KEY}.__getitem__) == frame
    assert type(frame.body) is BODY_TYPES[frame.type]


@pytest.mark.parametrize("make", list(FIXED_FRAMES.values()), ids=list(FIXED_FRAMES))
def test_fixed_frames_round_trip(make):
    frame = make()
    assert frame.version == FRAME_VERSION
    assert parse_and_verify(encode_frame(frame, ORIGIN_KEYS)) == frame


def test_encoding_is_deterministic():
    frame = receipt_frame()
    assert encode_frame(frame, ORIGIN_KEYS) == encode_frame(frame, ORIGIN_KEYS)
    assert encode_frame(frame, ORIGIN_KEYS) != encode_frame(frame, OTHER_KEYS)


def test_envelope_shape():
    frame = ping_frame()
    data = encode_frame(frame, ORIGIN_KEYS)
    payload, signature = msgpack.unpackb(data)
    assert payload == pack(frame.to_wire())
    assert len(signature) == SIGNATURE_BYTES
    assert msgpack.unpackb(payload) == {
        "v": 1, "t": "ping", "id": MSG_ID, "o": "gd.chaozhou.raoping", "d": "gd",
        "at": NOW_MS, "b": {"dir": b"root-hash"}}


def test_text_limits_at_the_boundary():
    body = ReceiptBody(document_id=DOC_ID, seq=1, step="s" * 32, actor="长" * MAX_TEXT,
                       at=0, detail="d" * MAX_TEXT)
    frame = make_frame(body, origin="gd", destination="gd.a", created_at=0, message_id=MSG_ID)
    assert parse_and_verify(encode_frame(frame, ORIGIN_KEYS)) == frame


def test_longest_node_ids_round_trip():
    longest = ".".join(["a" * 31] * 8)  # 8 * 31 + 7 = 255
    assert len(longest) == MAX_ID_LEN
    frame = ping_frame(origin=longest, destination=longest)
    assert parse_and_verify(encode_frame(frame, ORIGIN_KEYS)) == frame


def test_signature_is_over_the_exact_bytes_received():
    """A non-canonical but valid encoding verifies as sent; it is never re-encoded."""
    frame = ping_frame()
    canonical = pack(frame.to_wire())
    assert canonical.count(b"\xa1v\x01") == 1
    # "v": 1 as a uint64 instead of a positive fixint: same value, different bytes.
    odd = canonical.replace(b"\xa1v\x01", b"\xa1v\xcf" + struct.pack(">Q", 1))
    signature = ORIGIN_KEYS.sign(Domain.FRAME, odd)
    signed = parse_frame(encode_envelope(odd, signature))
    assert signed.payload == odd
    assert signed.verify(VERIFY_KEY) == frame
    # Re-encoding would have produced different bytes that this signature does not cover.
    with pytest.raises(BadSignature):
        verify_bytes(VERIFY_KEY, Domain.FRAME, canonical, signature)


def test_new_message_id_uses_the_handed_randomness():
    calls = []

    def fake_random(size):
        calls.append(size)
        return b"\xab" * size

    assert new_message_id(fake_random) == b"\xab" * MESSAGE_ID_BYTES
    assert calls == [MESSAGE_ID_BYTES]
    assert len(new_message_id()) == MESSAGE_ID_BYTES
    assert new_message_id() != new_message_id()


def test_a_time_ordered_id_starts_with_its_time_and_sorts_by_it():
    earlier = new_message_id(lambda n: b"\xff" * n, created_at=1_764_000_000_000)
    later = new_message_id(lambda n: b"\x00" * n, created_at=1_764_000_000_001)
    assert len(earlier) == len(later) == MESSAGE_ID_BYTES
    assert earlier[:6] == (1_764_000_000_000).to_bytes(6, "big")
    assert earlier[6:] == b"\xff" * 10  # the rest is the handed randomness
    assert earlier < later  # whatever the random part: index inserts go to the end


@pytest.mark.parametrize("created_at", [-1, 2**48, True, 1.5])
def test_a_time_that_does_not_fit_an_id_is_refused(created_at):
    with pytest.raises(Malformed):
        new_message_id(created_at=created_at)


# --- verification ----------------------------------------------------------------

def test_wrong_key_is_bad_signature():
    signed = parse_frame(encode_frame(ping_frame(), ORIGIN_KEYS))
    with pytest.raises(BadSignature) as info:
        signed.verify(OTHER_KEYS.public.verify_key)
    assert info.value.code == "bad_signature"
    assert "gd.chaozhou.raoping" in info.value.detail


@pytest.mark.parametrize("key", [b"", b"\x00" * 31, b"\x00" * 33, bytes(32)])
def test_unusable_verify_keys_are_bad_signature(key):
    signed = parse_frame(encode_frame(ping_frame(), ORIGIN_KEYS))
    with pytest.raises(BadSignature):
        signed.verify(key)


def test_swapped_signature_from_another_frame_fails():
    first = parse_frame(encode_frame(ping_frame(), ORIGIN_KEYS))
    second = parse_frame(encode_frame(ping_frame(created_at=NOW_MS + 1), ORIGIN_KEYS))
    mixed = SignedFrame(first.frame, first.payload, second.signature)
    with pytest.raises(BadSignature):
        mixed.verify(VERIFY_KEY)


def test_open_frame_asks_for_the_claimed_origin_and_propagates_its_refusal():
    data = encode_frame(ping_frame(), ORIGIN_KEYS)
    asked = []

    def unknown(origin):
        asked.append(origin)
        raise UnknownOrigin(origin)

    with pytest.raises(UnknownOrigin):
        open_frame(data, unknown)
    assert asked == ["gd.chaozhou.raoping"]
    with pytest.raises(BadSignature):
        open_frame(data, lambda origin: OTHER_KEYS.public.verify_key)


def test_open_frame_does_not_ask_for_a_key_when_parsing_fails():
    def must_not_be_called(origin):
        raise AssertionError("key lookup before the frame parsed")

    with pytest.raises(Malformed):
        open_frame(encode_frame(ping_frame(), ORIGIN_KEYS)[:-1], must_not_be_called)


# --- the age window ----------------------------------------------------------------------

MAX_AGE = 7 * 24 * 3600 * 1000
MAX_FUTURE = 5 * 60 * 1000


def test_check_age_boundaries():
    def at(created_at):
        return ping_frame(created_at=created_at)

    check_age(at(NOW_MS), now_ms=NOW_MS, max_age_ms=MAX_AGE, max_future_ms=MAX_FUTURE)
    check_age(at(NOW_MS - MAX_AGE), now_ms=NOW_MS, max_age_ms=MAX_AGE, max_future_ms=MAX_FUTURE)
    check_age(at(NOW_MS + MAX_FUTURE), now_ms=NOW_MS, max_age_ms=MAX_AGE,
              max_future_ms=MAX_FUTURE)
    with pytest.raises(Replay) as info:
        check_age(at(NOW_MS - MAX_AGE - 1), now_ms=NOW_MS, max_age_ms=MAX_AGE,
                  max_future_ms=MAX_FUTURE)
    assert info.value.code == "replay"
    assert info.value.http_status == 409
    with pytest.raises(Malformed, match="clock skew") as info:
        check_age(at(NOW_MS + MAX_FUTURE + 1), now_ms=NOW_MS, max_age_ms=MAX_AGE,
                  max_future_ms=MAX_FUTURE)
    assert info.value.code == "malformed"


def test_check_age_very_old_and_zero_windows():
    with pytest.raises(Replay):
        check_age(ping_frame(created_at=0), now_ms=NOW_MS, max_age_ms=MAX_AGE,
                  max_future_ms=MAX_FUTURE)
    check_age(ping_frame(), now_ms=NOW_MS, max_age_ms=0, max_future_ms=0)
    with pytest.raises(Replay):
        check_age(ping_frame(), now_ms=NOW_MS + 1, max_age_ms=0, max_future_ms=0)
    with pytest.raises(Malformed):
        check_age(ping_frame(), now_ms=NOW_MS - 1, max_age_ms=0, max_future_ms=0)


@settings(max_examples=300, deadline=None)
@given(created_at=TIMES, now=TIMES, max_age=st.integers(0, 2**40), max_future=st.integers(0, 2**40))
def test_check_age_property(created_at, now, max_age, max_future):
    frame = ping_frame(created_at=created_at)
    if created_at < now - max_age:
        with pytest.raises(Replay):
            check_age(frame, now_ms=now, max_age_ms=max_age, max_future_ms=max_future)
    elif created_at > now + max_future:
        with pytest.raises(Malformed):
            check_age(frame, now_ms=now, max_age_ms=max_age, max_future_ms=max_future)
    else:
        assert check_age(frame, now_ms=now, max_age_ms=max_age, max_future_ms=max_future) is None


# --- end to end ---------------------------------------------------------------------------

def test_sealed_document_travels_in_a_frame():
    from protocol.sealing import open_sealed, seal

    recipient = NodeKeys.from_seed(b"test_frames recipient")
    plaintext = pack({"title": "关于做好防汛工作的通知", "text": "各县区..."})
    sealed = seal(plaintext, recipient.public.box_key,
                  random_bytes=lambda n: hashlib.blake2b(b"eph", digest_size=n).digest())
    frame = make_frame(DocumentBody(sealed), origin="gd.chaozhou",
                       destination="gd.chaozhou.raoping", created_at=NOW_MS,
                       message_id=new_message_id(lambda n: b"\x07" * n))
    data = encode_frame(frame, ORIGIN_KEYS)
    assert plaintext not in data  # relays see only ciphertext
    received = open_frame(data, lambda origin: VERIFY_KEY)
    assert open_sealed(received.body.sealed, recipient.public.box_key,
                       recipient.box_secret) == plaintext


def test_sign_frame_matches_encode_frame():
    frame = ping_frame()
    signed = sign_frame(frame, ORIGIN_KEYS)
    assert signed.encode() == encode_frame(frame, ORIGIN_KEYS)
    assert signed.verify(VERIFY_KEY) is frame
    assert frames.FRAME_VERSION in frames.SUPPORTED_VERSIONS
