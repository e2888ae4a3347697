"""Receiving a transfer: verify every frame, dedupe, persist, and only then acknowledge.

Theory of operation. ``POST /v1/transfer`` carries a batch of frames from a
neighbour (or, with direct delivery, from any member). For each frame, before
anything is stored:

1. parse within limits; this node must be on the frame's route through the tree
   (its destination, or a relay between origin and destination), else
   ``not_addressed_here``;
2. the origin must be a member with a valid chain, and the signature must verify
   over the exact bytes received;
3. the frame must be younger than the replay window and not from the future, and be
   a document or receipts (``receipt`` or ``receipts``; nothing else travels by
   transfer, not even to a relay).

Frames that pass are handled in **one transaction** for the whole batch: a frame id
seen before is acknowledged again without storing anything (exactly-once in effect);
a frame for this node is opened and delivered (a document: decrypted, stored, its
``delivered`` receipt queued, one signed frame per origin for the whole batch;
receipts: applied to the sent documents); any other
frame goes to the outbox for its next hop. Each frame that can still be refused at
that point (a document that does not open, a receipt the workflow forbids) is
refused before its first write (as is a document whose attachments exceed this
node's ``max_attachment_bytes``). The acknowledgement lists the accepted ids and the
refused ones with their codes; it is sent only after the commit.

Cost. Verifying and decrypting happen before the write lock is taken, and for a batch
of more than a few frames where the node does its bulk crypto (``node.crypto_work``: a
worker thread, or the loop in slices), with the origins' keys looked up beforehand on
the event loop, which owns the directory. Inside the transaction the batch makes a
fixed number of statements whatever its size (the reads it needs up front, then one
``executemany`` per table), because preparing and running a statement from Python
costs more than the rows it writes; each frame's
checks and state changes run in memory in arrival order (``_Writes``,
``receipts.SentLedger``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

from protocol import frames, ids
from protocol.documents import Document, decode_content_to_keep, validate_attachment_limit
from protocol.errors import (BadSignature, Malformed, NotAddressedHere, ProtocolError,
                             UnknownOrigin, UnknownType)
from protocol.frames import Frame
from protocol.messages import (MAX_RECEIPTS_PER_FRAME, MESSAGE_ID_BYTES, DocumentBody,
                               ReceiptBody, ReceiptsBody)
from protocol.signing import decode_envelope
from protocol.wire import unpack
from protocol.workflow import Action, Role, State

from node.clock import now_ms
from node.context import NodeContext
from node.crypto_work import frame_weight, map_crypto
from node.receipts import SentLedger, plan_step
from node.sending import document_row
from node.store.db import transaction
from node.store.document_store import DocumentRow, InboundRow, ReceiptRow

log = logging.getLogger("govnode.inbound")

REPLAY_WINDOW_MS = 30 * 24 * 3600 * 1000  # store-and-forward can take days; dedupe covers it
MAX_CLOCK_SKEW_MS = 2 * 60 * 1000
NEWER_KEY_GRACE_MS = 5 * 60 * 1000  # how long a frame failing its signature is deferred


@dataclass
class TransferResult:
    accepted: list[bytes] = field(default_factory=list)
    rejected: list[tuple[bytes, str, str]] = field(default_factory=list)
    deferred: list[tuple[bytes, str, str]] = field(default_factory=list)  # keep and retry
    delivered_here: int = 0  # documents and receipts (items, not frames) for this node
    forwarded: set[str] = field(default_factory=set)  # next hops that got new frames


class NotYetVerifiable(Exception):
    """The origin cannot be verified *yet*: the sender should keep the frame."""

    def __init__(self, refusal: ProtocolError) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


class Inbound:
    def __init__(self, context: NodeContext) -> None:
        self.context = context

    def _locate(self, data: bytes) -> frames.SignedFrame:
        """Step 1: parse within limits; this node must be on the frame's route."""
        node_id = self.context.node_id
        signed = frames.parse_frame(data)
        frame = signed.frame
        if frame.destination != node_id and node_id not in ids.route(frame.origin,
                                                                      frame.destination):
            raise NotAddressedHere(f"{node_id} is not on the route from {frame.origin} "
                                   f"to {frame.destination}")
        if frame.origin == node_id:
            raise NotAddressedHere("a frame this node sent came back to it")
        return signed

    def _origin_keys(self, origin: str, now: int) -> "_OriginKeys | Exception":
        """The keys a frame from ``origin`` may verify with, or the refusal of every frame
        from it. Looked up on the event loop (the directory is the loop's), so that
        verifying may run in a thread."""
        directory = self.context.directory
        try:
            certificate = directory.valid_certificate(origin, now)
        except (UnknownOrigin, BadSignature) as refusal:
            # A certificate not here yet, or a chain whose issuer re-keyed before its
            # re-issued certificates arrived: gossip will catch up, so ask the sender
            # to keep the frame and try again rather than drop it.
            return NotYetVerifiable(refusal)
        except ProtocolError as refusal:  # revoked, expired: refused for good
            return refusal
        previous = directory.previous_certificate(origin, now)
        return _OriginKeys(certificate.keys.verify_key,
                           None if previous is None else previous.keys.verify_key)

    async def receive(self, batch: list[bytes]) -> TransferResult:
        result, now, context = TransferResult(), now_ms(), self.context
        located: list[tuple[frames.SignedFrame, bytes]] = []
        keys: dict[str, _OriginKeys | Exception] = {}
        for data in batch:
            try:
                signed = self._locate(data)
            except ProtocolError as refusal:
                _refuse(result, _message_id_of(data), refusal)
                continue
            if signed.origin not in keys:
                keys[signed.origin] = self._origin_keys(signed.origin, now)
            located.append((signed, data))
        # Verifying and opening are the costly part: for a big batch they run where the
        # node does its bulk crypto (``node.crypto_work``), the loop meanwhile free to
        # serve the next transfer and this node's own deliveries.
        checked: list[tuple[Frame, bytes, _Opened | ProtocolError | None]] = []
        for outcome in await map_crypto(partial(self._verify_and_open, keys=keys, now=now),
                                        located,
                                        in_threads=context.config.delivery["crypto_threads"],
                                        weight=lambda item: frame_weight(len(item[1]))):
            if isinstance(outcome, _Refused):
                _refuse(result, outcome.message_id, outcome.refusal)
            else:
                checked.append(outcome)
        if not checked:
            return result
        here = [frame for frame, _, _ in checked if frame.destination == context.node_id]
        # A document that did not open is refused only after the dedupe below: a frame
        # accepted before is acknowledged again.
        async with transaction(context.db):
            seen = await context.outbox.seen_among([frame.message_id for frame, _, _ in checked])
            writes = _Writes(existing_documents=await context.documents.existing_documents(
                [item[0].doc_id for _, _, item in checked if isinstance(item, tuple)]))
            ledger = SentLedger(context)
            receipts_for = [receipt.document_id for frame in here
                            for receipt in _receipts_in(frame.body)]
            if receipts_for:
                await ledger.load(receipts_for)
            fresh: list[bytes] = []
            for frame, data, opened in checked:
                if frame.message_id in seen:
                    result.accepted.append(frame.message_id)
                    continue
                try:
                    self._handle(frame, data, now, result, writes, ledger, opened)
                except ProtocolError as refusal:
                    result.rejected.append((frame.message_id, refusal.code, refusal.detail))
                    continue
                seen.add(frame.message_id)
                fresh.append(frame.message_id)
                result.accepted.append(frame.message_id)
            writes.sign_delivered_receipts(context, now)
            await writes.save(context)
            await ledger.save()
            await context.outbox.mark_seen(fresh, now)
        for hop in result.forwarded:
            context.wake(hop)
        return result

    def _handle(self, frame: Frame, data: bytes, now: int, result: TransferResult,
                writes: "_Writes", ledger: SentLedger,
                opened: "_Opened | ProtocolError | None") -> None:
        """Check one fresh frame and add what it stores to ``writes`` / ``ledger``, or
        raise its refusal having added nothing."""
        context = self.context
        if frame.destination != context.node_id:
            hop = context.next_hop(frame.destination)
            writes.outbox.append((frame.message_id, hop, frame.destination, data, now))
            result.forwarded.add(hop)
            return
        if isinstance(frame.body, DocumentBody):
            self._deliver_document(frame, data, now, opened, writes)
            result.forwarded.add(context.next_hop(frame.origin))  # the delivered receipt
            result.delivered_here += 1
        elif isinstance(frame.body, (ReceiptBody, ReceiptsBody)):
            ledger.accept(frame)
            result.delivered_here += len(_receipts_in(frame.body))
        else:
            raise Malformed(f"{frame.type} frames are not delivered by transfer")

    def _verify_and_open(self, item: tuple[frames.SignedFrame, bytes], *,
                         keys: dict[str, "_OriginKeys | Exception"], now: int
                         ) -> "tuple[Frame, bytes, _Opened | ProtocolError | None] | _Refused":
        """Steps 2 and 3 for one located frame, and a document for this node opened: the
        frame that passed with its bytes and, a document for this node, what ``_open``
        made of it; or its refusal. Each frame carries its own result, whatever ids other
        frames of the batch claim. Safe in a worker thread: it reads only ``keys`` and
        the node's keys and id."""
        signed, data = item
        frame = signed.frame
        try:
            _verify(signed, keys[signed.origin], now)
        except (ProtocolError, NotYetVerifiable) as refusal:
            return _Refused(frame.message_id, refusal)
        opened = None
        if frame.destination == self.context.node_id and isinstance(frame.body, DocumentBody):
            opened = self._open(frame)
        return frame, data, opened

    def _open(self, frame: Frame) -> "_Opened | ProtocolError":
        """Decrypt and check a document frame for this node: the document, or the refusal.
        Safe in a worker thread: it reads only the node's keys, id and configuration."""
        context = self.context
        try:
            content = context.open_sealed(frame.body.sealed)
            document, attachment_data, kept = decode_content_to_keep(content)
            if document.issuer_id != frame.origin:
                raise Malformed(f"document issued by {document.issuer_id} but sent by "
                                f"{frame.origin}")
            if context.node_id not in document.main_recipients + document.cc_recipients:
                raise NotAddressedHere(f"{context.node_id} is not among the document's "
                                       f"recipients")
            validate_attachment_limit(document, context.config.delivery["max_attachment_bytes"])
        except ProtocolError as refusal:
            return refusal
        return document, attachment_data, kept

    def _deliver_document(self, frame: Frame, data: bytes, now: int,
                          opened: "_Opened | ProtocolError | None", writes: "_Writes") -> None:
        """Store the document and plan its ``delivered`` receipt (one per document; the
        batch's receipts to one origin travel together, see ``_Writes``)."""
        if isinstance(opened, ProtocolError):
            raise opened
        context = self.context
        document, attachment_data, kept = opened
        if document.doc_id in writes.existing_documents:
            return  # the same document again under another frame id: nothing new
        writes.existing_documents.add(document.doc_id)
        arrived = InboundRow(frame.message_id, document.doc_id, frame.origin, State.SENT.value,
                             0, now)
        state, step, receipt = plan_step(arrived, Action.DELIVER, actor=context.node_id,
                                         role=Role.SYSTEM, detail="", now=now)
        writes.documents.append(document_row(document, "received", now, kept))
        writes.attachments.update(attachment_data)
        writes.inbound.append((InboundRow(frame.message_id, document.doc_id, frame.origin,
                                          state.value, step.seq, now), data))
        writes.receipts.append(step)
        writes.delivered_receipts.setdefault(frame.origin, []).append(receipt)


