"""Signed frames (protocol.frames, protocol.messages, protocol.signing).

Round trips, tamper detection, strict decoding of hostile envelopes and payloads,
domain separation, and the age window.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import tracemalloc

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol import frames
from protocol.errors import (BadNodeId, BadSignature, Malformed, ProtocolError, Replay,
                             TooLarge, UnknownOrigin, UnknownType, UnsupportedVersion)
from protocol.frames import (FRAME_VERSION, MAX_TYPE_LEN, Frame, SignedFrame, check_age,
                             encode_frame, make_frame, new_message_id, open_frame,
                             parse_frame, sign_frame)
from protocol.ids import MAX_ID_LEN
from protocol.keys import NodeKeys
from protocol.messages import (BODY_TYPES, MAX_TEXT, MESSAGE_ID_BYTES, DocumentBody,
                               GossipBody, GossipReplyBody, PingBody, ReceiptBody,
                               ReceiptsBody)
from protocol.signing import (SIGNATURE_BYTES, Domain, decode_envelope, encode_envelope,
                              sign_bytes, verify_bytes)
from protocol.wire import DEFAULT_LIMITS, Limits, pack

# --- fixtures and helpers -------------------------------------------------------

ORIGIN_KEYS = NodeKeys.from_seed(b"test_frames origin")
OTHER_KEYS = NodeKeys.from_seed(b"test_frames someone else")
VERIFY_KEY = ORIGIN_KEYS.public.verify_key
NOW_MS = 1_767_225_600_000
MSG_ID = bytes(range(16))
DOC_ID = bytes(range(16, 32))
MiB = 1024 * 1024


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


MSGPACK_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | st.binary(max_size=20) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)


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


# --- tampering ------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames(), st.data())
def test_flipping_any_byte_fails_with_a_typed_error(frame, data):
    encoded = encode_frame(frame, ORIGIN_KEYS)
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1), "position")
    mask = data.draw(st.integers(min_value=1, max_value=255), "mask")
    tampered = bytearray(encoded)
    tampered[position] ^= mask
    with pytest.raises(ProtocolError):
        parse_and_verify(bytes(tampered))


@pytest.mark.parametrize("make", list(FIXED_FRAMES.values()), ids=list(FIXED_FRAMES))
def test_flipping_every_byte_of_a_fixed_frame_fails(make):
    encoded = encode_frame(make(), ORIGIN_KEYS)
    codes = set()
    for position in range(len(encoded)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(encoded)
            tampered[position] ^= mask
            with pytest.raises(ProtocolError) as info:
                parse_and_verify(bytes(tampered))
            codes.add(info.value.code)
    # Both kinds of failure occur: structure breaks, or the signature no longer covers it.
    assert {"malformed", "bad_signature"} <= codes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames())
def test_every_prefix_of_a_frame_is_malformed(frame):
    encoded = encode_frame(frame, ORIGIN_KEYS)
    for size in range(len(encoded)):
        with pytest.raises(Malformed):
            parse_frame(encoded[:size])


@settings(max_examples=50, deadline=None)
@given(valid_frames(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_after_a_frame_are_malformed(frame, extra):
    with pytest.raises(Malformed):
        parse_frame(encode_frame(frame, ORIGIN_KEYS) + extra)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_with_a_typed_error(data):
    with pytest.raises(ProtocolError):
        parse_and_verify(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_payload_bytes_in_a_signed_envelope_are_refused(payload):
    data = encode_envelope(payload, ORIGIN_KEYS.sign(Domain.FRAME, payload))
    with pytest.raises(ProtocolError):
        parse_frame(data)


@settings(max_examples=150, deadline=None)
@given(MSGPACK_JUNK)
def test_random_msgpack_payloads_are_refused(value):
    with pytest.raises(ProtocolError):
        parse_frame(envelope_for(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames(), st.data())
def test_structural_mutations_are_refused_or_still_exact(frame, data):
    """Delete, add or replace one envelope or body field with arbitrary msgpack."""
    value = frame.to_wire()
    target = data.draw(st.sampled_from(["envelope", "body"]), "target")
    container = value if target == "envelope" else dict(value["b"])
    action = data.draw(st.sampled_from(["delete", "add", "replace"]), "action")
    if action == "delete":
        del container[data.draw(st.sampled_from(sorted(container)), "key")]
    elif action == "add":
        key = data.draw(st.text(max_size=5).filter(lambda k: k not in container), "key")
        container[key] = data.draw(MSGPACK_JUNK, "value")
    else:
        key = data.draw(st.sampled_from(sorted(container)), "key")
        replacement = data.draw(MSGPACK_JUNK, "value")
        assume(pack(replacement) != pack(container[key]))
        container[key] = replacement
    if target == "body":
        value["b"] = container
    encoded = envelope_for(value)
    try:
        parsed = parse_frame(encoded).verify(VERIFY_KEY)
    except ProtocolError:
        return
    # The only acceptable success: a replacement that is itself valid (e.g. another
    # valid timestamp); then the frame must decode to exactly what was signed.
    assert action == "replace"
    assert pack(parsed.to_wire()) == pack(value)


# --- hostile envelopes -----------------------------------------------------------

U32 = struct.pack(">I", 2**32 - 1)
GOOD_PAYLOAD = pack(ping_frame().to_wire())
GOOD_SIGNATURE = ORIGIN_KEYS.sign(Domain.FRAME, GOOD_PAYLOAD)

HOSTILE_ENVELOPES = {
    "empty": b"",
    "nil": b"\xc0",
    "map instead of array": pack({"p": GOOD_PAYLOAD, "s": GOOD_SIGNATURE}),
    "array of one": pack([GOOD_PAYLOAD]),
    "array of three": pack([GOOD_PAYLOAD, GOOD_SIGNATURE, b""]),
    "payload as str": pack(["x", GOOD_SIGNATURE]),
    "payload as map": pack([{"v": 1}, GOOD_SIGNATURE]),
    "signature as str": pack([GOOD_PAYLOAD, "s" * 64]),
    "signature as int": pack([GOOD_PAYLOAD, 7]),
    "signature 63 bytes": pack([GOOD_PAYLOAD, GOOD_SIGNATURE[:63]]),
    "signature 65 bytes": pack([GOOD_PAYLOAD, GOOD_SIGNATURE + b"\x00"]),
    "empty payload": pack([b"", GOOD_SIGNATURE]),
    "bin32 4 GiB payload": b"\x92\xc6" + U32 + b"tiny",
    "str32 4 GiB payload": b"\x92\xdb" + U32 + b"tiny",
    "array32 envelope": b"\xdd" + U32 + b"\xc0",
    "map32 envelope": b"\xdf" + U32 + b"\xa1k\xc0",
    "array32 payload": b"\x92\xdd" + U32,
    "ext envelope": b"\xd4\x05\x00",
    "ext payload": b"\x92\xd4\x05\x00" + pack(GOOD_SIGNATURE),
    "deep nesting": b"\x91" * 100_000 + b"\xc0",
    "trailing data": encode_envelope(GOOD_PAYLOAD, GOOD_SIGNATURE) + b"\xc0",
    "payload: array32 2**32-1": encode_envelope(b"\xdd" + U32, GOOD_SIGNATURE),
    "payload: map32 2**32-1": encode_envelope(b"\xdf" + U32, GOOD_SIGNATURE),
    "payload: bin32 4 GiB": encode_envelope(b"\xc6" + U32 + b"abc", GOOD_SIGNATURE),
    "payload: str32 4 GiB": encode_envelope(b"\xdb" + U32 + b"abc", GOOD_SIGNATURE),
    "payload: deep nesting": encode_envelope(b"\x91" * 100_000 + b"\xc0", GOOD_SIGNATURE),
    "payload: trailing data": encode_envelope(GOOD_PAYLOAD + b"\xc0", GOOD_SIGNATURE),
    "payload: truncated": encode_envelope(GOOD_PAYLOAD[:-1], GOOD_SIGNATURE),
    "payload: invalid utf-8": encode_envelope(
        GOOD_PAYLOAD.replace(b"\xa4ping", b"\xa4p\xffng"), GOOD_SIGNATURE),
    "payload: ext value": encode_envelope(
        GOOD_PAYLOAD.replace(b"\xa2at\xcf", b"\xa2at\xd7\x05"), GOOD_SIGNATURE),
    "payload: timestamp value": encode_envelope(
        GOOD_PAYLOAD.replace(b"\xa2at\xcf", b"\xa2at\xd7\xff"), GOOD_SIGNATURE),
    "payload: array": envelope_for([1, "ping"]),
    "payload: nil": envelope_for(None),
}


@pytest.mark.parametrize("data", list(HOSTILE_ENVELOPES.values()), ids=list(HOSTILE_ENVELOPES))
def test_hostile_envelopes_are_malformed(data):
    with pytest.raises(Malformed):
        parse_frame(data)


def test_hostile_envelope_table_is_not_vacuous():
    # The string replacements above must actually have changed the payload.
    assert b"\xa4ping" in GOOD_PAYLOAD and b"\xa2at\xcf" in GOOD_PAYLOAD
    assert parse_and_verify(encode_envelope(GOOD_PAYLOAD, GOOD_SIGNATURE)) == ping_frame()


def test_decode_envelope_splits_without_trusting():
    payload, signature = decode_envelope(encode_envelope(b"anything", b"s" * 64))
    assert (payload, signature) == (b"anything", b"s" * 64)


def test_oversize_frame_is_too_large_before_parsing():
    data = encode_frame(document_frame(), ORIGIN_KEYS)
    assert parse_frame(data, Limits(max_bytes=len(data))).frame == document_frame()
    with pytest.raises(TooLarge):
        parse_frame(data, Limits(max_bytes=len(data) - 1))
    with pytest.raises(TooLarge):
        parse_frame(b"\xc1" * (DEFAULT_LIMITS.max_bytes + 1))


def test_body_bin_limit_applies():
    data = encode_frame(document_frame(), ORIGIN_KEYS)  # 80-byte sealed body
    with pytest.raises(Malformed):
        parse_frame(data, Limits(max_bin_len=79))
    assert parse_frame(data, Limits(max_bin_len=MiB)).frame == document_frame()


def _nested(depth: int):
    value = b"leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_just_over_max_depth_inside_a_valid_envelope():
    # payload map (1) > body map (2) > "dir" value: arrays from level 3 on.
    limit = DEFAULT_LIMITS.max_depth
    over = with_body_field(ping_frame().to_wire(), "dir", _nested(limit - 1))
    with pytest.raises(Malformed, match="nested deeper than 8"):
        parse_frame(envelope_for(over))
    at_limit = with_body_field(ping_frame().to_wire(), "dir", _nested(limit - 2))
    with pytest.raises(Malformed) as info:
        parse_frame(envelope_for(at_limit))
    assert "nested" not in info.value.detail  # refused for its type, not its depth
    assert "'dir' must be binary" in info.value.detail


def test_hostile_frames_do_not_allocate_beyond_limits():
    cases = [HOSTILE_ENVELOPES[name] for name in (
        "bin32 4 GiB payload", "array32 envelope", "map32 envelope", "array32 payload",
        "payload: array32 2**32-1", "payload: map32 2**32-1", "payload: bin32 4 GiB")]
    for data in cases:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            baseline, _ = tracemalloc.get_traced_memory()
            with pytest.raises(Malformed):
                parse_frame(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - baseline < len(data) + MiB, (data[:8], peak - baseline)


# --- wrong types, missing and extra keys ---------------------------------------------

SAMPLES = {
    "nil": None, "true": True, "zero": 0, "int": 7, "negative": -1, "u64": 2**64 - 1,
    "float": 1.5, "str": "x", "bin16": b"x" * 16, "array": (1,), "map": {"a": 1},
}
ENVELOPE_KINDS = {"v": int, "t": str, "id": bytes, "o": str, "d": str, "at": int, "b": dict}
WIRE_BY_TYPE = {name: make().to_wire() for name, make in FIXED_FRAMES.items()}
CORE_BODY_KINDS = {
    "ping": {"dir": bytes},
    "document": {"sealed": bytes},
    "receipt": {"doc": bytes, "seq": int, "step": str, "actor": str, "at": int, "detail": str},
}


def _wire_kind(value) -> type:
    return tuple if isinstance(value, (list, tuple)) else type(value)


# Every body type's field kinds, read off its fixed frame's wire form.
BODY_KINDS = {frame_type: {key: _wire_kind(value) for key, value in wire["b"].items()}
              for frame_type, wire in WIRE_BY_TYPE.items()}


def _is_kind(value, kind) -> bool:
    return kind is bool if isinstance(value, bool) else isinstance(value, kind)


ENVELOPE_CASES = [(key, name, value) for key, kind in ENVELOPE_KINDS.items()
                  for name, value in SAMPLES.items() if not _is_kind(value, kind)]
BODY_CASES = [(frame_type, key, name, value) for frame_type, kinds in BODY_KINDS.items()
              for key, kind in kinds.items()
              for name, value in SAMPLES.items() if not _is_kind(value, kind)]


@pytest.mark.parametrize(("key", "name", "value"), ENVELOPE_CASES,
                         ids=[f"{k}-{n}" for k, n, _ in ENVELOPE_CASES])
def test_wrong_type_for_every_envelope_field(key, name, value):
    with pytest.raises(Malformed) as info:
        parse_frame(envelope_for(with_field(WIRE_BY_TYPE["receipt"], key, value)))
    assert info.value.code == "malformed"
    assert f"'{key}'" in info.value.detail


@pytest.mark.parametrize(("frame_type", "key", "name", "value"), BODY_CASES,
                         ids=[f"{t}-{k}-{n}" for t, k, n, _ in BODY_CASES])
def test_wrong_type_for_every_body_field(frame_type, key, name, value):
    with pytest.raises(Malformed) as info:
        parse_frame(envelope_for(with_body_field(WIRE_BY_TYPE[frame_type], key, value)))
    assert f"'{key}'" in info.value.detail
    assert f"{frame_type} body" in info.value.detail


def test_every_body_type_is_covered_by_the_tables():
    # A new frame type needs a fixed frame above (and a strategy) to be tested here.
    assert set(FIXED_FRAMES) == set(BODY_TYPES)
    for frame_type, kinds in CORE_BODY_KINDS.items():
        assert BODY_KINDS[frame_type] == kinds
    assert set(WIRE_BY_TYPE["ping"]) == set(ENVELOPE_KINDS)


MISSING_CASES = ([("envelope", t, k) for t in WIRE_BY_TYPE for k in ENVELOPE_KINDS]
                 + [("body", t, k) for t, kinds in BODY_KINDS.items() for k in kinds])


@pytest.mark.parametrize(("where", "frame_type", "key"), MISSING_CASES,
                         ids=[f"{w}-{t}-{k}" for w, t, k in MISSING_CASES])
def test_missing_keys_are_malformed(where, frame_type, key):
    value = dict(WIRE_BY_TYPE[frame_type])
    if where == "envelope":
        del value[key]
    else:
        value["b"] = {k: v for k, v in value["b"].items() if k != key}
    with pytest.raises(Malformed, match=f"missing field '{key}'"):
        parse_frame(envelope_for(value))


@pytest.mark.parametrize("frame_type", list(WIRE_BY_TYPE))
@pytest.mark.parametrize("where", ["envelope", "body"])
def test_extra_keys_are_malformed(where, frame_type):
    value = dict(WIRE_BY_TYPE[frame_type])
    if where == "envelope":
        value["x"] = 1
    else:
        value["b"] = {**value["b"], "x": 1}
    with pytest.raises(Malformed, match=r"unknown field\(s\) \['x'\]"):
        parse_frame(envelope_for(value))


def test_optional_looking_receipt_detail_is_still_required():
    value = dict(WIRE_BY_TYPE["receipt"])
    value["b"] = {k: v for k, v in value["b"].items() if k != "detail"}
    with pytest.raises(Malformed, match="missing field 'detail'"):
        parse_frame(envelope_for(value))


@pytest.mark.parametrize("where", ["envelope", "body"])
@pytest.mark.parametrize("key", [1, None, True, b"x", b"v", (1,)],
                         ids=["int", "nil", "bool", "bytes", "bytes-v", "array"])
def test_non_string_map_keys_are_malformed(where, key):
    value = dict(WIRE_BY_TYPE["ping"])
    if where == "envelope":
        value[key] = 1
    else:
        value["b"] = {**value["b"], key: 1}
    payload = msgpack.packb(value, use_bin_type=True)
    with pytest.raises(Malformed):
        parse_frame(encode_envelope(payload, ORIGIN_KEYS.sign(Domain.FRAME, payload)))


def test_bytes_keys_beside_unknown_str_keys_are_malformed():
    """Regression: mixed bytes and str unknown keys used to raise TypeError in Fields.done."""
    value = {**WIRE_BY_TYPE["ping"], b"x": 1, "y": 2}
    with pytest.raises(Malformed):
        parse_frame(envelope_for(value))


def test_a_body_of_another_type_is_malformed():
    value = with_field(WIRE_BY_TYPE["receipt"], "b", WIRE_BY_TYPE["ping"]["b"])
    with pytest.raises(Malformed):
        parse_frame(envelope_for(value))


# --- receipt field ranges --------------------------------------------------------

@pytest.mark.parametrize(("key", "value"), [
    ("doc", b"x" * 15), ("doc", b"x" * 17), ("seq", 0), ("seq", -1), ("seq", 2**63),
    ("step", ""), ("step", "   "), ("step", "s" * 33), ("actor", "a" * (MAX_TEXT + 1)),
    ("detail", "d" * (MAX_TEXT + 1)), ("at", -1), ("at", 2**63),
])
def test_receipt_field_ranges_on_the_wire(key, value):
    with pytest.raises(Malformed, match=f"'{key}'"):
        parse_frame(envelope_for(with_body_field(WIRE_BY_TYPE["receipt"], key, value)))


@pytest.mark.parametrize(("frame_type", "key", "value"), [
    ("gossip", "root", b"r" * 15), ("gossip", "push", ("str",)), ("gossip", "push", (1,)),
    ("gossip", "covered", (-1,)), ("gossip", "covered", (65536,)), ("gossip", "covered", (True,)),
    ("gossip", "entries", (("a", "b", 1),)), ("gossip", "entries", (("a", "b", True, b""),)),
    ("gossip", "entries", (("a", b"b", 1, b""),)), ("gossip", "entries", ("abcd",)),
    ("gossip_reply", "root", b""), ("gossip_reply", "records", ((b"x",),)),
    ("gossip_reply", "want", (("a",),)), ("gossip_reply", "want", (("a", 1),)),
    ("gossip_reply", "want", (("a", "b", "c"),)),
    ("gossip_reply", "refused", (("a", "b"),)), ("gossip_reply", "refused", (("a", "b", 1),)),
])
def test_gossip_item_checks_on_the_wire(frame_type, key, value):
    with pytest.raises(Malformed, match=f"'{key}'"):
        parse_frame(envelope_for(with_body_field(WIRE_BY_TYPE[frame_type], key, value)))


@pytest.mark.parametrize(("key", "value"), [
    ("id", b"x" * 15), ("id", b"x" * 17), ("id", b""), ("at", -1), ("at", 2**63),
    ("t", "x" * (MAX_TYPE_LEN + 1)),
])
def test_envelope_field_ranges_on_the_wire(key, value):
    with pytest.raises(Malformed, match=f"'{key}'"):
        parse_frame(envelope_for(with_field(WIRE_BY_TYPE["ping"], key, value)))


def test_an_overlong_origin_is_a_bad_node_id():
    with pytest.raises(BadNodeId, match="characters long"):
        parse_frame(envelope_for(with_field(WIRE_BY_TYPE["ping"], "o", "a" * (MAX_ID_LEN + 1))))


@pytest.mark.parametrize(("overrides", "error"), [
    (dict(origin="GD"), BadNodeId),
    (dict(destination="gd..x"), BadNodeId),
    (dict(message_id=b"short"), Malformed),
    (dict(created_at=-1), Malformed),
    (dict(created_at=True), Malformed),
    (dict(created_at=2**63), Malformed),
    (dict(created_at=1.0), Malformed),
    (dict(message_id=bytearray(16)), Malformed),
])
def test_make_frame_refuses_what_a_receiver_would_refuse(overrides, error):
    with pytest.raises(error):
        ping_frame(**overrides)


def test_make_frame_refuses_unregistered_body_classes():
    @dataclasses.dataclass(frozen=True)
    class FakePing(PingBody):
        pass

    with pytest.raises(UnknownType):
        make_frame(FakePing(b""), origin="gd", destination="gd.a", created_at=0,
                   message_id=MSG_ID)


@settings(max_examples=120, deadline=None)
@given(
    body=BODIES,
    origin=st.one_of(NODE_IDS, NODE_IDS, NODE_IDS, st.text(max_size=8)),
    destination=st.one_of(NODE_IDS, NODE_IDS, NODE_IDS,
                          st.sampled_from(["GD", "gd.", "", "a" * 300])),
    created_at=st.one_of(st.booleans(), st.integers(),
                         st.sampled_from([-1, 0, 2**63 - 1, 2**63, 2**64 - 1])),
    message_id=st.one_of(IDS16, IDS16, st.binary(max_size=20)),
)
def test_what_make_frame_accepts_the_receiver_accepts(body, origin, destination, created_at,
                                                      message_id):
    """The envelope checks in make_frame match the receiver's (regression: bool/2**63)."""
    try:
        frame = make_frame(body, origin=origin, destination=destination,
                           created_at=created_at, message_id=message_id)
    except ProtocolError:
        return
    assert parse_and_verify(encode_frame(frame, ORIGIN_KEYS)) == frame


