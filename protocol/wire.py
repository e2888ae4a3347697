"""Strict msgpack decoding: the one place bytes from outside become Python values.

Theory of operation: every decoder in ``protocol/`` goes through ``unpack`` and then
reads fields through ``Fields``. ``unpack`` checks the total size *before* parsing,
hands msgpack hard caps on string, binary, array and map lengths (msgpack checks a
declared length against its cap before allocating anything for it), refuses ext
types and non-string map keys, and then checks the nesting depth (msgpack's own
stack stops hostile nesting at 1024 levels before that). Nesting is also refused
*before* msgpack may preallocate long arrays: see ``_refuse_deep_nesting``, which some
limits run first of all (``walk_first``, with a budget of items). However it goes,
msgpack builds at most ``max_containers`` arrays and maps. Floats decode but no field
accepts one. Any
failure, of whatever kind inside msgpack, comes out as ``Malformed`` or ``TooLarge``:
callers never see a ``ValueError`` or ``UnicodeDecodeError``.

``Fields`` reads a decoded map with an exact key set: a missing key, an unknown key or
a value of the wrong type is ``Malformed``, naming the field. Decoded maps never leak
further than the ``from_wire`` function that reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgpack

from protocol.errors import Malformed, TooLarge
from protocol.ids import MAX_ID_LEN, validate_node_id


@dataclass(frozen=True)
class Limits:
    """Hard caps on what a peer may make us parse. Defaults suit one frame."""

    max_bytes: int = 16 * 1024 * 1024
    max_str_len: int = 64 * 1024
    max_bin_len: int = 16 * 1024 * 1024
    max_array_len: int = 4096
    max_map_len: int = 64
    max_depth: int = 8
    # For inputs of a few big items (a transfer's frames): walk the headers before any
    # decoding, a Python step (about 0.35 us) per item, rather than try fixarrays first
    # and then count array-header bytes (about 1 ms a megabyte, most of it spent inside
    # binary payloads); for many small items that is the cheaper. See ``unpack``.
    walk_first: bool = False
    # Items (values at any depth) the header walk lets through before refusing the
    # input: what bounds the walk, and then msgpack's work, on a hostile input of
    # millions of tiny items. None: no bound (the walk is then linear in the input).
    max_items: int | None = None
    # Arrays and maps msgpack may build before the input is refused. Fixarrays nested
    # a few levels deep hold millions of items in a few megabytes and pass the first,
    # fixarray-only attempt; this bounds that work (15 items a container at most) on
    # every path. The most any message holds: a gossip frame, 3 * 4,096 tuples.
    max_containers: int = 16_384


DEFAULT_LIMITS = Limits()
MAX_INT = 2**63 - 1  # the largest integer a field may hold (msgpack's int64)

_MSGPACK_FAILURES = (
    ValueError,  # includes msgpack's ExtraData, FormatError, StackError, UnpackValueError
    TypeError,
    OverflowError,
    UnicodeDecodeError,
    msgpack.exceptions.OutOfData,
)


def pack(value: Any) -> bytes:
    """Encode with the options every govnode encoder uses (bin type, no floats)."""
    # A Packer allocates a 256 KiB buffer when made, which is half of what packing a
    # frame costs: packers are reused, one per caller at a time (list.pop and append
    # are atomic, so callers in several threads each get their own). A packer whose
    # buffer grew for a big value is let go rather than kept with its megabytes, and
    # so is one whose pack raised (the exception skips the append).
    try:
        packer = _IDLE_PACKERS.pop()
    except IndexError:
        packer = msgpack.Packer(use_bin_type=True, buf_size=_PACKER_BUFFER_BYTES)
    packed = packer.pack(value)
    if len(packed) <= _PACKER_BUFFER_BYTES:
        _IDLE_PACKERS.append(packer)
    return packed


_IDLE_PACKERS: list[msgpack.Packer] = []
_PACKER_BUFFER_BYTES = 256 * 1024  # a new Packer's buffer (msgpack's default size too)


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS, *, what: str = "message") -> Any:
    """Decode exactly one msgpack value from ``data`` within ``limits``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Malformed(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{what}: {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data:
        raise Malformed(f"{what}: empty")
    # msgpack allocates an array's slots when it reads the header, before any item, so
    # unclosed nested arrays declaring max_array_len items cost 8 * max_array_len bytes
    # a level, for up to 1024 levels (32 MiB by default from ~5 KiB). The first attempt
    # allows fixarrays only (<= 15 slots a level); an input that needs longer arrays (or
    # is refused anyway) is decoded again with the real limit, once its nesting has
    # been checked. Typical frames hold no arrays and pay nothing for this. Limits with
    # ``walk_first`` walk the headers before msgpack builds anything (their item budget
    # then bounds its work too: fixarrays nested six deep hold eleven million items in
    # 12 MB), and decode once.
    if limits.walk_first:
        data = bytes(data) if isinstance(data, memoryview) else data
        _refuse_deep_nesting(data, limits, what)
        value = _decode(data, limits, limits.max_array_len, what)
        _check_depth(value, limits.max_depth, what)  # and its check of map keys
        return value
    short_arrays = limits.max_array_len
    if short_arrays > _FIXARRAY_MAX:  # (not min(): this is the hot path)
        short_arrays = _FIXARRAY_MAX
    try:
        value = _decode(data, limits, short_arrays, what)
    except Malformed:
        if short_arrays == limits.max_array_len:
            raise
        value = _RETRY
    if value is _RETRY:
        data = bytes(data) if isinstance(data, memoryview) else data
        long_arrays = data.count(b"\xdc") + data.count(b"\xdd")  # array16/32 headers, or not
        # A middle cap first: a batch of a few hundred items (receipts, acknowledged
        # ids) then decodes within the budget without the walk below, which costs a
        # Python step per item.
        middle = min(_MIDDLE_ARRAY_MAX, limits.max_array_len)
        if middle < limits.max_array_len and \
                long_arrays * (_SLOT_BYTES * middle + _ARRAY_BYTES) <= _ARRAY_BUDGET:
            try:
                value = _decode(data, limits, middle, what)
            except Malformed:
                pass
        if value is _RETRY:
            if long_arrays * (_SLOT_BYTES * limits.max_array_len + _ARRAY_BYTES) > _ARRAY_BUDGET:
                _refuse_deep_nesting(data, limits, what)
            value = _decode(data, limits, limits.max_array_len, what)
    _check_depth(value, limits.max_depth, what)
    return value


# Preallocation by msgpack's C unpacker (msgpack 1.x, pinned by tests/test_wire.py):
# PyTuple_New(n) for an array header, PyDict_New() (empty, grows as filled) for a map.
_FIXARRAY_MAX = 15
_MIDDLE_ARRAY_MAX = 256
_SLOT_BYTES = 8
_ARRAY_BYTES = 64  # tuple header and allocator rounding
# Arrays msgpack may preallocate for an input whose nesting was not walked. With the
# fixarray levels beside them (at most 1024 * 15 slots) the total stays under 1 MiB.
_ARRAY_BUDGET = 512 * 1024
_RETRY = object()


def _decode(data: bytes, limits: Limits, max_array_len: int, what: str) -> Any:
    containers_left = limits.max_containers

    def counted(container: Any) -> Any:  # msgpack calls it for each array and map built
        nonlocal containers_left
        containers_left -= 1
        if containers_left < 0:
            raise Malformed(f"{what}: more than {limits.max_containers} arrays and maps")
        return container

    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=False,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
            ext_hook=_refuse_ext,
            list_hook=counted,
            object_hook=counted,
        )
    except Malformed:
        raise
    except _MSGPACK_FAILURES as exc:
        raise Malformed(f"{what}: not valid msgpack within limits ({_short(exc)})") from None


def _refuse_deep_nesting(data: bytes, limits: Limits, what: str) -> None:
    """Refuse nesting deeper than ``limits.max_depth`` by reading headers only.

    Why: the depth check after decoding comes too late for arrays msgpack has already
    preallocated (see ``unpack``). This walks the msgpack headers without building any
    value, skipping str/bin/ext payloads by their declared length, and keeps one count
    of elements still to read per open container (a map of n entries has 2n). It never
    looks past the data actually present, so its work is linear in the input whatever
    the declared lengths. Anything it cannot follow (truncation, byte 0xc1, a length
    over the caps) it leaves to msgpack, which refuses it before allocating. More than
    ``limits.max_items`` items refuse the input (``TooLarge``).
    """
    pending: list[int] = []  # elements still to read in each open container, innermost last
    end = len(data)
    # Every item takes a byte at least: without max_items the count never runs out.
    items_left = end if limits.max_items is None else limits.max_items
    pos = 0
    while pos < end:
        items_left -= 1
        if items_left < 0:
            raise TooLarge(f"{what}: more than {limits.max_items} items")
        header = _HEADERS[data[pos]]
        if header is None:
            return  # 0xc1
        kind, width, count = header
        if kind == _SKIP:  # width is the whole item's size
            pos += width
            count = 0
        elif kind == _SIZED:  # width: size of the length field; count: bytes before the data
            start = pos + 1 + width
            pos = start + count + int.from_bytes(data[pos + 1:start], "big")
            count = 0
        else:
            if len(pending) >= limits.max_depth:
                raise Malformed(f"{what}: nested deeper than {limits.max_depth}")
            if kind == _OPEN:  # count is the number of elements
                pos += 1
            else:  # _OPEN_SIZED: count is elements per declared entry
                start = pos + 1 + width
                length = int.from_bytes(data[pos + 1:start], "big")
                if length > (limits.max_map_len if count == 2 else limits.max_array_len):
                    return
                count *= length
                pos = start
        if pending:
            pending[-1] -= 1  # this item is one element of the container around it
        if count:
            pending.append(count)
            continue
        while pending and not pending[-1]:
            pending.pop()
        if not pending:
            return  # one whole value read; trailing bytes are msgpack's to refuse


_SKIP, _SIZED, _OPEN, _OPEN_SIZED = range(4)


def _header_table() -> tuple[tuple[int, int, int] | None, ...]:
    """First byte of an item -> (kind, width, count), as ``_refuse_deep_nesting`` reads them."""
    table: list[tuple[int, int, int] | None] = [None] * 256  # None only for 0xc1 (never used)
    for byte in (*range(0x00, 0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3):
        table[byte] = (_SKIP, 1, 0)  # fixints, nil, false, true
    for byte in range(0xA0, 0xC0):
        table[byte] = (_SKIP, 1 + (byte & 0x1F), 0)  # fixstr
    for byte, size in {0xCA: 5, 0xCB: 9, 0xCC: 2, 0xCD: 3, 0xCE: 5, 0xCF: 9, 0xD0: 2,
                       0xD1: 3, 0xD2: 5, 0xD3: 9, 0xD4: 3, 0xD5: 4, 0xD6: 6, 0xD7: 10,
                       0xD8: 18}.items():
        table[byte] = (_SKIP, size, 0)  # floats, ints, fixext (type byte + 1..16)
    for byte, width in {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}.items():
        table[byte] = (_SIZED, width, 0)  # bin8/16/32, str8/16/32
    for byte, width in {0xC7: 1, 0xC8: 2, 0xC9: 4}.items():
        table[byte] = (_SIZED, width, 1)  # ext8/16/32: length, type byte, data
    for byte in range(0x90, 0xA0):
        table[byte] = (_OPEN, 0, byte & 0x0F)  # fixarray
    for byte in range(0x80, 0x90):
        table[byte] = (_OPEN, 0, 2 * (byte & 0x0F))  # fixmap
    for byte, width, per_entry in ((0xDC, 2, 1), (0xDD, 4, 1), (0xDE, 2, 2), (0xDF, 4, 2)):
        table[byte] = (_OPEN_SIZED, width, per_entry)  # array16/32, map16/32
    return tuple(table)


_HEADERS = _header_table()


def _refuse_ext(code: int, data: bytes) -> Any:
    raise Malformed(f"msgpack ext type {code} is not allowed")


def _check_depth(value: Any, max_depth: int, what: str) -> None:
    """Refuse nesting deeper than ``max_depth`` and non-str map keys; iterative, containers only."""
    if type(value) not in _CONTAINERS:
        return
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if level > max_depth:
            raise Malformed(f"{what}: nested deeper than {max_depth}")
        if type(item) is dict:
            # strict_map_key still lets bytes keys through; only str keys are allowed.
            if not _STR_ONLY.issuperset(map(type, item)):
                raise Malformed(f"{what}: map keys must be strings")
            item = item.values()
        for child in item:
            if type(child) in _CONTAINERS:
                pending.append((child, level + 1))


_CONTAINERS = (tuple, dict)
_STR_ONLY = frozenset({str})


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 80 else text[:77] + "..."


_KIND_NAMES = {str: "a string", bytes: "binary", int: "an integer", dict: "a map",
               tuple: "an array", bool: "a boolean"}


def read_exact(value: Any, schema: dict[str, type | tuple[type, ...]], what: str) -> list[Any]:
    """The values of a map with exactly ``schema``'s keys, each of exactly its type (or
    of one of them, for a tuple of types: ``(int, NoneType)`` is an integer or nil).

    The one-call form of ``Fields`` for hot decoders (a frame's envelope fields): the
    key set is compared at once, then each type; the refusals read as ``Fields``'.
    """
    if type(value) is not dict:
        raise Malformed(f"{what}: expected a map, got {_type_name(value)}")
    if value.keys() != schema.keys():
        missing = [key for key in schema if key not in value]
        if missing:
            raise Malformed(f"{what}: missing field {missing[0]!r}")
        raise Malformed(f"{what}: unknown field(s) {sorted(value.keys() - schema.keys())!r}")
    values = [value[key] for key in schema]
    for (key, kind), item in zip(schema.items(), values):
        if type(item) is not kind and (type(kind) is not tuple or type(item) not in kind):
            kinds = kind if type(kind) is tuple else (kind,)
            named = " or ".join(_KIND_NAMES.get(each, "nil") for each in kinds)
            raise Malformed(f"{what}: field {key!r} must be {named}, got {_type_name(item)}")
    return values


class Fields:
    """Typed, exact-key-set reader over one decoded msgpack map."""

    def __init__(self, value: Any, what: str) -> None:
        if not isinstance(value, dict):
            raise Malformed(f"{what}: expected a map, got {_type_name(value)}")
        self._map = value
        self._what = what
        self._read: set[str] = set()

    def _get(self, key: str, kinds: tuple[type, ...], kind_name: str) -> Any:
        try:
            value = self._map[key]
        except KeyError:
            raise Malformed(f"{self._what}: missing field {key!r}") from None
        # Exact types: msgpack yields exactly these, and bool (an int subclass)
        # must not pass for an int.
        if type(value) not in kinds:
            raise Malformed(
                f"{self._what}: field {key!r} must be {kind_name}, got {_type_name(value)}"
            )
        self._read.add(key)
        return value

    def has(self, key: str) -> bool:
        return key in self._map

    def str(self, key: str, *, max_len: int | None = None, allow_empty: bool = True) -> str:
        value = self._get(key, (str,), "a string")
        if not allow_empty and not value.strip():
            raise Malformed(f"{self._what}: field {key!r} must not be empty")
        if max_len is not None and len(value) > max_len:
            raise Malformed(f"{self._what}: field {key!r} longer than {max_len} characters")
        return value

    def bin(self, key: str, *, size: int | None = None) -> bytes:
        value = self._get(key, (bytes,), "binary")
        if size is not None and len(value) != size:
            raise Malformed(f"{self._what}: field {key!r} must be {size} bytes, got {len(value)}")
        return value

    def int(self, key: str, *, min_value: int = 0, max_value: int = MAX_INT) -> int:
        value = self._get(key, (int,), "an integer")
        if not min_value <= value <= max_value:
            raise Malformed(f"{self._what}: field {key!r} out of range [{min_value}, {max_value}]")
        return value

    def node_id(self, key: str) -> str:
        return validate_node_id(self.str(key, max_len=MAX_ID_LEN))

    def bool(self, key: str) -> bool:
        return self._get(key, (bool,), "a boolean")

    def map(self, key: str) -> dict:
        return self._get(key, (dict,), "a map")

    def array(self, key: str) -> tuple:
        return self._get(key, (tuple,), "an array")

    def optional_str(self, key: str, *, max_len: int | None = None) -> str | None:
        if key not in self._map or self._map[key] is None:
            self._read.add(key)
            return None
        return self.str(key, max_len=max_len)

    def done(self) -> None:
        """Refuse any key that was not read: unknown fields are not silently ignored."""
        extra = set(self._map) - self._read
        if extra:
            raise Malformed(f"{self._what}: unknown field(s) {sorted(extra)!r}")


def _type_name(value: Any) -> str:
    return {tuple: "an array", dict: "a map", bytes: "binary", str: "a string"}.get(
        type(value), type(value).__name__
    )