_Opened = tuple[Document, dict[bytes, bytes], bytes]  # document, attachment data, kept bytes


@dataclass(frozen=True)
class _Refused:
    message_id: bytes
    refusal: Exception  # a ProtocolError, or NotYetVerifiable


@dataclass
class _Writes:
    """What one transfer batch stores, written table by table (one ``executemany``
    each) after every frame has been checked, inside the batch's transaction.

    The ``delivered`` receipts of the batch's documents are signed last, one frame per
    origin (``receipts``, or a plain ``receipt`` for a single document): a batch of
    200 documents from one sender costs one signature here and one check there."""

    existing_documents: set[bytes]  # doc ids held already, or added by this batch
    documents: list[DocumentRow] = field(default_factory=list)
    attachments: dict[bytes, bytes] = field(default_factory=dict)
    inbound: list[tuple[InboundRow, bytes]] = field(default_factory=list)
    receipts: list[ReceiptRow] = field(default_factory=list)
    outbox: list[tuple[bytes, str, str, bytes, int]] = field(default_factory=list)
    delivered_receipts: dict[str, list[ReceiptBody]] = field(default_factory=dict)

    def sign_delivered_receipts(self, context: NodeContext, now: int) -> None:
        for origin, receipts in self.delivered_receipts.items():
            hop = context.next_hop(origin)
            for start in range(0, len(receipts), MAX_RECEIPTS_PER_FRAME):
                chunk = receipts[start:start + MAX_RECEIPTS_PER_FRAME]
                body = chunk[0] if len(chunk) == 1 else ReceiptsBody(tuple(chunk))
                receipt_id, receipt_frame = context.sign_frame(body, origin)
                self.outbox.append((receipt_id, hop, origin, receipt_frame, now))
        self.delivered_receipts = {}

    async def save(self, context: NodeContext) -> None:
        await context.documents.add_documents(self.documents)  # before what refers to them
        await context.documents.add_attachments(self.attachments)
        await context.documents.add_inbounds(self.inbound)
        await context.documents.add_receipts(self.receipts)
        await context.outbox.add_many(self.outbox)


