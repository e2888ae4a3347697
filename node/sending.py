"""Sending a document: validate, seal one frame per recipient, queue, all or nothing.

Each recipient (主送 and 抄送) gets its own frame whose body is the document content
sealed to that recipient's encryption key, so relays never see plaintext. The
document, one delivery row per recipient and the frames are committed in one
transaction; delivery takes over from the outbox.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from protocol import sealing
from protocol.documents import (Attachment, Document, encode_content, validate_attachment_limit,
                                validate_document)
from protocol.errors import InvalidDocument, ProtocolError
from protocol.messages import DocumentBody

from node.clock import now_ms
from node.context import NodeContext
from node.store.db import transaction
from node.store.document_store import DeliveryRow, DocumentRow, encode_metadata

DEFAULT_MAX_ATTACHMENT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class AttachmentFile:
    name: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class SentDocument:
    document: Document
    deliveries: tuple[tuple[str, bytes], ...]  # (recipient, message id)


def attach(files: list[AttachmentFile]) -> tuple[tuple[Attachment, ...], dict[bytes, bytes]]:
    data: dict[bytes, bytes] = {}
    attachments = []
    for item in files:
        digest = hashlib.sha256(item.data).digest()
        data[digest] = item.data
        attachments.append(Attachment(item.name, item.media_type, digest, len(item.data)))
    return tuple(attachments), data


async def send_document(context: NodeContext, draft: Document,
                        files: list[AttachmentFile] = (), *,
                        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> SentDocument:
    """Validate and queue ``draft`` (its issuer_id, doc_id and created_at are filled in)."""
    attachments, data = attach(list(files))
    document = validate_document(replace(draft, issuer_id=context.node_id,
                                         attachments=attachments or draft.attachments,
                                         created_at=draft.created_at or now_ms()))
    validate_attachment_limit(document, max_attachment_bytes)
    recipient_keys = {recipient: _recipient_key(context, recipient)
                      for recipient in document.main_recipients + document.cc_recipients}
    content = encode_content(document, data)
    now = now_ms()
    queued = []
    async with transaction(context.db):
        await context.documents.add_document(document_row(document, "sent", now))
        await context.documents.add_attachments(data)
        for recipient, box_key in recipient_keys.items():
            sealed = sealing.seal(content, box_key)
            message_id, _ = await context.queue_frame(DocumentBody(sealed), recipient)
            copy = "main" if recipient in document.main_recipients else "cc"
            await context.documents.add_delivery(DeliveryRow(message_id, document.doc_id,
                                                             recipient, copy, "sent", 0, now))
            queued.append((recipient, message_id))
    for recipient, _ in queued:
        context.wake(context.next_hop(recipient))
    return SentDocument(document, tuple(queued))


def _recipient_key(context: NodeContext, recipient: str) -> bytes:
    if recipient == context.node_id:
        raise InvalidDocument("主送/抄送 recipients: a node does not send documents to itself")
    try:
        return context.directory.valid_certificate(recipient, now_ms()).keys.box_key
    except ProtocolError as refusal:
        raise InvalidDocument(f"收文机关 recipient {recipient} is not a valid member of the "
                              f"federation ({refusal.code})") from None


def document_row(document: Document, direction: str, now: int) -> DocumentRow:
    return DocumentRow(doc_id=document.doc_id, direction=direction, origin=document.issuer_id,
                       title=document.title, doc_number=document.doc_number, kind=document.kind,
                       urgency=document.urgency, issuer=document.issuer,
                       created_at=document.created_at, deadline=document.deadline,
                       in_reply_to=document.in_reply_to, stored_at=now,
                       content=encode_metadata(document))
