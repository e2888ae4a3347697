"""Frame body types: one frozen dataclass per frame ``type``, in one table.

Theory of operation: a frame's ``type`` names exactly one body class in
``BODY_TYPES``; a type not in the table is refused (``unknown_type``). Each body class
knows its own wire form (``to_wire``) and reads itself back strictly
(``from_wire``, through ``wire.Fields``: exact key set, typed fields). Adding a
message type means adding one class and one table row here, and a section in SPEC.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from protocol.errors import Malformed
from protocol.wire import MAX_INT, Fields

MESSAGE_ID_BYTES = 16
MAX_TEXT = 4096  # names, reasons, instruction texts carried in clear


class Body(Protocol):
    type_name: ClassVar[str]

    def to_wire(self) -> dict[str, Any]: ...

    @classmethod
    def from_wire(cls, fields: Fields) -> "Body": ...


@dataclass(frozen=True)
class DocumentBody:
    """An official document, sealed to the destination's encryption key.

    Relays see only the envelope; ``sealed`` opens to the msgpack document
    (metadata, text and attachments) at the destination.
    """

    type_name: ClassVar[str] = "document"
    sealed: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"sealed": self.sealed}

    @classmethod
    def from_wire(cls, fields: Fields) -> "DocumentBody":
        return cls(sealed=fields.bin("sealed"))


@dataclass(frozen=True)
class ReceiptBody:
    """An end-to-end receipt: one workflow step taken at the destination.

    ``step`` is a receipt name from ``workflow.RECEIPT_STEP``; ``seq`` numbers the
    steps of one document at one recipient from 1, so the sender applies them in
    order however they travel.
    """

    type_name: ClassVar[str] = "receipt"
    document_id: bytes
    seq: int
    step: str
    actor: str
    at: int
    detail: str = ""

    def to_wire(self) -> dict[str, Any]:
        return {"doc": self.document_id, "seq": self.seq, "step": self.step,
                "actor": self.actor, "at": self.at, "detail": self.detail}

    @classmethod
    def from_wire(cls, fields: Fields) -> "ReceiptBody":
        return cls(
            document_id=fields.bin("doc", size=MESSAGE_ID_BYTES),
            seq=fields.int("seq", min_value=1),
            step=fields.str("step", max_len=32, allow_empty=False),
            actor=fields.str("actor", max_len=MAX_TEXT),
            at=fields.int("at"),
            detail=fields.str("detail", max_len=MAX_TEXT),
        )


MAX_RECEIPTS_PER_FRAME = 256


@dataclass(frozen=True)
class ReceiptsBody:
    """Several end-to-end receipts from one destination to one origin, one signature.

    A destination that stores a transfer batch of documents answers the documents of
    one origin with one ``receipts`` frame instead of one ``receipt`` frame each: one
    signature to make and check and one frame to relay, instead of hundreds. Each item
    reads exactly as a ``receipt`` body; the origin accepts the frame only if it
    accepts every item (one refused item refuses the frame, and nothing of it is
    stored), so a batch never half-applies.
    """

    type_name: ClassVar[str] = "receipts"
    items: tuple[ReceiptBody, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"items": [item.to_wire() for item in self.items]}

    @classmethod
    def from_wire(cls, fields: Fields) -> "ReceiptsBody":
        values = fields.array("items")
        if not 1 <= len(values) <= MAX_RECEIPTS_PER_FRAME:
            raise Malformed(f"receipts body: field 'items' must hold 1 to "
                            f"{MAX_RECEIPTS_PER_FRAME} receipts, got {len(values)}")
        items = []
        for index, value in enumerate(values):
            item = _plain_receipt(value)
            if item is None:  # not plain: Fields reads it, or words its refusal
                item_fields = Fields(value, f"receipts body: item {index}")
                item = ReceiptBody.from_wire(item_fields)
                item_fields.done()
            items.append(item)
        return cls(items=tuple(items))


_RECEIPT_KEYS = frozenset({"doc", "seq", "step", "actor", "at", "detail"})


def _plain_receipt(value: Any) -> ReceiptBody | None:
    """The receipt ``ReceiptBody.from_wire`` would read from ``value``, checked in one
    expression (a batch of 256 is the common case), or None: the caller then reads it
    field by field, which refuses it with the field named. The conditions are exactly
    ``from_wire``'s and ``Fields.done``'s; a rule added there must be added here."""
    if type(value) is not dict or value.keys() != _RECEIPT_KEYS:
        return None
    doc, seq, step = value["doc"], value["seq"], value["step"]
    actor, at, detail = value["actor"], value["at"], value["detail"]
    if (type(doc) is bytes and len(doc) == MESSAGE_ID_BYTES
            and type(seq) is int and 1 <= seq <= MAX_INT
            and type(step) is str and len(step) <= 32 and step.strip()
            and type(actor) is str and len(actor) <= MAX_TEXT
            and type(at) is int and 0 <= at <= MAX_INT
            and type(detail) is str and len(detail) <= MAX_TEXT):
        return ReceiptBody(document_id=doc, seq=seq, step=step, actor=actor, at=at,
                           detail=detail)
    return None


@dataclass(frozen=True)
class PingBody:
    """Liveness probe between neighbours; carries the sender's directory root."""

    type_name: ClassVar[str] = "ping"
    directory_root: bytes = b""

    def to_wire(self) -> dict[str, Any]:
        return {"dir": self.directory_root}

    @classmethod
    def from_wire(cls, fields: Fields) -> "PingBody":
        return cls(directory_root=fields.bin("dir"))