def test_gossip_item_cap_applies_even_with_looser_msgpack_limits():
    value = with_body_field(WIRE_BY_TYPE["gossip"], "push", (b"",) * 4097)
    loose = Limits(max_array_len=5000)
    with pytest.raises(Malformed, match="'push'"):
        parse_frame(envelope_for(value), loose)
    with pytest.raises(Malformed, match="max_array_len"):
        parse_frame(envelope_for(value))


RECEIPT_ITEM = WIRE_BY_TYPE["receipt"]["b"]


@pytest.mark.parametrize(("items", "expected"), [
    ((), "1 to 256 receipts, got 0"),
    ((RECEIPT_ITEM,) * 257, "1 to 256 receipts, got 257"),
    ((RECEIPT_ITEM, "not a map"), "item 1: expected a map"),
    ((RECEIPT_ITEM, with_field(RECEIPT_ITEM, "extra", 1)), "item 1: unknown field"),
    (({k: v for k, v in RECEIPT_ITEM.items() if k != "seq"},), "item 0: missing field 'seq'"),
    ((with_field(RECEIPT_ITEM, "seq", 0),), "item 0: field 'seq' out of range"),
    ((with_field(RECEIPT_ITEM, "doc", b"short"),), "item 0: field 'doc' must be 16 bytes"),
], ids=["empty", "too-many", "not-a-map", "extra-field", "missing-seq", "seq0", "short-doc"])
def test_receipts_body_refuses_bad_items(items, expected):
    value = with_body_field(WIRE_BY_TYPE["receipts"], "items", items)
    with pytest.raises(Malformed) as info:
        parse_frame(envelope_for(value))
    assert info.value.code == "malformed"
    assert "receipts body" in info.value.detail and expected in info.value.detail


