"""Node ids and the tree they form.

Theory of operation: a node id is a plain ``str`` such as ``gd.chaozhou.raoping``,
a dotted path of segments from a province root down to a node. The id tree is also
the trust tree (a parent certifies only its direct children) and the routing tree
(a message climbs from its origin to the nearest common ancestor, then descends to
its destination). So every question about trust or routing reduces to string
operations on segments, and lives here.

Every public function validates its id arguments first and raises ``BadNodeId`` for
anything that is not a well-formed id -- including non-``str`` values, since ids
arrive straight off the wire. Tree questions that have no answer (two ids in
different provinces share no ancestor) raise ``NoRoute``. Nothing else escapes.

Once validated, an id is cheap to take apart: ``.`` never occurs inside a segment,
so prefix tests must compare whole segments (``a.bc`` is not under ``a.b``), which
is why ``is_under`` checks ``ancestor + "."`` rather than a bare prefix.
"""

from __future__ import annotations

import functools
import re

from protocol.errors import BadNodeId, NoRoute

__all__ = [
    "MAX_DEPTH",
    "MAX_SEGMENT_LEN",
    "MAX_ID_LEN",
    "validate_node_id",
    "is_valid_node_id",
    "depth",
    "parent",
    "ancestors",
    "is_under",
    "is_child_of",
    "root_of",
    "nearest_common_ancestor",
    "route",
    "next_hop",
]

MAX_DEPTH = 8  # province > city > county > ... is 3-4 deep; 8 leaves headroom
MAX_SEGMENT_LEN = 32
MAX_ID_LEN = 255  # fits a DNS-label-ish budget and any sane DB column / header

SEPARATOR = "."
_SEGMENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_UPPERCASE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_QUOTE_LIMIT = 40
_SEGMENT_PATTERN = r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?"
_VALID_ID = re.compile(rf"{_SEGMENT_PATTERN}(?:\.{_SEGMENT_PATTERN}){{0,{MAX_DEPTH - 1}}}")


@functools.lru_cache(maxsize=4096)
def _is_well_formed(node_id: str) -> bool:
    """Cached: a federation has a few thousand ids, seen over and over."""
    return _VALID_ID.fullmatch(node_id) is not None


def _quote(value: object) -> str:
    """A short, safe rendering of a bad value for error messages."""
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not turn into a non-BadNodeId error
        text = f"<unprintable {type(value).__name__}>"
    if len(text) > _QUOTE_LIMIT:
        text = text[: _QUOTE_LIMIT - 3] + "..."
    return text


def _segment_problem(segment: str) -> str | None:
    """Say what is wrong with one segment, or None if it is fine."""
    if not segment:
        return "has an empty segment (leading, trailing or doubled '.')"
    if len(segment) > MAX_SEGMENT_LEN:
        return (f"has a segment of {len(segment)} characters "
                f"(at most {MAX_SEGMENT_LEN} allowed): {_quote(segment)}")
    for char in segment:
        if char in _UPPERCASE:
            return f"contains uppercase {char!r}; node ids are lowercase"
        if char not in _SEGMENT_CHARS:
            return f"contains {char!r}; segments may only use a-z, 0-9 and '-'"
    if segment[0] == "-" or segment[-1] == "-":
        return f"has a segment starting or ending with '-': {_quote(segment)}"
    return None


def validate_node_id(value: object) -> str:
    """Return ``value`` as a plain ``str`` if it is a valid node id, else raise BadNodeId."""
    if not isinstance(value, str):
        raise BadNodeId(f"node id must be a str, not {type(value).__name__}: {_quote(value)}")
    # str.__str__ gives an exact str even for subclasses, so a str subclass with
    # overridden methods cannot misbehave below or leak out to callers.
    node_id = str.__str__(value)
    # Fast path: ids are validated on every frame; the loop below only explains why not.
    if len(node_id) <= MAX_ID_LEN and _is_well_formed(node_id):
        return node_id
    if not node_id:
        raise BadNodeId("node id is empty")
    # Length first: it bounds all the work that follows.
    if len(node_id) > MAX_ID_LEN:
        raise BadNodeId(f"node id is {len(node_id)} characters long "
                        f"(at most {MAX_ID_LEN} allowed): {_quote(node_id)}")
    segments = node_id.split(SEPARATOR)
    for segment in segments:
        problem = _segment_problem(segment)
        if problem is not None:
            raise BadNodeId(f"node id {problem}: {_quote(node_id)}")
    if len(segments) > MAX_DEPTH:
        raise BadNodeId(f"node id is {len(segments)} levels deep "
                        f"(at most {MAX_DEPTH} allowed): {_quote(node_id)}")
    return node_id


