"""The signed frame: what one node hands another.

Theory of operation: a frame is a signed envelope (``signing.py``) whose payload is
the msgpack map::

    {"v": 1, "t": type, "id": 16 bytes, "o": origin, "d": destination,
     "at": created_at_ms, "b": body map}

and whose signature is the origin's Ed25519 signature over ``Domain.FRAME + payload``.

Receiving is two steps, because the key to verify with depends on the claimed origin:

1. ``parse_frame(data)`` checks sizes and structure and returns a ``SignedFrame``:
   the typed ``Frame`` plus the exact payload bytes and signature. Nothing in it is
   trusted yet and nothing may be stored.
2. ``SignedFrame.verify(verify_key)`` checks the signature over the exact bytes that
   arrived and returns the ``Frame``.

``open_frame(data, key_for_origin)`` does both, asking the caller for the origin's
current key (the directory); an unknown origin raises ``UnknownOrigin`` there.

Document content is sealed to the recipient (``sealing.py``) before it becomes a
body, so relays that parse and verify frames never see plaintext.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import nacl.utils

from protocol.ids import validate_node_id
from protocol.errors import Malformed, Replay, UnknownType, UnsupportedVersion
from protocol.keys import NodeKeys, RandomBytes
from protocol.messages import BODY_TYPES, MESSAGE_ID_BYTES, Body
from protocol.signing import Domain, decode_envelope, encode_envelope, verify_bytes
from protocol.wire import DEFAULT_LIMITS, Fields, Limits, pack, read_exact, unpack

FRAME_VERSION = 1
SUPPORTED_VERSIONS = frozenset({FRAME_VERSION})
MAX_TYPE_LEN = 32
MAX_CREATED_AT = 2**63 - 1  # what Fields.int accepts on the way in


@dataclass(frozen=True)
class Frame:
    type: str
    message_id: bytes
    origin: str
    destination: str
    created_at: int
    body: Body
    version: int = FRAME_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {"v": self.version, "t": self.type, "id": self.message_id, "o": self.origin,
                "d": self.destination, "at": self.created_at, "b": self.body.to_wire()}


@dataclass(frozen=True)
class SignedFrame:
    """A parsed but not yet verified frame, with the exact bytes that were signed."""

    frame: Frame
    payload: bytes
    signature: bytes

    @property
    def origin(self) -> str:
        return self.frame.origin

    def verify(self, verify_key: bytes) -> Frame:
        verify_bytes(verify_key, Domain.FRAME, self.payload, self.signature,
                     what=f"frame from {self.frame.origin}")
        return self.frame

    def encode(self) -> bytes:
        return encode_envelope(self.payload, self.signature)


TIME_PREFIX_BYTES = 6  # a time-ordered id starts with its creation time, ms, big-endian


def new_message_id(random_bytes: RandomBytes = nacl.utils.random, *,
                   created_at: int | None = None) -> bytes:
    """A new 16-byte id for a frame or a document.

    With ``created_at`` (ms) the id is *time-ordered* (SPEC §4), as message ids should
    be: the time in its first 6 bytes, 10 random bytes after it, as in a UUIDv7. Every
    store keyed by them then inserts near the end of its index instead of at random
    places in it, so a batch dirties a few pages instead of one page per row, however
    big the store has grown. Without it, all 16 bytes are random, as document ids are
    (people type their first digits). Either way a receiver treats the id as opaque.
    """
    if created_at is None:
        return random_bytes(MESSAGE_ID_BYTES)
    if type(created_at) is not int or not 0 <= created_at < 1 << (8 * TIME_PREFIX_BYTES):
        raise Malformed(f"created_at {created_at!r} does not fit a time-ordered id")
    return created_at.to_bytes(TIME_PREFIX_BYTES, "big") + \
        random_bytes(MESSAGE_ID_BYTES - TIME_PREFIX_BYTES)


def make_frame(body: Body, *, origin: str, destination: str, created_at: int,
               message_id: bytes) -> Frame:
    """Build a frame, checking the envelope fields a sender controls."""
    if BODY_TYPES.get(body.type_name) is not type(body):
        raise UnknownType(f"{type(body).__name__} is not a registered frame body")
    if not isinstance(message_id, bytes) or len(message_id) != MESSAGE_ID_BYTES:
        raise Malformed(f"message id must be {MESSAGE_ID_BYTES} bytes")
    if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
        raise Malformed("created_at must be a non-negative integer (ms)")
    return Frame(type=body.type_name, message_id=message_id, origin=validate_node_id(origin),
                 destination=validate_node_id(destination), created_at=created_at, body=body)


def sign_frame(frame: Frame, keys: NodeKeys) -> SignedFrame:
    payload = pack(frame.to_wire())
    return SignedFrame(frame, payload, keys.sign(Domain.FRAME, payload))


def encode_frame(frame: Frame, keys: NodeKeys) -> bytes:
    """Sign ``frame`` with ``keys`` and return the bytes that go on the wire."""
    return sign_frame(frame, keys).encode()


def parse_frame(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedFrame:
    payload, signature = decode_envelope(data, limits, what="frame")
    frame = _frame_from_payload(unpack(payload, limits, what="frame payload"))
    return SignedFrame(frame, payload, signature)


def open_frame(data: bytes, key_for_origin: Callable[[str], bytes],
               limits: Limits = DEFAULT_LIMITS) -> Frame:
    """Parse and verify; ``key_for_origin`` raises ``UnknownOrigin`` (or a trust error)."""
    signed = parse_frame(data, limits)
    return signed.verify(key_for_origin(signed.origin))


_PAYLOAD_SCHEMA = {"v": int, "t": str, "id": bytes, "o": str, "d": str, "at": int, "b": dict}


def _frame_from_payload(value: Any) -> Frame:
    # The version first: a later version may have other fields.
    version = value.get("v") if type(value) is dict else None
    if type(version) is int and version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(f"frame version {version} (this node speaks {FRAME_VERSION})")
    version, type_name, message_id, origin, destination, created_at, body = read_exact(
        value, _PAYLOAD_SCHEMA, "frame payload")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(f"frame version {version} (this node speaks {FRAME_VERSION})")
    if len(type_name) > MAX_TYPE_LEN:
        raise Malformed(f"frame payload: field 't' longer than {MAX_TYPE_LEN} characters")
    body_class = BODY_TYPES.get(type_name)
    if body_class is None:
        raise UnknownType(f"unknown frame type {type_name!r}")
    if len(message_id) != MESSAGE_ID_BYTES:
        raise Malformed(f"frame payload: field 'id' must be {MESSAGE_ID_BYTES} bytes, "
                        f"got {len(message_id)}")
    if not 0 <= created_at <= MAX_CREATED_AT:
        raise Malformed(f"frame payload: field 'at' out of range [0, {MAX_CREATED_AT}]")
    return Frame(version=version, type=type_name, message_id=message_id,
                 origin=validate_node_id(origin), destination=validate_node_id(destination),
                 created_at=created_at, body=_body(body_class, body, type_name))


def _body(body_class: type, value: dict, type_name: str) -> Body:
    fields = Fields(value, f"{type_name} body")
    body = body_class.from_wire(fields)
    fields.done()
    return body


def check_age(frame: Frame, *, now_ms: int, max_age_ms: int, max_future_ms: int) -> None:
    """Refuse frames older than the dedupe window (``replay``) or from the future.

    Inside the window the receiver's dedupe by message id catches repeats; outside it
    a repeat could not be recognised, so it is refused by age.
    """
    if frame.created_at < now_ms - max_age_ms:
        raise Replay(f"frame created {now_ms - frame.created_at} ms ago, "
                     f"beyond the {max_age_ms} ms replay window")
    if frame.created_at > now_ms + max_future_ms:
        raise Malformed(f"frame created {frame.created_at - now_ms} ms in the future "
                        f"(clock skew beyond {max_future_ms} ms)")
