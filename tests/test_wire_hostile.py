"""Hostile msgpack (protocol.wire): huge declared lengths, deep nesting, invalid UTF-8,
non-string map keys, ext and timestamp types and truncated values are malformed; the
depth and length limits hold exactly at their boundaries; huge declared lengths and
unclosed nested long arrays are refused without allocating much beyond the input; and
the walker that refuses deep nesting before msgpack can preallocate agrees with the
decoded depth on any input. The depth and decoding helpers are those of
tests/test_wire.py.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import wire
from protocol.errors import Malformed, ProtocolError, TooLarge
from protocol.wire import DEFAULT_LIMITS, Limits, pack, unpack
from test_wire import as_decoded, depth_of

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


def test_the_walk_stops_at_max_items_before_msgpack_decodes_anything(monkeypatch):
    """Millions of tiny items within the depth and array caps (an array of 4096 arrays of
    4096 nils is 16 MiB) would cost seconds to walk and decode: the budget stops it."""
    limits = Limits(max_depth=2, walk_first=True, max_items=100)
    many = wire.pack([[None] * 50] * 50)  # 2,551 items
    decoded = []
    real_unpackb = wire.msgpack.unpackb
    monkeypatch.setattr(wire.msgpack, "unpackb",
                        lambda data, **kwargs: decoded.append(kwargs["max_array_len"]) or
                        real_unpackb(data, **kwargs))
    with pytest.raises(TooLarge, match="more than 100 items"):
        unpack(many, limits)
    assert decoded == [15]  # only the first, fixarray-sized attempt (refused at once)
    assert unpack(wire.pack([[None] * 9] * 9), limits) == ((None,) * 9,) * 9  # 91 items


def test_a_transfer_of_the_most_frames_fits_the_transfer_limits():
    from node.http_api import TRANSFER_LIMITS
    frames = [bytes([n % 256]) * 40 for n in range(TRANSFER_LIMITS.max_array_len)]
    body = {"from": "gd.chaozhou.raoping", "frames": frames}
    assert unpack(wire.pack(body), TRANSFER_LIMITS)["frames"] == tuple(frames)
    with pytest.raises(Malformed, match="exceeds max_array_len"):
        unpack(wire.pack({**body, "frames": frames + [b"x"]}), TRANSFER_LIMITS)


def test_walk_first_limits_walk_instead_of_counting_and_decode_the_same(monkeypatch):
    """A transfer's few big frames: one walk of the headers, then one decode with the
    real limit, and the same value as the counting path gives."""
    frames = [bytes([n]) * 4000 + b"\xdc\xdd" * 200 for n in range(40)]  # header-like bytes
    data = wire.pack({"from": "gd", "frames": frames})
    counting, walking = Limits(max_depth=2), Limits(max_depth=2, walk_first=True)
    assert unpack(data, walking) == unpack(data, counting) == {"from": "gd",
                                                                "frames": tuple(frames)}
    seen, walked = [], []
    real_unpackb, real_walk = wire.msgpack.unpackb, wire._refuse_deep_nesting
    monkeypatch.setattr(wire.msgpack, "unpackb",
                        lambda data, **kwargs: seen.append(kwargs["max_array_len"]) or
                        real_unpackb(data, **kwargs))
    monkeypatch.setattr(wire, "_refuse_deep_nesting",
                        lambda *args: walked.append(1) or real_walk(*args))
    unpack(data, walking)
    assert seen == [15, walking.max_array_len] and walked == [1]


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


# --- the nesting walker ---------------------------------------------------------------


def walk(data: bytes, max_depth: int = DEFAULT_LIMITS.max_depth) -> None:
    wire._refuse_deep_nesting(data, Limits(max_depth=max_depth), "thing")


def nested(headers: list[bytes], depth: int) -> bytes:
    """``depth`` one-element containers, cycling through ``headers``, around a nil."""
    return b"".join(headers[level % len(headers)] for level in range(depth)) + b"\xc0"


NESTING_HEADERS = {  # each opens a container holding exactly the next level
    "array16": [b"\xdc\x00\x01"],
    "array32": [b"\xdd\x00\x00\x00\x01"],
    "map16": [b"\xde\x00\x01\xa1k"],
    "map32": [b"\xdf\x00\x00\x00\x01\xa1k"],
    "array16 and map16": [b"\xdc\x00\x01", b"\xde\x00\x01\xa1k"],
    "all kinds": [b"\x91", b"\xdc\x00\x01", b"\x81\xa1k", b"\xdf\x00\x00\x00\x01\xa1k"],
}


@pytest.mark.parametrize("headers", list(NESTING_HEADERS.values()), ids=list(NESTING_HEADERS))
def test_walker_refuses_one_level_over_max_depth(headers):
    limit = DEFAULT_LIMITS.max_depth
    with pytest.raises(Malformed, match=f"thing: nested deeper than {limit}"):
        walk(nested(headers, limit + 1))
    with pytest.raises(Malformed, match=f"nested deeper than {limit}"):
        unpack(nested(headers, limit + 1))


@pytest.mark.parametrize("headers", list(NESTING_HEADERS.values()), ids=list(NESTING_HEADERS))
def test_walker_accepts_nesting_exactly_at_max_depth(headers):
    limit = DEFAULT_LIMITS.max_depth
    walk(nested(headers, limit))
    assert depth_of(unpack(nested(headers, limit))) == limit


def test_walker_counts_empty_containers_and_map_entries():
    walk(b"\xdc\x00\x00", max_depth=1)
    with pytest.raises(Malformed):
        walk(b"\xdc\x00\x01\xdc\x00\x00", max_depth=1)  # [[]]
    # A map of 2 entries: the container opened as the second value is still inside it.
    deep_second_value = b"\xde\x00\x02\xa1a\x01\xa1b\x91\x91\xc0"
    walk(deep_second_value, max_depth=3)
    with pytest.raises(Malformed):
        walk(deep_second_value, max_depth=2)
    # After a closed container the depth goes back down.
    walk(b"\xdc\x00\x03" + b"\x91\xc0" * 3, max_depth=2)


def test_walker_skips_payloads_by_their_length():
    # Nesting-like bytes inside str/bin/ext payloads are data, not headers (and landing
    # one byte short would open the fixarray at the end, one level too deep).
    inside = b"\xdd\x00\x00\x10\x00" * 20 + b"\x9f"
    for item in (b"\xc4" + bytes([len(inside)]) + inside,
                 b"\xc5" + struct.pack(">H", len(inside)) + inside,
                 b"\xd9" + bytes([len(inside)]) + inside,
                 b"\xc7" + bytes([len(inside)]) + b"\x05" + inside,
                 b"\xd8\x05" + inside[-16:]):
        walk(b"\xdc\x00\x02" + item + b"\xc0", max_depth=1)


def test_walker_stops_at_the_end_of_the_first_value():
    walk(b"\xc0" + b"\x91" * 20)  # trailing data is msgpack's to refuse
    walk(b"\x91\xc0" + b"\x91" * 20)


def test_walker_leaves_what_msgpack_refuses_to_msgpack():
    walk(b"\x91\xc1" + b"\x91" * 20)  # reserved byte
    walk(b"\xdd\xff\xff\xff\xff" + b"\x91" * 20)  # array longer than max_array_len
    walk(b"\xdf\x00\x00\x01\x00" + b"\x91" * 20)  # map longer than max_map_len
    walk(b"\x91\xc6\xff\xff\xff\xff" + b"\x91" * 20)  # bin longer than the input
    walk(b"\x91\xdd\x00")  # truncated header


def test_typical_frames_never_walk_or_count(monkeypatch):
    def must_not_walk(*args):
        raise AssertionError("walker ran on a typical frame")

    monkeypatch.setattr(wire, "_refuse_deep_nesting", must_not_walk)
    payload = {"v": 1, "t": "document", "id": bytes(16), "o": "gd.a", "d": "gd.b", "at": 1,
               "b": {"sealed": b"\xdc\xdd\xde\xdf" * 1024}}  # worst case for a byte count
    assert unpack(pack(payload)) == payload
    assert unpack(pack([0] * 4096)) == (0,) * 4096  # one long array: under the budget


def test_many_long_arrays_are_walked_then_decoded(monkeypatch):
    walked = []
    real_walker = wire._refuse_deep_nesting
    monkeypatch.setattr(wire, "_refuse_deep_nesting",
                        lambda *args: walked.append(1) or real_walker(*args))
    value = [[i] * 300 for i in range(40)]  # 41 array16 headers, longer than the middle cap
    assert unpack(pack(value)) == as_decoded(value)
    assert walked


def test_a_batch_of_a_few_hundred_items_decodes_without_the_walk(monkeypatch):
    # What receipts frames and acknowledgements carry: decoded with the middle cap,
    # whose preallocation stays within the budget, without a Python step per item.
    walked = []
    monkeypatch.setattr(wire, "_refuse_deep_nesting", lambda *args: walked.append(1))
    value = {"items": [{"doc": bytes([i]) * 16, "seq": 1} for i in range(256)]}
    assert unpack(pack(value)) == as_decoded(value)
    assert not walked


WIDE_VALUES = st.recursive(  # containers long enough for array16/map16, payloads for bin16
    st.none() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=300) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=20)
    | st.dictionaries(st.text(max_size=6), children, max_size=20),
    max_leaves=60,
)


@settings(max_examples=300, deadline=None)
@given(WIDE_VALUES, st.integers(min_value=0, max_value=10))
def test_walker_agrees_with_the_decoded_depth(value, max_depth):
    data = pack(value)
    if depth_of(value) > max_depth:
        with pytest.raises(Malformed, match=f"nested deeper than {max_depth}"):
            walk(data, max_depth)
        with pytest.raises(Malformed, match=f"nested deeper than {max_depth}"):
            unpack(data, Limits(max_depth=max_depth))
    else:
        walk(data, max_depth)
        assert unpack(data, Limits(max_depth=max_depth)) == as_decoded(value)


@settings(max_examples=300, deadline=None)
@given(WIDE_VALUES, st.integers(min_value=0, max_value=10), st.data())
def test_truncated_input_is_walked_or_refused_and_never_decodes(value, max_depth, data):
    encoded = pack(value)
    prefix = encoded[:data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))]
    try:
        walk(prefix, max_depth)
    except Malformed:
        pass
    with pytest.raises(Malformed):
        unpack(prefix, Limits(max_depth=max_depth))


HEADER_SOUP = st.lists(st.sampled_from([
    b"\x91", b"\x92", b"\x80", b"\x81", b"\xa1k", b"\xc0", b"\x01", b"\xc4\x02ab", b"\xc1",
    b"\xdc\x00\x00", b"\xdc\x00\x02", b"\xdc\x10\x00", b"\xdd\x00\x00\x00\x03",
    b"\xdd\xff\xff\xff\xff", b"\xde\x00\x01", b"\xdf\x00\x00\x00\x02", b"\xd4\x05",
    b"\xc7\x01\x05", b"\xd9", b"\xdd\x00",
]), max_size=40).map(b"".join)


@settings(max_examples=500, deadline=None)
@given(HEADER_SOUP | st.binary(max_size=200), st.integers(min_value=0, max_value=10))
def test_walker_on_arbitrary_bytes_refuses_only_with_malformed_and_agrees(data, max_depth):
    try:
        walk(data, max_depth)
        walked_ok = True
    except Malformed:
        walked_ok = False
    try:
        value = unpack(data, Limits(max_depth=64))
    except ProtocolError as exc:
        assert isinstance(exc, (Malformed, TooLarge))
        return
    assert walked_ok == (depth_of(value) <= max_depth)
