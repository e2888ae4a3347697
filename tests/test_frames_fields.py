"""Strict decoding of a frame's fields (protocol.frames, protocol.messages): a wrong
type, a missing or extra key, a non-string map key or a value out of range, in the
envelope or in any body, is malformed and names the field; a receipts batch refuses
its bad items; ``make_frame`` refuses what a receiver would, and the receiver refuses
bad bodies a sender built; unknown types, unsupported versions and bad node ids get
their own codes. The keys, fixed frames, strategies and helpers are those of
tests/test_frames.py.
"""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import (BadNodeId, Malformed, ProtocolError, UnknownType,
                             UnsupportedVersion)
from protocol.frames import MAX_TYPE_LEN, encode_frame, make_frame, parse_frame
from protocol.ids import MAX_ID_LEN
from protocol.messages import BODY_TYPES, MAX_TEXT, DocumentBody, PingBody, ReceiptBody
from protocol.signing import Domain, encode_envelope
from protocol.wire import Limits
from test_frames import (BODIES, DOC_ID, FIXED_FRAMES, IDS16, MSG_ID, NODE_IDS, ORIGIN_KEYS,
                         envelope_for, parse_and_verify, ping_frame, receipts_frame,
                         with_body_field, with_field)

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