# --- gossip (anti-entropy push-pull, DESIGN §6; SPEC §8) ------------------------

MAX_GOSSIP_ITEMS = 4096


def _tuple_of(fields: Fields, key: str, check, what: str) -> tuple:
    items = fields.array(key)
    if len(items) > MAX_GOSSIP_ITEMS or not all(check(item) for item in items):
        raise Malformed(f"gossip field {key!r}: expected at most {MAX_GOSSIP_ITEMS} {what}")
    return items


def _is_bin(item: Any) -> bool:
    return type(item) is bytes


def _is_entry(item: Any) -> bool:
    return (type(item) is tuple and len(item) == 4 and type(item[0]) is str
            and type(item[1]) is str and type(item[2]) is int and type(item[3]) is bytes)


def _is_key(item: Any) -> bool:
    return type(item) is tuple and len(item) == 2 and all(type(part) is str for part in item)


def _is_bucket(item: Any) -> bool:
    return type(item) is int and 0 <= item < 65536


@dataclass(frozen=True)
class GossipBody:
    """One step of a gossip round, from initiator to responder.

    ``root``: the initiator's digest root. ``push``: records (``[kind, data]``
    encodings) the responder should merge. ``covered`` and ``entries``: the
    initiator's ``(kind, subject, seq, hash8)`` summary of the listed buckets, asking
    the responder what differs there.
    """

    type_name: ClassVar[str] = "gossip"
    root: bytes
    push: tuple[bytes, ...] = ()
    covered: tuple[int, ...] = ()
    entries: tuple[tuple[str, str, int, bytes], ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"root": self.root, "push": list(self.push), "covered": list(self.covered),
                "entries": [list(entry) for entry in self.entries]}

    @classmethod
    def from_wire(cls, fields: Fields) -> "GossipBody":
        return cls(root=fields.bin("root", size=16),
                   push=_tuple_of(fields, "push", _is_bin, "records"),
                   covered=_tuple_of(fields, "covered", _is_bucket, "bucket numbers"),
                   entries=_tuple_of(fields, "entries", _is_entry, "summary entries"))


@dataclass(frozen=True)
class GossipReplyBody:
    """The responder's answer: its root; its buckets when roots differ and no summary
    was sent; the records the initiator lacks; the keys it wants in return; and the
    pushed records it refused, as ``(kind, subject, error code)``."""

    type_name: ClassVar[str] = "gossip_reply"
    root: bytes
    buckets: bytes = b""
    records: tuple[bytes, ...] = ()
    want: tuple[tuple[str, str], ...] = ()
    refused: tuple[tuple[str, str, str], ...] = ()

    def to_wire(self) -> dict[str, Any]:
        return {"root": self.root, "buckets": self.buckets, "records": list(self.records),
                "want": [list(key) for key in self.want],
                "refused": [list(item) for item in self.refused]}

    @classmethod
    def from_wire(cls, fields: Fields) -> "GossipReplyBody":
        return cls(root=fields.bin("root", size=16), buckets=fields.bin("buckets"),
                   records=_tuple_of(fields, "records", _is_bin, "records"),
                   want=_tuple_of(fields, "want", _is_key, "record keys"),
                   refused=_tuple_of(fields, "refused", _is_refusal, "refusals"))


def _is_refusal(item: Any) -> bool:
    return type(item) is tuple and len(item) == 3 and all(type(part) is str for part in item)


# The table: frame type -> body class. A type not listed here is ``unknown_type``.
BODY_TYPES: dict[str, type] = {
    body.type_name: body
    for body in (DocumentBody, ReceiptBody, ReceiptsBody, PingBody, GossipBody,
                 GossipReplyBody)
}
