"""Hostile msgpack (protocol.wire): huge declared lengths, deep nesting, invalid UTF-8,
non-string map keys, ext and timestamp types and truncated values are malformed; the
depth and length limits hold exactly at their boundaries; huge declared lengths and
unclosed nested long arrays are refused without allocating much beyond the input; and
the walker that refuses deep nesting before msgpack can preallocate is tested in
tests/test_wire_walk.py. The depth and decoding helpers are those of tests/test_wire.py.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import wire
from protocol.errors import Malformed, ProtocolError
from protocol.wire import DEFAULT_LIMITS, Limits, pack, unpack
from test_wire import depth_of

MiB = 1024 * 1024
U32_MAX = 2**32 - 1


def peak_allocation(function, *args) -> int:
    """Peak traced allocation (bytes) while ``function`` runs; it must raise ProtocolError."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        with pytest.raises(ProtocolError):
            function(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - baseline


# --- hostile msgpack ------------------------------------------------------------

HUGE_HEADERS = {
    "bin32 4 GiB": b"\xc6" + struct.pack(">I", U32_MAX),
    "str32 4 GiB": b"\xdb" + struct.pack(">I", U32_MAX),
    "array32 2**32-1": b"\xdd" + struct.pack(">I", U32_MAX),
    "map32 2**32-1": b"\xdf" + struct.pack(">I", U32_MAX),
    "ext32 4 GiB": b"\xc9" + struct.pack(">I", U32_MAX) + b"\x01",
    "bin16 64 KiB": b"\xc5\xff\xff",
    "str16 64 KiB": b"\xda\xff\xff",
    "array16 65535": b"\xdc\xff\xff",
    "map16 65535": b"\xde\xff\xff",
}

HOSTILE = {
    **{f"{name} with tiny body": header + b"\x00\x01\x02"
       for name, header in HUGE_HEADERS.items()},
    **{f"{name} bare": header for name, header in HUGE_HEADERS.items()},
    "deep nesting 100000": b"\x91" * 100_000 + b"\xc0",
    "deep map nesting 50000": b"\x81\xa1k" * 50_000 + b"\xc0",
    "array just over max_depth": b"\x91" * (DEFAULT_LIMITS.max_depth + 1) + b"\xc0",
    "map just over max_depth": b"\x81\xa1k" * (DEFAULT_LIMITS.max_depth + 1) + b"\xc0",
    "reserved byte 0xc1": b"\xc1",
    "invalid utf-8 in str": b"\xa2\xff\xfe",
    "invalid utf-8 in map key": b"\x81\xa2\xc3\x28\xc0",
    "overlong utf-8": b"\xa2\xc0\xaf",
    "lone surrogate utf-8": b"\xa3\xed\xa0\x80",
    "trailing nil": b"\xc0\xc0",
    "trailing garbage after map": pack({"a": 1}) + b"\xc1",
    "int map key": b"\x81\x01\x02",
    "nil map key": b"\x81\xc0\x02",
    "bool map key": b"\x81\xc3\x02",
    "float map key": b"\x81\xcb" + struct.pack(">d", 1.5) + b"\x02",
    "array map key": b"\x81\x91\x01\x02",
    "empty array map key": b"\x81\x90\x02",
    "map map key": b"\x81\x80\x02",
    "bytes map key": b"\x81\xc4\x01k\x02",
    "bytes map key beside str keys": pack({"a": 1, b"b": 2, "c": 3}),
    "nested bytes map key": pack({"a": {b"b": 1}}),
    "fixext1": b"\xd4\x05\x00",
    "fixext4": b"\xd6\x05\x00\x00\x00\x00",
    "fixext16": b"\xd8\x05" + bytes(16),
    "ext8 empty": b"\xc7\x00\x05",
    "ext8 negative type": b"\xc7\x00\x80",
    "ext8 with data": b"\xc7\x03\x05abc",
    "ext16": b"\xc8\x00\x02\x05ab",
    "timestamp32": b"\xd6\xff\x00\x00\x00\x01",
    "timestamp64": b"\xd7\xff" + bytes(8),
    "timestamp96": b"\xc7\x0c\xff" + bytes(12),
    "timestamp empty": b"\xc7\x00\xff",
    "ext inside array": b"\x91\xd4\x05\x00",
    "ext as map value": b"\x81\xa1k\xd4\x05\x00",
    "truncated uint64": b"\xcf\x00\x00",
    "truncated float64": b"\xcb\x00",
    "truncated str8": b"\xd9\x05ab",
}


@pytest.mark.parametrize("data", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_msgpack_is_malformed(data):
    with pytest.raises(Malformed) as info:
        unpack(data)
    assert info.value.code == "malformed"
    assert info.value.http_status == 400


def test_nesting_exactly_at_max_depth_is_accepted():
    limit = DEFAULT_LIMITS.max_depth
    assert depth_of(unpack(b"\x91" * limit + b"\xc0")) == limit
    assert depth_of(unpack(b"\x81\xa1k" * limit + b"\xc0")) == limit
    with pytest.raises(Malformed, match="nested deeper than 8"):
        unpack(b"\x91" * (limit + 1) + b"\xc0")


def test_depth_counts_the_deepest_branch_not_the_first():
    shallow_then_deep = [1, [2], {"a": [[[[[[[[]]]]]]]]}]  # deepest branch has depth 10
    assert depth_of(shallow_then_deep) == 10
    with pytest.raises(Malformed, match="nested deeper"):
        unpack(pack(shallow_then_deep))
    assert unpack(pack(shallow_then_deep), Limits(max_depth=10))[2]["a"]


def test_empty_containers_count_towards_depth():
    assert unpack(pack([[]]), Limits(max_depth=2)) == ((),)
    with pytest.raises(Malformed):
        unpack(pack([[]]), Limits(max_depth=1))


def test_str_bin_array_map_length_limits():
    limits = Limits(max_str_len=4, max_bin_len=4, max_array_len=4, max_map_len=4)
    assert unpack(pack("abcd"), limits) == "abcd"
    assert unpack(pack(b"abcd"), limits) == b"abcd"
    assert unpack(pack([0] * 4), limits) == (0,) * 4
    assert unpack(pack({str(i): i for i in range(4)}), limits) == {str(i): i for i in range(4)}
    for over in ("abcde", b"abcde", [0] * 5, {str(i): i for i in range(5)}):
        with pytest.raises(Malformed, match="exceeds"):
            unpack(pack(over), limits)


def test_str_limit_counts_bytes_not_characters():
    with pytest.raises(Malformed):
        unpack(pack("文件"), Limits(max_str_len=5))  # 2 characters, 6 bytes
    assert unpack(pack("文件"), Limits(max_str_len=6)) == "文件"


def test_default_array_and_map_limits():
    assert len(unpack(pack([None] * DEFAULT_LIMITS.max_array_len))) == DEFAULT_LIMITS.max_array_len
    with pytest.raises(Malformed):
        unpack(pack([None] * (DEFAULT_LIMITS.max_array_len + 1)))
    with pytest.raises(Malformed):
        unpack(pack({str(i): 0 for i in range(DEFAULT_LIMITS.max_map_len + 1)}))


def test_floats_decode():
    assert unpack(pack(1.5)) == 1.5


def test_error_detail_names_what_was_decoded_and_is_short():
    with pytest.raises(Malformed) as info:
        unpack(b"\xdd" + struct.pack(">I", U32_MAX), what="frame payload")
    assert info.value.detail.startswith("frame payload:")
    assert len(info.value.detail) < 200


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=60), st.sampled_from(list(HUGE_HEADERS.values())))
def test_huge_headers_followed_by_anything_are_malformed(tail, header):
    with pytest.raises(Malformed):
        unpack(header + tail)


