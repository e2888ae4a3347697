"""The walker of msgpack headers (protocol.wire._refuse_deep_nesting) that refuses deep
nesting before msgpack can preallocate: exact at max_depth, payloads skipped by their
length, in agreement with the decoded depth on any input; when ``unpack`` walks and when
it counts first (``Limits.walk_first``); and the items budget that bounds the walk
(``Limits.max_items``). The depth and decoding helpers are those of tests/test_wire.py.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import wire
from protocol.errors import Malformed, ProtocolError, TooLarge
from protocol.wire import DEFAULT_LIMITS, Limits, pack, unpack
from test_wire import as_decoded, depth_of


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



# --- walking first, and the items budget -----------------------------------------


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
    assert decoded == []  # refused before msgpack built anything
    assert unpack(wire.pack([[None] * 9] * 9), limits) == ((None,) * 9,) * 9  # 91 items


def nested_fixarrays(levels: int) -> bytes:
    """15 nils in fixarrays nested ``levels`` deep: 15 ** levels items."""
    return b"\xc0" if not levels else b"\x9f" + nested_fixarrays(levels - 1) * 15


@pytest.mark.parametrize("limits, refusal", [
    (Limits(max_depth=8, walk_first=True, max_items=1000), "more than 1000 items"),
    (Limits(max_depth=2, walk_first=True), "nested deeper than 2"),
], ids=["items", "depth"])
def test_walk_first_refuses_nested_fixarrays_before_msgpack_builds_them(monkeypatch, limits,
                                                                        refusal):
    """Fixarrays nested within msgpack's 1024 levels fit its first, fixarray-only attempt:
    with walk_first the walk refuses them before any of their items is built."""
    data = nested_fixarrays(4)  # 50,625 nils in 54 kB
    decoded = []
    real_unpackb = wire.msgpack.unpackb
    monkeypatch.setattr(wire.msgpack, "unpackb",
                        lambda data, **kwargs: decoded.append(1) or real_unpackb(data, **kwargs))
    with pytest.raises((TooLarge, Malformed), match=refusal):
        unpack(data, limits)
    assert decoded == []


def test_a_transfer_of_the_most_frames_fits_the_transfer_limits():
    from node.http_api import TRANSFER_LIMITS
    frames = [bytes([n % 256]) * 40 for n in range(TRANSFER_LIMITS.max_array_len)]
    body = {"from": "gd.chaozhou.raoping", "frames": frames}
    assert unpack(wire.pack(body), TRANSFER_LIMITS)["frames"] == tuple(frames)
    with pytest.raises(Malformed, match="exceeds max_array_len"):
        unpack(wire.pack({**body, "frames": frames + [b"x"]}), TRANSFER_LIMITS)


def test_walk_first_limits_walk_instead_of_counting_and_decode_the_same(monkeypatch):
    """A transfer's few big frames: one walk of the headers, then one decode with the
    real limit (no fixarray attempt, no counting), and the same value as the other
    path gives."""
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
    assert seen == [walking.max_array_len] and walked == [1]


# --- the container budget ----------------------------------------------------------


def test_fixarrays_nested_six_deep_are_refused_by_the_container_budget():
    """11 million nils in 12 MB pass the fixarray-only first attempt: the budget on arrays
    and maps stops msgpack after 16,384 of them instead of building them all."""
    with pytest.raises(Malformed, match="more than 16384 arrays and maps"):
        unpack(nested_fixarrays(6))


def test_the_container_budget_is_exact_and_counts_maps_too():
    limit = DEFAULT_LIMITS.max_containers
    assert len(unpack(pack([[1]] * (limit - 1)), Limits(max_array_len=limit))) == limit - 1
    with pytest.raises(Malformed, match="arrays and maps"):
        unpack(pack([[1]] * limit), Limits(max_array_len=limit))
    with pytest.raises(Malformed, match="arrays and maps"):
        unpack(pack([{"k": 1}] * limit), Limits(max_array_len=limit))
    assert unpack(pack([{"k": 1}] * 3), Limits(max_containers=4)) == ({"k": 1},) * 3


def test_the_largest_gossip_body_fits_the_default_budget():
    entries = [["certificate", f"gd.n{n}", n, b"\x00" * 16] for n in range(4096)]
    body = {"root": b"\x00" * 16, "records": [], "want": [["status", "gd", 1]] * 4096,
            "refused": [["gd.x", "bad_signature", "x"]] * 4096, "entries": entries}
    assert len(unpack(pack({"b": body}))["b"]["entries"]) == 4096
