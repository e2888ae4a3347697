"""Sending a document: validate, seal one frame per recipient, queue, all or nothing.

Each recipient (主送 and 抄送) gets its own frame whose body is the document content
sealed to that recipient's encryption key, so relays never see plaintext. The
document, one delivery row per recipient and the frames are committed in one
transaction; delivery takes over from the outbox. ``send_documents`` queues many
documents in one transaction (one commit, one wake-up), for senders that have many.
Sealing and signing happen before the transaction, so the write lock is held only
for the inserts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
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


@dataclass(frozen=True)
class _Prepared:
    """A validated document with its frames sealed and signed, ready to be stored."""

    document: Document
    attachment_data: dict[bytes, bytes]
    frames: tuple[tuple[str, bytes, bytes], ...]  # (recipient, message id, frame bytes)


async def send_document(context: NodeContext, draft: Document,
                        files: list[AttachmentFile] = (), *,
                        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> SentDocument:
    """Validate and queue ``draft`` (its issuer_id, doc_id and created_at are filled in)."""
    prepared = _prepare(context, draft, files, max_attachment_bytes)
    return (await _queue(context, [prepared]))[0]


async def send_documents(context: NodeContext, drafts: list[Document], *,
                         max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
                         ) -> list[SentDocument]:
    """Validate and queue many drafts (no attachment files) in ONE transaction.

    All or nothing: every draft is validated, sealed and signed before the first
    write, so one bad draft queues none of them.
    """
    prepared = [_prepare(context, draft, (), max_attachment_bytes) for draft in drafts]
    return await _queue(context, prepared)


def _prepare(context: NodeContext, draft: Document, files: list[AttachmentFile],
             max_attachment_bytes: int) -> _Prepared:
    """Validate, seal one frame per recipient and sign it; nothing is stored yet."""
    attachments, data = attach(list(files))
    document = validate_document(replace(draft, issuer_id=context.node_id,
                                         attachments=attachments or draft.attachments,
                                         created_at=draft.created_at or now_ms()))
    validate_attachment_limit(document, max_attachment_bytes)
    recipient_keys = {recipient: _recipient_key(context, recipient)
                      for recipient in document.main_recipients + document.cc_recipients}
    content = encode_content(document, data)
    frames = []
    for recipient, box_key in recipient_keys.items():
        message_id, frame = context.sign_frame(DocumentBody(sealing.seal(content, box_key)),
                                               recipient)
        frames.append((recipient, message_id, frame))
    return _Prepared(document, data, tuple(frames))


async def _queue(context: NodeContext, prepared: list[_Prepared]) -> list[SentDocument]:
    """Store the documents, their deliveries and their frames in one transaction (one
    ``executemany`` per table: a call to SQLite's thread costs more than its rows)."""
    now = now_ms()
    doc_ids = [item.document.doc_id for item in prepared]
    documents, attachments, deliveries, outbox = [], {}, [], []
    sent: list[SentDocument] = []
    for item in prepared:
        document = item.document
        documents.append(document_row(document, "sent", now))
        attachments.update(item.attachment_data)
        for recipient, message_id, frame in item.frames:
            outbox.append((message_id, context.next_hop(recipient), recipient, frame, now))
            copy = "main" if recipient in document.main_recipients else "cc"
            deliveries.append(DeliveryRow(message_id, document.doc_id, recipient, copy, "sent",
                                          0, now))
        sent.append(SentDocument(document, tuple((recipient, message_id)
                                                 for recipient, message_id, _ in item.frames)))
    async with transaction(context.db):
        used = await context.documents.existing_documents(doc_ids)
        repeated = used or {doc_id for doc_id, n in Counter(doc_ids).items() if n > 1}
        if repeated:
            raise InvalidDocument(f"公文标识 doc_id {min(repeated).hex()} is already used "
                                  f"by a document on this node")
        await context.documents.add_documents(documents)
        await context.documents.add_attachments(attachments)
        await context.outbox.add_many(outbox)
        await context.documents.add_deliveries(deliveries)
    for hop in {row[1] for row in outbox}:
        context.wake(hop)
    return sent


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
