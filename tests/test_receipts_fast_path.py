"""The one-expression check of a receipts item (messages._plain_receipt) takes exactly
what ReceiptBody.from_wire and Fields.done take, and leaves every refusal to them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.errors import Malformed
from protocol.messages import (MAX_TEXT, ReceiptBody, ReceiptsBody, _plain_receipt)
from protocol.wire import Fields

GOOD = {"doc": b"\x01" * 16, "seq": 2, "step": "signed_for", "actor": "张三",
        "at": 1_764_000_000_000, "detail": ""}
ODD_VALUES = [None, True, False, 0, 1, -1, 2**63 - 1, 2**63, -(2**63), 1.5, "", " ", "\u3000",
              "x" * 32, "x" * 33, "x" * MAX_TEXT, "x" * (MAX_TEXT + 1), b"", b"\x01" * 15,
              b"\x01" * 16, b"\x01" * 17, (), ("a",), {}, {"a": 1}]


def field_by_field(value) -> ReceiptBody | Malformed:
    try:
        fields = Fields(value, "receipts body: item 0")
        receipt = ReceiptBody.from_wire(fields)
        fields.done()
    except Malformed as refusal:
        return refusal
    return receipt


def assert_same(value) -> None:
    slow = field_by_field(value)
    fast = _plain_receipt(value)
    if isinstance(slow, Malformed):
        assert fast is None, (value, slow)
    else:
        assert fast == slow, value


@pytest.mark.parametrize("key", sorted(GOOD))
@pytest.mark.parametrize("odd", ODD_VALUES, ids=repr)
def test_every_field_with_every_odd_value(key, odd):
    assert_same({**GOOD, key: odd})


@pytest.mark.parametrize("value", [
    GOOD, {**GOOD, "extra": 1}, {**GOOD, b"doc": 1}, {k: v for k, v in GOOD.items() if k != "at"},
    [GOOD], (), None, "receipt", {**GOOD, "step": " signed_for "}, {**GOOD, "seq": 1},
], ids=["good", "extra key", "bytes key", "missing key", "list", "tuple", "nil", "str",
        "padded step", "first step"])
def test_shapes(value):
    assert_same(value)
    if value is GOOD:
        assert _plain_receipt(value) is not None  # the common case takes the fast path


@given(st.dictionaries(st.sampled_from(sorted(GOOD) + ["x"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                                 st.binary(max_size=20)), min_size=5, max_size=7))
def test_random_items(value):
    assert_same(value)


def test_a_bad_item_in_a_batch_is_refused_with_its_index_as_before():
    items = (GOOD, GOOD, {**GOOD, "seq": 0})
    with pytest.raises(Malformed, match=r"receipts body: item 2: field 'seq' out of range"):
        ReceiptsBody.from_wire(Fields({"items": items}, "receipts body"))
    body = ReceiptsBody.from_wire(Fields({"items": (GOOD, GOOD)}, "receipts body"))
    assert body.items == (field_by_field(GOOD),) * 2