def is_valid_node_id(value: object) -> bool:
    try:
        validate_node_id(value)
    except BadNodeId:
        return False
    return True


def _segments(node_id: str) -> list[str]:
    return validate_node_id(node_id).split(SEPARATOR)


def depth(node_id: str) -> int:
    """Number of segments: a province root has depth 1."""
    return len(_segments(node_id))


def parent(node_id: str) -> str | None:
    """The id one level up, or None for a root."""
    head, sep, _ = validate_node_id(node_id).rpartition(SEPARATOR)
    return head if sep else None


def ancestors(node_id: str) -> tuple[str, ...]:
    """All ids above ``node_id``, nearest first, not including itself."""
    segments = _segments(node_id)
    return tuple(SEPARATOR.join(segments[:n]) for n in range(len(segments) - 1, 0, -1))


def is_under(node_id: str, ancestor: str, *, strict: bool = True) -> bool:
    """Whether ``node_id`` lies in ``ancestor``'s subtree (or equals it, if not strict)."""
    node_id, ancestor = validate_node_id(node_id), validate_node_id(ancestor)
    if node_id == ancestor:
        return not strict
    # The trailing separator makes this a whole-segment match: a.bc is not under a.b.
    return node_id.startswith(ancestor + SEPARATOR)


def is_child_of(node_id: str, issuer: str) -> bool:
    """Whether ``node_id`` is directly under ``issuer``: the certificate name constraint."""
    return parent(node_id) == validate_node_id(issuer)


def root_of(node_id: str) -> str:
    """The province root at the top of ``node_id``'s tree."""
    return validate_node_id(node_id).partition(SEPARATOR)[0]


def _common_prefix(a: str, b: str) -> tuple[list[str], list[str], int]:
    """Both ids' segments and how many leading segments they share; NoRoute if none."""
    a_segments, b_segments = _segments(a), _segments(b)
    shared = 0
    for mine, theirs in zip(a_segments, b_segments):
        if mine != theirs:
            break
        shared += 1
    if shared == 0:
        raise NoRoute(f"no route between {_quote(a)} and {_quote(b)}: they are in "
                      f"different trees (roots {_quote(a_segments[0])} and "
                      f"{_quote(b_segments[0])})")
    return a_segments, b_segments, shared


def nearest_common_ancestor(a: str, b: str) -> str:
    """The deepest id that is ``a`` or above it and also ``b`` or above it."""
    a_segments, _, shared = _common_prefix(a, b)
    return SEPARATOR.join(a_segments[:shared])


def route(origin: str, destination: str) -> tuple[str, ...]:
    """The hops from ``origin`` to ``destination`` along tree edges.

    Climbs to the nearest common ancestor, then descends. Excludes ``origin``,
    includes ``destination``; empty when they are the same node.
    """
    up_segments, down_segments, shared = _common_prefix(origin, destination)
    # Climbing: every ancestor of origin down to (and including) the common one.
    climb = [SEPARATOR.join(up_segments[:n]) for n in range(len(up_segments) - 1, shared - 1, -1)]
    # Descending: every id below the common ancestor on the way to destination.
    descend = [SEPARATOR.join(down_segments[:n]) for n in range(shared + 1, len(down_segments) + 1)]
    return tuple(climb + descend)


def next_hop(origin: str, destination: str) -> str | None:
    """Where ``origin`` should send a message for ``destination``; None if it is there."""
    hops = route(origin, destination)
    return hops[0] if hops else None
