"""Sending a document: validate, seal one frame per recipient, queue, all or nothing.

Each recipient (主送 and 抄送) gets its own frame whose body is the document content
sealed to that recipient's encryption key, so relays never see plaintext. The
document, one delivery row per recipient and the frames are committed in one
transaction; delivery takes over from the outbox. ``send_documents`` queues many
documents in one transaction (one commit, one wake-up), for senders that have many.
Sealing and signing happen before the transaction, so the write lock is held only
for the inserts; for many frames at once they run where the node does its bulk crypto
(``node.crypto_work``: a worker thread, or the loop in slices), so that a big send does
not stall the node's transfers and gossip.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable, NamedTuple

from protocol import sealing
from protocol.document_model import document_from_fields
from protocol.documents import (Attachment, Document, encode_kept_content,
                                encode_valid_content, validate_attachment_limit,
                                validate_document)
from protocol.errors import InvalidDocument, ProtocolError
from protocol.messages import DocumentBody

from node.clock import now_ms
from node.context import NodeContext
from node.crypto_work import frame_weight, map_crypto
from node.store.db import transaction
from node.store.document_store import DeliveryRow, DocumentRow

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
    kept: bytes  # the document as this node keeps it (encode_kept_content)


async def send_document(context: NodeContext, draft: Document,
                        files: list[AttachmentFile] = (), *,
                        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES) -> SentDocument:
    """Validate and queue ``draft`` (its issuer_id, doc_id and created_at are filled in)."""
    return (await _send(context, [_addressed(context, draft, files, max_attachment_bytes)]))[0]


async def send_documents(context: NodeContext, drafts: list[Document], *,
                         max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
                         ) -> list[SentDocument]:
    """Validate and queue many drafts (no attachment files) in ONE transaction.

    All or nothing: every draft is validated, sealed and signed before the first
    write, so one bad draft queues none of them.
    """
    return await _send(context, [_addressed(context, draft, (), max_attachment_bytes)
                                 for draft in drafts])


async def _send(context: NodeContext, addressed: list["_Addressed"]) -> list[SentDocument]:
    contents = [encode_valid_content(item.document, item.attachment_data)
                for item in addressed]
    to_seal = [_ToSeal(content, recipient, box_key)
               for item, content in zip(addressed, contents)
               for recipient, box_key in item.box_keys.items()]
    # One frame at a time, so that a document to many units, or a big one, is sealed
    # in slices like many small ones when crypto runs on the loop.
    sealed = iter(await map_crypto(partial(_seal_and_sign, context.sign_frame), to_seal,
                                   in_threads=context.config.delivery["crypto_threads"],
                                   weight=lambda frame: frame_weight(len(frame.content))))
    prepared = []
    for item, content in zip(addressed, contents):
        frames = tuple(next(sealed) for _ in item.box_keys)
        document = item.document
        kept = encode_kept_content(document) if document.attachments else content
        prepared.append(_Prepared(document, item.attachment_data, frames, kept))
    return await _queue(context, prepared)


@dataclass(frozen=True)
class _Addressed:
    """A validated document and its recipients' encryption keys; nothing sealed yet."""

    document: Document
    attachment_data: dict[bytes, bytes]
    box_keys: dict[str, bytes]


def _addressed(context: NodeContext, draft: Document, files: list[AttachmentFile],
               max_attachment_bytes: int) -> _Addressed:
    """Validate the draft and look up its recipients (on the event loop: the directory
    is the loop's); nothing is stored."""
    attachments, data = attach(list(files))
    if attachments or draft.issuer_id != context.node_id or not draft.created_at:
        draft = _stamped(draft, issuer_id=context.node_id,
                         attachments=attachments or draft.attachments,
                         created_at=draft.created_at or now_ms())
    document = validate_document(draft)
    validate_attachment_limit(document, max_attachment_bytes)
    box_keys = {recipient: _recipient_key(context, recipient)
                for recipient in document.main_recipients + document.cc_recipients}
    return _Addressed(document, data, box_keys)


def _stamped(draft: Document, **fields: object) -> Document:
    """``dataclasses.replace(draft, **fields)``, made without the frozen ``__init__``
    for every document sent (``document_from_fields``)."""
    if type(draft) is not Document:
        return replace(draft, **fields)
    return document_from_fields({**draft.__dict__, **fields})


class _ToSeal(NamedTuple):
    """One recipient's frame of a document, before sealing (one per frame sent: a tuple
    costs a quarter of a frozen dataclass to make)."""

    content: bytes  # the document's content (encode_valid_content)
    recipient: str
    box_key: bytes


def _seal_and_sign(sign_frame: Callable[[DocumentBody, str], tuple[bytes, bytes]],
                   frame: _ToSeal) -> tuple[str, bytes, bytes]:
    """Seal the content to one recipient and sign the frame: (recipient, message id,
    frame bytes). Pure, so it may run off the loop."""
    message_id, data = sign_frame(DocumentBody(sealing.seal(frame.content, frame.box_key)),
                                  frame.recipient)
    return frame.recipient, message_id, data


async def _queue(context: NodeContext, prepared: list[_Prepared]) -> list[SentDocument]:
    """Store the documents, their deliveries and their frames in one transaction (one
    ``executemany`` per table: a statement costs more than its rows)."""
    now = now_ms()
    doc_ids = [item.document.doc_id for item in prepared]
    documents, attachments, deliveries, outbox = [], {}, [], []
    sent: list[SentDocument] = []
    for item in prepared:
        document = item.document
        documents.append(document_row(document, "sent", now, item.kept))
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


def document_row(document: Document, direction: str, now: int, kept: bytes) -> DocumentRow:
    """The row of a document; ``kept`` is how it is kept (``encode_kept_content``)."""
    return DocumentRow(doc_id=document.doc_id, direction=direction, origin=document.issuer_id,
                       title=document.title, doc_number=document.doc_number, kind=document.kind,
                       urgency=document.urgency, issuer=document.issuer,
                       created_at=document.created_at, deadline=document.deadline,
                       in_reply_to=document.in_reply_to, stored_at=now,
                       content=kept)
