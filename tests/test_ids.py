"""Tests for protocol.ids: node id validation and the id tree (routing, name constraint)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ids
from protocol.errors import BadNodeId, NoRoute
from protocol.ids import (
    MAX_DEPTH,
    MAX_ID_LEN,
    MAX_SEGMENT_LEN,
    ancestors,
    depth,
    is_child_of,
    is_under,
    is_valid_node_id,
    nearest_common_ancestor,
    next_hop,
    parent,
    root_of,
    route,
    validate_node_id,
)

# An independent oracle for validity, written from DESIGN §3 rather than from the code.
_SEGMENT_RE = r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
_ORACLE = re.compile(rf"{_SEGMENT_RE}(?:\.{_SEGMENT_RE}){{0,{MAX_DEPTH - 1}}}")


def oracle_valid(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_ID_LEN and _ORACLE.fullmatch(value) is not None


# --- strategies -------------------------------------------------------------

# A small pool of names makes generated ids share prefixes often, so routes climb
# and descend through real common ancestors instead of always meeting at the root.
_COMMON_SEGMENTS = st.sampled_from(
    ["gd", "zj", "chaozhou", "raoping", "finance", "a", "b", "bc", "x-1", "9"]
)
# Fresh names exercise the full alphabet and length range. Stripping '-' keeps them
# valid; it is cheaper than st.from_regex, which matters for the < 2 s budget.
_fresh_segments = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=MAX_SEGMENT_LEN
).map(lambda text: text.strip("-") or "z")
segments = st.one_of(_COMMON_SEGMENTS, _COMMON_SEGMENTS, _fresh_segments)
roots = st.sampled_from(["gd", "zj"])


@st.composite
def node_ids(draw: st.DrawFn, root: str | None = None) -> str:
    top = root if root is not None else draw(roots)
    below = draw(st.lists(segments, min_size=0, max_size=4))  # depth 1..5
    return ".".join([top, *below])


@st.composite
def same_tree_pairs(draw: st.DrawFn) -> tuple[str, str]:
    """Two ids in one tree, usually with a shared stem deeper than the root."""
    stem = draw(node_ids())
    room = 5 - stem.count(".") - 1
    tail_a = draw(st.lists(segments, max_size=room))
    tail_b = draw(st.lists(segments, max_size=room))
    return ".".join([stem, *tail_a]), ".".join([stem, *tail_b])


fast = settings(max_examples=50, deadline=None, database=None)


# --- validation: examples ---------------------------------------------------

@pytest.mark.parametrize(
    "value",
    [
        "gd",
        "gd.chaozhou",
        "gd.chaozhou.raoping",
        "gd.finance",
        "0",
        "a-b.c-9",
        "a" * MAX_SEGMENT_LEN,
        ".".join(["a"] * MAX_DEPTH),
        ".".join(["a" * 31] * 8),  # 8*31 + 7 = 255, exactly at the limit
    ],
)
def test_valid_ids_are_returned_unchanged(value: str) -> None:
    assert validate_node_id(value) == value
    assert is_valid_node_id(value)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (42, "must be a str, not int"),
        (None, "must be a str, not NoneType"),
        (b"gd", "must be a str, not bytes"),
        ("", "empty"),
        (".gd", "empty segment"),
        ("gd.", "empty segment"),
        ("gd..x", "empty segment"),
        ("GD", "uppercase 'G'"),
        ("gd.Finance", "uppercase 'F'"),
        ("gd_x", "'_'"),
        ("gd x", "' '"),
        ("gd\n", "'\\n'"),
        ("广东", "'广'"),
        ("gd.ｆ", "'ｆ'"),  # fullwidth letter, lookalike of f
        ("gd.-x", "starting or ending with '-'"),
        ("gd.x-", "starting or ending with '-'"),
        ("a" * (MAX_SEGMENT_LEN + 1), "33 characters"),
        (".".join(["a"] * (MAX_DEPTH + 1)), "9 levels deep"),
        (".".join(["a" * 32] * 8), "263 characters long"),
    ],
)
def test_invalid_ids_say_what_is_wrong(value: object, fragment: str) -> None:
    with pytest.raises(BadNodeId) as caught:
        validate_node_id(value)
    assert caught.value.code == "bad_node_id"
    assert fragment in str(caught.value)
    assert not is_valid_node_id(value)


def test_error_quotes_the_bad_value() -> None:
    with pytest.raises(BadNodeId, match=re.escape("'gd.Finance'")):
        validate_node_id("gd.Finance")


def test_error_truncates_long_values() -> None:
    with pytest.raises(BadNodeId) as caught:
        validate_node_id("A" * 10_000)
    message = str(caught.value)
    assert "..." in message
    assert len(message) < 120


def test_str_subclass_comes_back_as_plain_str() -> None:
    class Sneaky(str):
        def split(self, *args: object, **kwargs: object) -> list[str]:
            raise RuntimeError("not called")

        def __repr__(self) -> str:
            raise RuntimeError("not called either")

    result = validate_node_id(Sneaky("gd.x"))
    assert type(result) is str and result == "gd.x"
    with pytest.raises(BadNodeId):
        validate_node_id(Sneaky("GD"))


def test_hostile_repr_still_gives_bad_node_id() -> None:
    class Hostile:
        def __repr__(self) -> str:
            raise ValueError("boom")

    with pytest.raises(BadNodeId, match="unprintable Hostile"):
        validate_node_id(Hostile())


def test_every_function_validates_its_arguments() -> None:
    one_arg = [depth, parent, ancestors, root_of]
    two_args = [is_under, is_child_of, nearest_common_ancestor, route, next_hop]
    for function in one_arg:
        with pytest.raises(BadNodeId):
            function("Bad")  # type: ignore[operator]
    for function in two_args:
        with pytest.raises(BadNodeId):
            function("gd", "gd..x")  # type: ignore[operator]
        with pytest.raises(BadNodeId):
            function(7, "gd")  # type: ignore[operator]


# --- validation: properties -------------------------------------------------

_tricky_text = st.text(alphabet="ab0-.Z_ é\n", max_size=300)
_anything = st.one_of(
    _tricky_text,
    st.text(max_size=40),
    st.binary(max_size=20),
    st.integers(),
    st.floats(),
    st.none(),
    st.booleans(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@fast
@given(_anything)
def test_validate_only_raises_bad_node_id_or_returns_valid_id(value: object) -> None:
    try:
        result = validate_node_id(value)
    except BadNodeId as error:
        assert error.code == "bad_node_id"
        assert not oracle_valid(value)
    else:
        assert result == value
        assert oracle_valid(result)


@fast
@given(_tricky_text)
def test_validity_matches_the_oracle(value: str) -> None:
    assert is_valid_node_id(value) == oracle_valid(value)


@fast
@given(node_ids())
def test_generated_ids_are_valid(node_id: str) -> None:
    assert validate_node_id(node_id) == node_id
    assert 1 <= depth(node_id) <= 5


# --- tree shape -------------------------------------------------------------

def test_tree_examples() -> None:
    assert depth("gd") == 1
    assert depth("gd.chaozhou.raoping") == 3
    assert parent("gd") is None
    assert parent("gd.chaozhou.raoping") == "gd.chaozhou"
    assert ancestors("gd") == ()
    assert ancestors("gd.chaozhou.raoping") == ("gd.chaozhou", "gd")
    assert root_of("gd.chaozhou.raoping") == "gd"
    assert root_of("gd") == "gd"


@pytest.mark.parametrize(
    ("node_id", "ancestor", "strict", "expected"),
    [
        ("a.b.c", "a.b", True, True),
        ("a.b.c", "a", True, True),
        ("a.b", "a.b", True, False),
        ("a.b", "a.b", False, True),
        ("a.bc", "a.b", True, False),  # the prefix trap
        ("a.bc", "a.b", False, False),
        ("a.b-x.c", "a.b", True, False),
        ("ab.c", "a", True, False),
        ("a", "a.b", True, False),  # an ancestor is not under its descendant
        ("gd.x", "zj", True, False),
    ],
)
def test_is_under(node_id: str, ancestor: str, strict: bool, expected: bool) -> None:
    assert is_under(node_id, ancestor, strict=strict) is expected


@pytest.mark.parametrize(
    ("node_id", "issuer", "expected"),
    [
        ("gd.chaozhou", "gd", True),
        ("gd.chaozhou.raoping", "gd.chaozhou", True),
        ("gd.chaozhou.raoping", "gd", False),  # grandchild: the name constraint refuses
        ("gd", "gd", False),
        ("gd", "gd.chaozhou", False),
        ("gd.chaozhoux", "gd.chaozhou", False),
        ("gdx.a", "gd", False),
    ],
)
def test_is_child_of(node_id: str, issuer: str, expected: bool) -> None:
    assert is_child_of(node_id, issuer) is expected


@fast
@given(node_ids())
def test_ancestors_follow_parent_links(node_id: str) -> None:
    chain = ancestors(node_id)
    assert len(chain) == depth(node_id) - 1
    current = node_id
    for above in chain:
        assert parent(current) == above
        assert is_under(node_id, above)
        assert is_child_of(current, above)
        current = above
    assert parent(current) is None
    assert current == root_of(node_id)


@fast
@given(node_ids(), node_ids())
def test_is_under_agrees_with_ancestors(node_id: str, other: str) -> None:
    assert is_under(node_id, other) == (other in ancestors(node_id))
    assert is_under(node_id, other, strict=False) == (other == node_id or other in ancestors(node_id))


# --- nearest common ancestor and routing ------------------------------------

def test_route_examples() -> None:
    assert route("gd.chaozhou.raoping", "gd.finance") == ("gd.chaozhou", "gd", "gd.finance")
    assert route("gd", "gd.chaozhou.raoping") == ("gd.chaozhou", "gd.chaozhou.raoping")
    assert route("gd.chaozhou.raoping", "gd") == ("gd.chaozhou", "gd")
    assert route("gd.a.b", "gd.a.c") == ("gd.a", "gd.a.c")
    assert route("gd.a", "gd.a") == ()
    assert route("gd.b", "gd.bc") == ("gd", "gd.bc")  # siblings, not parent/child
    assert next_hop("gd.a", "gd.a") is None
    assert next_hop("gd.a", "gd.a.b") == "gd.a.b"
    assert nearest_common_ancestor("gd.a.b", "gd.a.c") == "gd.a"
    assert nearest_common_ancestor("gd.b", "gd.bc") == "gd"
    assert nearest_common_ancestor("gd.a", "gd.a.b") == "gd.a"


@pytest.mark.parametrize("function", [nearest_common_ancestor, route, next_hop])
def test_different_trees_have_no_route(function: object) -> None:
    with pytest.raises(NoRoute) as caught:
        function("gd.chaozhou", "zj.hangzhou")  # type: ignore[operator]
    assert caught.value.code == "no_route"
    assert "'gd'" in str(caught.value) and "'zj'" in str(caught.value)


def _is_edge(a: str, b: str) -> bool:
    return parent(a) == b or parent(b) == a


@fast
@given(same_tree_pairs())
def test_route_walks_tree_edges_to_the_destination(pair: tuple[str, str]) -> None:
    origin, destination = pair
    hops = route(origin, destination)
    nca = nearest_common_ancestor(origin, destination)
    walk = (origin, *hops)
    assert all(_is_edge(a, b) for a, b in zip(walk, walk[1:]))
    assert walk[-1] == destination
    assert len(set(walk)) == len(walk)  # never revisits a node, origin included
    assert len(hops) == depth(origin) + depth(destination) - 2 * depth(nca)
    assert len(hops) <= 2 * max(depth(origin), depth(destination))
    assert (hops == ()) == (origin == destination)
    assert next_hop(origin, destination) == (hops[0] if hops else None)


@fast
@given(same_tree_pairs())
def test_route_reversed_is_the_same_path(pair: tuple[str, str]) -> None:
    origin, destination = pair
    forward = (origin, *route(origin, destination))
    backward = (destination, *route(destination, origin))
    assert forward == backward[::-1]


@fast
@given(same_tree_pairs())
def test_nearest_common_ancestor_is_common_and_nearest(pair: tuple[str, str]) -> None:
    a, b = pair
    nca = nearest_common_ancestor(a, b)
    assert is_under(a, nca, strict=False) and is_under(b, nca, strict=False)
    assert nca == nearest_common_ancestor(b, a)
    # Nothing deeper is common to both: any child of nca on a's side is not above b.
    deeper = [x for x in (a, *ancestors(a)) if parent(x) == nca]
    assert all(not is_under(b, x, strict=False) for x in deeper)


@fast
@given(node_ids(root="gd"), node_ids(root="zj"))
def test_cross_tree_pairs_raise_no_route(a: str, b: str) -> None:
    with pytest.raises(NoRoute):
        route(a, b)
    with pytest.raises(NoRoute):
        next_hop(b, a)


def test_public_api_is_exactly_what_was_agreed() -> None:
    assert set(ids.__all__) == {
        "MAX_DEPTH", "MAX_SEGMENT_LEN", "MAX_ID_LEN", "validate_node_id",
        "is_valid_node_id", "depth", "parent", "ancestors", "is_under", "is_child_of",
        "root_of", "nearest_common_ancestor", "route", "next_hop",
    }
    assert (MAX_DEPTH, MAX_SEGMENT_LEN, MAX_ID_LEN) == (8, 32, 255)