def test_receipts_body_round_trips_every_item():
    frame = receipts_frame()
    parsed = parse_and_verify(encode_frame(frame, ORIGIN_KEYS))
    assert parsed == frame and [item.document_id for item in parsed.body.items] == [DOC_ID,
                                                                                  MSG_ID]


# make_frame checks only the envelope; a body the sender got wrong is the receiver's to refuse.
@pytest.mark.parametrize("body", [
    ReceiptBody(document_id=DOC_ID, seq=0, step="s", actor="", at=0),
    ReceiptBody(document_id=DOC_ID, seq=1, step=" ", actor="", at=0),
    ReceiptBody(document_id=DOC_ID[:8], seq=1, step="s", actor="", at=0),
    ReceiptBody(document_id=DOC_ID, seq=1, step="s", actor="a" * (MAX_TEXT + 1), at=0),
    DocumentBody(sealed="not bytes"),
    PingBody(directory_root=None),
], ids=["seq0", "blank-step", "short-doc-id", "long-actor", "str-sealed", "nil-dir"])
def test_receiver_refuses_bad_bodies_a_sender_built(body):
    frame = make_frame(body, origin="gd", destination="gd.a", created_at=0, message_id=MSG_ID)
    with pytest.raises(Malformed, match=f"{frame.type} body"):
        parse_frame(encode_frame(frame, ORIGIN_KEYS))