_TRANSFERRED = (DocumentBody, ReceiptBody, ReceiptsBody)  # what /v1/transfer carries


@dataclass(frozen=True)
class _OriginKeys:
    current: bytes  # the verify key of the origin's valid certificate
    previous: bytes | None  # the one before its last re-key, while that one is still good


def _verify(signed: frames.SignedFrame, keys: "_OriginKeys | Exception", now: int) -> None:
    """Steps 2 and 3 for one frame, with its origin's keys; raises the refusal."""
    if isinstance(keys, Exception):  # the origin's refusal, shared by its frames
        raise keys.with_traceback(None)
    try:
        signed.verify(keys.current)
    except BadSignature as failure:
        if keys.previous is None or not _verifies(signed, keys.previous):
            if now - signed.frame.created_at < NEWER_KEY_GRACE_MS:
                # Perhaps signed with a key newer than the certificate we hold: the
                # origin re-keyed and its new certificate is still on its way. A recent
                # frame is kept back at the sender; an old one is refused for good.
                raise NotYetVerifiable(failure) from None
            raise
    frame = signed.frame
    frames.check_age(frame, now_ms=now, max_age_ms=REPLAY_WINDOW_MS,
                     max_future_ms=MAX_CLOCK_SKEW_MS)
    if not isinstance(frame.body, _TRANSFERRED):  # not even to relay
        raise Malformed(f"{frame.type} frames are not delivered by transfer")


