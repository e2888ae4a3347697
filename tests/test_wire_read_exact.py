"""``wire.read_exact``: the one-call typed reader of hot decoders (frames, content)."""

from __future__ import annotations

import pytest

from protocol.errors import Malformed
from protocol.wire import read_exact

SCHEMA = {"id": bytes, "at": int, "dl": (int, type(None))}


def test_values_come_back_in_schema_order():
    assert read_exact({"dl": None, "at": 5, "id": b"x"}, SCHEMA, "m") == [b"x", 5, None]
    assert read_exact({"dl": 7, "at": 5, "id": b"x"}, SCHEMA, "m") == [b"x", 5, 7]


@pytest.mark.parametrize("value, detail", [
    ({"id": b"x", "at": 5}, "m: missing field 'dl'"),
    ({"id": b"x", "at": 5, "dl": None, "extra": 1}, "m: unknown field(s) ['extra']"),
    ({"id": "x", "at": 5, "dl": None}, "m: field 'id' must be binary, got a string"),
    ({"id": b"x", "at": True, "dl": None}, "m: field 'at' must be an integer, got bool"),
    ({"id": b"x", "at": 5, "dl": "soon"},
     "m: field 'dl' must be an integer or nil, got a string"),
    ({"id": b"x", "at": 5, "dl": False}, "m: field 'dl' must be an integer or nil, got bool"),
    ([b"x", 5, None], "m: expected a map, got an array"),
])
def test_each_wrong_shape_is_refused_naming_the_field(value, detail):
    if isinstance(value, list):
        value = tuple(value)
    with pytest.raises(Malformed) as refused:
        read_exact(value, SCHEMA, "m")
    assert refused.value.detail == detail