# --- allocation bounds ----------------------------------------------------------

ALLOCATION_CASES = {
    "array32 2**32-1": b"\xdd" + struct.pack(">I", U32_MAX) + b"\xc0",
    "map32 2**32-1": b"\xdf" + struct.pack(">I", U32_MAX) + b"\xa1k\xc0",
    "bin32 4 GiB": b"\xc6" + struct.pack(">I", U32_MAX) + b"xyz",
    "str32 4 GiB": b"\xdb" + struct.pack(">I", U32_MAX) + b"xyz",
    "ext32 4 GiB": b"\xc9" + struct.pack(">I", U32_MAX) + b"\x05xyz",
    # Declared lengths exactly at the caps: allowed, but the body is missing.
    "bin32 at max_bin_len": b"\xc6" + struct.pack(">I", DEFAULT_LIMITS.max_bin_len) + b"xyz",
    "str32 at max_str_len": b"\xdb" + struct.pack(">I", DEFAULT_LIMITS.max_str_len) + b"xyz",
    "array32 nested in array32": (b"\x91\xdd" + struct.pack(">I", U32_MAX)),
    "huge array inside a map": b"\x81\xa1k\xdd" + struct.pack(">I", U32_MAX),
}


@pytest.mark.parametrize("data", list(ALLOCATION_CASES.values()), ids=list(ALLOCATION_CASES))
def test_huge_declared_lengths_do_not_allocate(data):
    peak = peak_allocation(unpack, data)
    assert peak < len(data) + MiB, f"peak {peak} bytes"


