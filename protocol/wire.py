"""Strict msgpack decoding: the one place bytes from outside become Python values.

Theory of operation: every decoder in ``protocol/`` goes through ``unpack`` and then
reads fields through ``Fields``. ``unpack`` checks the total size *before* parsing,
hands msgpack hard caps on string, binary, array and map lengths (msgpack checks a
declared length against its cap before allocating anything for it), refuses ext
types and non-string map keys, and then checks the nesting depth (msgpack's own
stack stops hostile nesting at a few hundred levels before that). Floats decode but
no field accepts one. Any
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


DEFAULT_LIMITS = Limits()

_MSGPACK_FAILURES = (
    ValueError,  # includes msgpack's ExtraData, FormatError, StackError, UnpackValueError
    TypeError,
    OverflowError,
    UnicodeDecodeError,
    msgpack.exceptions.OutOfData,
)


def pack(value: Any) -> bytes:
    """Encode with the options every govnode encoder uses (bin type, no floats)."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes, limits: Limits = DEFAULT_LIMITS, *, what: str = "message") -> Any:
    """Decode exactly one msgpack value from ``data`` within ``limits``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise Malformed(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise TooLarge(f"{what}: {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    if not data:
        raise Malformed(f"{what}: empty")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=False,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_bin_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
            ext_hook=_refuse_ext,
        )
    except Malformed:
        raise
    except _MSGPACK_FAILURES as exc:
        raise Malformed(f"{what}: not valid msgpack within limits ({_short(exc)})") from None
    _check_depth(value, limits.max_depth, what)
    return value


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

    def int(self, key: str, *, min_value: int = 0, max_value: int = 2**63 - 1) -> int:
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