# --- unknown type, version, node ids ------------------------------------------------

@pytest.mark.parametrize("type_name", ["telegram", "", "Ping", "document ", "receipt\x00"])
def test_unknown_frame_type(type_name):
    with pytest.raises(UnknownType) as info:
        parse_frame(envelope_for(with_field(WIRE_BY_TYPE["ping"], "t", type_name)))
    assert info.value.code == "unknown_type"


@pytest.mark.parametrize("version", [0, 2, 255, 2**63 - 1])
def test_unsupported_version(version):
    with pytest.raises(UnsupportedVersion) as info:
        parse_frame(envelope_for(with_field(WIRE_BY_TYPE["ping"], "v", version)))
    assert info.value.code == "unsupported_version"


def test_version_is_checked_before_type():
    value = with_field(with_field(WIRE_BY_TYPE["ping"], "v", 2), "t", "telegram")
    with pytest.raises(UnsupportedVersion):
        parse_frame(envelope_for(value))


@pytest.mark.parametrize("key", ["o", "d"])
@pytest.mark.parametrize("bad", ["GD", "gd..chaozhou", "-gd", "gd.", ".gd", "", "gd.chao zhou",
                                 "gd.潮州", ".".join("abcdefghi"), "a" * 33])
def test_bad_node_id_in_origin_or_destination(key, bad):
    with pytest.raises(BadNodeId) as info:
        parse_frame(envelope_for(with_field(WIRE_BY_TYPE["ping"], key, bad)))
    assert info.value.code == "bad_node_id"