NESTED_LONG_ARRAYS = {
    # Unclosed nesting whose every level declares max_array_len items: msgpack would
    # preallocate 8 * 4096 bytes a level for 1024 levels (32 MiB) from ~10 KiB.
    "array32": (b"\xdd" + struct.pack(">I", DEFAULT_LIMITS.max_array_len)) * 2000,
    "array16": (b"\xdc" + struct.pack(">H", DEFAULT_LIMITS.max_array_len)) * 2000,
    "array16 in map": (b"\x81\xa1k\xdc" + struct.pack(">H", DEFAULT_LIMITS.max_array_len)) * 2000,
    "after fixarrays": b"\x91" * 5 + (b"\xdd" + struct.pack(">I", 4096)) * 2000,
}


@pytest.mark.parametrize("walk_first", [False, True], ids=["count-first", "walk-first"])
@pytest.mark.parametrize("data", list(NESTED_LONG_ARRAYS.values()), ids=list(NESTED_LONG_ARRAYS))
def test_unclosed_nested_long_arrays_are_refused_before_allocating(data, walk_first):
    limits = Limits(walk_first=walk_first)
    with pytest.raises(Malformed, match="nested deeper than 8"):
        unpack(data, limits)
    peak = peak_allocation(unpack, data, limits)
    assert peak < len(data) + MiB, f"peak {peak} bytes"


def test_msgpack_never_sees_the_long_array_limit_before_the_nesting_check(monkeypatch):
    seen = []
    real_unpackb = wire.msgpack.unpackb

    def spy(data, **kwargs):
        seen.append(kwargs["max_array_len"])
        return real_unpackb(data, **kwargs)

    monkeypatch.setattr(wire.msgpack, "unpackb", spy)
    with pytest.raises(Malformed, match="nested deeper than 8"):
        unpack(NESTED_LONG_ARRAYS["array32"])
    assert seen and max(seen) <= 15  # only the fixarray-sized first attempt ran


def test_long_arrays_the_walker_lets_through_stay_under_the_budget(monkeypatch):
    """Below the budget msgpack may preallocate unwalked: the worst such case is bounded."""
    header = b"\xdd" + struct.pack(">I", DEFAULT_LIMITS.max_array_len)
    levels = wire._ARRAY_BUDGET // (8 * DEFAULT_LIMITS.max_array_len + wire._ARRAY_BYTES)
    # Fill msgpack's 1024-level stack with fixarrays around them (incomplete input).
    worst = b"\x9f" * (1023 - levels) + header * levels
    peak = peak_allocation(unpack, worst)
    assert peak < len(worst) + MiB, f"peak {peak} bytes"
    with pytest.raises(Malformed, match="nested deeper"):  # one more and the walker runs
        unpack(b"\x9f" * (1022 - levels) + header * (levels + 1))


def test_msgpack_does_not_preallocate_maps():
    """Maps start empty whatever length they declare, so only arrays need the walker."""
    limits = Limits(max_map_len=2**20, max_depth=2000)
    data = (b"\xdf" + struct.pack(">I", 2**20) + b"\xa1k") * 1000
    peak = peak_allocation(unpack, data, limits)
    assert peak < len(data) + MiB, f"peak {peak} bytes"


def test_msgpack_stack_stops_fixarray_nesting_at_1024_levels():
    """The fixarray-only first attempt relies on this cap (15 slots a level, 1024 levels)."""
    wire.msgpack.unpackb(b"\x91" * 1024 + b"\xc0")
    with pytest.raises(wire.msgpack.exceptions.StackError):
        wire.msgpack.unpackb(b"\x91" * 1025 + b"\xc0")