def _verifies(signed: frames.SignedFrame, verify_key: bytes) -> bool:
    try:
        signed.verify(verify_key)  # e.g. signed before the origin re-keyed
    except BadSignature:
        return False
    return True


def _refuse(result: TransferResult, message_id: bytes, refusal: Exception) -> None:
    """Record a refused frame in ``result``: deferred (the sender keeps it) if it may pass
    later, rejected for good otherwise."""
    if isinstance(refusal, NotYetVerifiable):
        result.deferred.append((message_id, refusal.refusal.code, refusal.refusal.detail))
    elif isinstance(refusal, UnknownType):
        # Perhaps a type a newer version added (as it added ``receipts``): the sender
        # keeps it until this node is upgraded instead of losing it.
        result.deferred.append((message_id, refusal.code, refusal.detail))
    else:
        result.rejected.append((message_id, refusal.code, refusal.detail))


def _receipts_in(body: object) -> tuple[ReceiptBody, ...]:
    if isinstance(body, ReceiptsBody):
        return body.items
    return (body,) if isinstance(body, ReceiptBody) else ()


def _message_id_of(data: bytes) -> bytes:
    """Best effort, for naming a refused frame in the acknowledgement: its id even when
    the frame cannot be parsed as a whole (an unknown type, say), so that the sender
    can tell which of its frames the answer is about."""
    try:
        return frames.parse_frame(data).frame.message_id
    except ProtocolError:
        pass
    try:
        payload, _ = decode_envelope(data)
        value = unpack(payload, what="frame payload")
    except ProtocolError:
        return b""
    message_id = value.get("id") if type(value) is dict else None
    return message_id if type(message_id) is bytes and len(message_id) == MESSAGE_ID_BYTES \
        else b""
