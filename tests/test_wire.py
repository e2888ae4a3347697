"""Strict msgpack decoding (protocol.wire) and the error table (protocol.errors).

Every hostile input must come out as a typed ``ProtocolError`` (``Malformed`` or
``TooLarge``), never as another exception and never as a huge allocation. This file
holds the depth and decoding helpers the other wire tests import, and covers round
trips, refusals before and around parsing (non-bytes, empty or oversize input, random
bytes, prefixes, trailing data), ``Fields`` and the error table; hostile msgpack, the
limits, allocation bounds and the nesting walker are in tests/test_wire_hostile.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import errors, wire
from protocol.errors import Malformed, ProtocolError, TooLarge
from protocol.wire import DEFAULT_LIMITS, Fields, Limits, pack, unpack

# --- helpers ------------------------------------------------------------------

def depth_of(value) -> int:
    """Nesting depth the way wire._check_depth counts it (a scalar is 0, [] is 1)."""
    if isinstance(value, (list, tuple)):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def as_decoded(value):
    """What unpack returns for a packed value: lists become tuples."""
    if isinstance(value, (list, tuple)):
        return tuple(as_decoded(v) for v in value)
    if isinstance(value, dict):
        return {k: as_decoded(v) for k, v in value.items()}
    return value


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.binary(max_size=40)
    | st.text(max_size=20)
)
MSGPACK_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=25,
)


# --- round trips --------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(MSGPACK_VALUES)
def test_pack_unpack_round_trip_or_depth_refusal(value):
    data = pack(value)
    if depth_of(value) <= DEFAULT_LIMITS.max_depth:
        assert unpack(data) == as_decoded(value)
    else:
        with pytest.raises(Malformed, match="nested deeper"):
            unpack(data)


def test_pack_uses_bin_type_for_bytes_and_str_for_text():
    assert pack(b"ab") == b"\xc4\x02ab"
    assert pack("ab") == b"\xa2ab"
    assert unpack(pack(b"ab")) == b"ab"
    assert unpack(pack("ab")) == "ab"


def test_unpack_accepts_every_buffer_type():
    data = pack({"a": (1, 2)})
    for buffer in (data, bytearray(data), memoryview(data)):
        assert unpack(buffer) == {"a": (1, 2)}


# --- refusals before and around parsing ---------------------------------------

@pytest.mark.parametrize("value", ["\x90", 144, None, [0x90], 1.5])
def test_unpack_refuses_non_bytes(value):
    with pytest.raises(Malformed, match="expected bytes"):
        unpack(value)


def test_unpack_refuses_empty_input():
    with pytest.raises(Malformed, match="empty"):
        unpack(b"")


def test_too_large_is_refused_before_parsing(monkeypatch):
    def must_not_parse(*args, **kwargs):
        raise AssertionError("msgpack was asked to parse oversize input")

    monkeypatch.setattr(wire.msgpack, "unpackb", must_not_parse)
    limits = Limits(max_bytes=10)
    # Garbage that would be Malformed if it were parsed: the size check must come first.
    with pytest.raises(TooLarge) as info:
        unpack(b"\xc1" * 11, limits)
    assert info.value.code == "too_large"
    assert info.value.http_status == 413


def test_max_bytes_is_inclusive():
    limits = Limits(max_bytes=10)
    exactly = pack(b"x" * 8)  # c4 08 + 8 bytes = 10 bytes
    assert len(exactly) == 10
    assert unpack(exactly, limits) == b"x" * 8
    with pytest.raises(TooLarge):
        unpack(pack(b"x" * 9), limits)


def test_default_max_bytes_refuses_one_byte_over():
    data = bytes(DEFAULT_LIMITS.max_bytes + 1)
    with pytest.raises(TooLarge):
        unpack(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_or_raise_typed_error(data):
    try:
        unpack(data)
    except ProtocolError as exc:
        assert isinstance(exc, (Malformed, TooLarge))
        assert exc.code in ("malformed", "too_large")


@settings(max_examples=120, deadline=None)
@given(MSGPACK_VALUES)
def test_every_proper_prefix_of_an_encoding_is_malformed(value):
    data = pack(value)
    for size in range(len(data)):
        with pytest.raises(Malformed):
            unpack(data[:size])


@settings(max_examples=100, deadline=None)
@given(MSGPACK_VALUES, st.binary(min_size=1, max_size=10))
def test_trailing_data_is_malformed(value, extra):
    with pytest.raises(Malformed):
        unpack(pack(value) + extra)


# --- Fields -------------------------------------------------------------------------

SAMPLE_VALUES = {
    "nil": None, "true": True, "false": False, "zero": 0, "int": 7, "negative": -1,
    "u64": 2**64 - 1, "float": 1.5, "str": "x", "empty str": "", "bin": b"x",
    "array": (1,), "empty array": (), "map": {"a": 1}, "empty map": {},
}
KINDS = {  # Fields method -> the Python types it accepts (bool is not an int here)
    "str": (str,), "bin": (bytes,), "int": (int,), "bool": (bool,), "map": (dict,),
    "array": (tuple,), "node_id": (str,),
}


def _right_type(value, kinds) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


WRONG_TYPE_CASES = [
    (method, name, value)
    for method, kinds in KINDS.items()
    for name, value in SAMPLE_VALUES.items()
    if not _right_type(value, kinds)
]


@pytest.mark.parametrize(("method", "name", "value"), WRONG_TYPE_CASES,
                         ids=[f"{m}-{n}" for m, n, _ in WRONG_TYPE_CASES])
def test_fields_refuse_wrong_types(method, name, value):
    fields = Fields({"f": value}, "thing")
    with pytest.raises(Malformed, match=r"thing: field 'f' must be"):
        getattr(fields, method)("f")


@pytest.mark.parametrize("method", list(KINDS))
def test_fields_refuse_missing_keys(method):
    with pytest.raises(Malformed, match="missing field 'f'"):
        getattr(Fields({"g": 1}, "thing"), method)("f")


@pytest.mark.parametrize("value", [None, (), 1, "x", b"x", True])
def test_fields_require_a_map(value):
    with pytest.raises(Malformed, match="expected a map"):
        Fields(value, "thing")


def test_fields_read_typed_values():
    fields = Fields({"s": "abc", "b": b"\x01\x02", "i": 5, "t": True, "m": {"k": 1},
                     "a": (1, 2), "n": "gd.chaozhou", "o": None}, "thing")
    assert fields.str("s") == "abc"
    assert fields.bin("b", size=2) == b"\x01\x02"
    assert fields.int("i", min_value=5, max_value=5) == 5
    assert fields.bool("t") is True
    assert fields.map("m") == {"k": 1}
    assert fields.array("a") == (1, 2)
    assert fields.node_id("n") == "gd.chaozhou"
    assert fields.optional_str("o") is None
    assert fields.optional_str("absent") is None
    assert fields.has("s") and not fields.has("absent")
    fields.done()


def test_fields_done_refuses_unread_keys():
    fields = Fields({"a": 1, "b": 2, "c": 3}, "thing")
    fields.int("a")
    with pytest.raises(Malformed, match=r"unknown field\(s\) \['b', 'c'\]"):
        fields.done()


def test_fields_constraints():
    fields = Fields({"s": "abcd", "blank": "  \t", "b": b"abc", "i": 10}, "thing")
    assert fields.str("s", max_len=4) == "abcd"
    with pytest.raises(Malformed, match="longer than 3"):
        fields.str("s", max_len=3)
    assert fields.str("blank") == "  \t"
    with pytest.raises(Malformed, match="must not be empty"):
        fields.str("blank", allow_empty=False)
    with pytest.raises(Malformed, match="must be 4 bytes, got 3"):
        fields.bin("b", size=4)
    with pytest.raises(Malformed, match="out of range"):
        fields.int("i", max_value=9)
    with pytest.raises(Malformed, match="out of range"):
        fields.int("i", min_value=11)
    assert fields.int("i", min_value=10, max_value=10) == 10


def test_fields_int_default_range_is_non_negative_int64():
    assert Fields({"i": 2**63 - 1}, "t").int("i") == 2**63 - 1
    for bad in (-1, 2**63, 2**64 - 1):
        with pytest.raises(Malformed, match="out of range"):
            Fields({"i": bad}, "t").int("i")


def test_fields_optional_str_checks_present_values():
    assert Fields({"o": "abc"}, "t").optional_str("o") == "abc"
    with pytest.raises(Malformed):
        Fields({"o": 1}, "t").optional_str("o")
    with pytest.raises(Malformed):
        Fields({"o": "abcd"}, "t").optional_str("o", max_len=3)


@pytest.mark.parametrize("bad", ["GD", "gd..x", "-gd", "gd.", "", "a" * 256, "gd/x"])
def test_fields_node_id_refuses_bad_ids_with_typed_errors(bad):
    with pytest.raises(ProtocolError) as info:
        Fields({"n": bad}, "t").node_id("n")
    # Over-long strings are refused by length before id validation.
    assert info.value.code in ("bad_node_id", "malformed")


# --- the error table --------------------------------------------------------------

SNAKE_CASE = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)*")


def test_every_error_class_has_a_unique_snake_case_code():
    classes = errors.all_error_classes()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)
    for cls in classes:
        assert issubclass(cls, ProtocolError)
        assert SNAKE_CASE.fullmatch(cls.code), cls
        assert cls.code != ProtocolError.code, f"{cls.__name__} does not set its own code"
        # Refusals of input are 4xx; only not_ready (try later) is a 503.
        assert 400 <= cls.http_status < 500 or (cls.code, cls.http_status) == ("not_ready", 503), cls


def test_all_error_classes_finds_every_class_in_the_module():
    defined = {obj for obj in vars(errors).values()
               if isinstance(obj, type) and issubclass(obj, ProtocolError)
               and obj is not ProtocolError}
    assert defined == set(errors.all_error_classes())


def test_design_codes_are_present():
    codes = {cls.code for cls in errors.all_error_classes()}
    assert {"bad_signature", "unknown_origin", "expired_cert", "revoked", "too_large",
            "malformed", "replay", "not_addressed_here", "unknown_type",
            "unsupported_version", "bad_node_id", "bad_key_file", "bad_passphrase",
            "cannot_decrypt"} <= codes


@pytest.mark.parametrize("cls", errors.all_error_classes(), ids=lambda c: c.__name__)
def test_error_as_dict_and_default_detail(cls):
    assert cls().as_dict() == {"error": cls.code, "detail": cls.code}
    error = cls("why it failed")
    assert error.as_dict() == {"error": cls.code, "detail": "why it failed"}
    assert str(error) == "why it failed"