# --- domain separation ----------------------------------------------------------------

def test_domains_are_distinct_and_prefix_free():
    values = [domain.value for domain in Domain]
    assert len(set(values)) == len(values)
    for a in values:
        assert a.endswith(b"\x00") and a.count(b"\x00") == 1
        for b in values:
            assert a == b or not b.startswith(a)


@pytest.mark.parametrize("domain", [d for d in Domain if d is not Domain.FRAME],
                         ids=lambda d: d.name)
def test_other_domain_signatures_do_not_verify_as_frames(domain):
    payload = pack(ping_frame().to_wire())
    signature = ORIGIN_KEYS.sign(domain, payload)
    signed = parse_frame(encode_envelope(payload, signature))  # parses fine ...
    assert signed.frame == ping_frame()
    with pytest.raises(BadSignature):  # ... but is not a frame signature
        signed.verify(VERIFY_KEY)
    verify_bytes(VERIFY_KEY, domain, payload, signature)  # valid in its own domain


def test_certificate_domain_signature_via_signing_module():
    payload = pack(receipt_frame().to_wire())
    secret = ORIGIN_KEYS._signing_secret
    certificate_signature = sign_bytes(secret, Domain.CERTIFICATE, payload)
    assert certificate_signature != sign_bytes(secret, Domain.FRAME, payload)
    with pytest.raises(BadSignature):
        verify_bytes(VERIFY_KEY, Domain.FRAME, payload, certificate_signature)
    with pytest.raises(BadSignature):
        parse_and_verify(encode_envelope(payload, certificate_signature))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(list(Domain)), st.sampled_from(list(Domain)))
