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

from protocol.wire import Fields

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


BODY_TYPES: dict[str, type] = {
    DocumentBody.type_name: DocumentBody,
    ReceiptBody.type_name: ReceiptBody,
    PingBody.type_name: PingBody,
}