def test_signatures_verify_only_in_their_own_domain(payload, signed_in, checked_in):
    signature = ORIGIN_KEYS.sign(signed_in, payload)
    if signed_in is checked_in:
        verify_bytes(VERIFY_KEY, checked_in, payload, signature)
    else:
        with pytest.raises(BadSignature):
            verify_bytes(VERIFY_KEY, checked_in, payload, signature)


def test_the_signature_covers_domain_then_payload():
    from nacl.signing import VerifyKey

    payload = b"payload"
    signature = ORIGIN_KEYS.sign(Domain.FRAME, payload)
    VerifyKey(VERIFY_KEY).verify(Domain.FRAME.value + payload, signature)


@pytest.mark.parametrize("signature", [b"", b"s" * 63, b"s" * 65, b"s" * 64])
def test_verify_bytes_refuses_malformed_signatures(signature):
    with pytest.raises(BadSignature):
        verify_bytes(VERIFY_KEY, Domain.FRAME, b"payload", signature)


def test_ed25519_malleated_signature_is_refused():
    """S + L (the group order) is the same signature to a lax verifier; libsodium refuses it."""
    order = 2**252 + 27742317777372353535851937790883648493
    payload = pack(ping_frame().to_wire())
    signature = ORIGIN_KEYS.sign(Domain.FRAME, payload)
    s = int.from_bytes(signature[32:], "little") + order
    assert s < 2**256
    malleated = signature[:32] + s.to_bytes(32, "little")
    with pytest.raises(BadSignature):
        parse_and_verify(encode_envelope(payload, malleated))


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
