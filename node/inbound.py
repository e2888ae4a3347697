"""Receiving a transfer: verify every frame, dedupe, persist, and only then acknowledge.

Theory of operation. ``POST /v1/transfer`` carries a batch of frames from a
neighbour (or, with direct delivery, from any member). For each frame, before
anything is stored:

1. parse within limits; this node must be on the frame's route through the tree
   (its destination, or a relay between origin and destination), else
   ``not_addressed_here``;
2. the origin must be a member with a valid chain, and the signature must verify
   over the exact bytes received;
3. the frame must be younger than the replay window and not from the future.

Frames that pass are handled in **one transaction** for the whole batch: a frame id
seen before is acknowledged again without storing anything (exactly-once in effect);
a frame for this node is opened and delivered (a document: decrypted, stored, its
``delivered`` receipt queued; a receipt: applied to the sent document); any other
frame goes to the outbox for its next hop. Each frame that can still be refused at
that point (a document that does not open, a receipt the workflow forbids) is
refused before its first write. The acknowledgement lists the accepted ids and the
refused ones with their codes; it is sent only after the commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from protocol import frames, ids, sealing
from protocol.documents import decode_content
from protocol.errors import Malformed, NotAddressedHere, ProtocolError
from protocol.frames import Frame
from protocol.messages import DocumentBody, ReceiptBody
from protocol.workflow import Action, Role

from node.clock import now_ms
from node.context import NodeContext
from node.receipts import accept_receipt, take_step
from node.sending import document_row
from node.store.db import transaction

log = logging.getLogger("govnode.inbound")

REPLAY_WINDOW_MS = 30 * 24 * 3600 * 1000  # store-and-forward can take days; dedupe covers it
MAX_CLOCK_SKEW_MS = 2 * 60 * 1000


@dataclass
class TransferResult:
    accepted: list[bytes] = field(default_factory=list)
    rejected: list[tuple[bytes, str, str]] = field(default_factory=list)
    delivered_here: int = 0
    forwarded: set[str] = field(default_factory=set)  # next hops that got new frames


class Inbound:
    def __init__(self, context: NodeContext) -> None:
        self.context = context

    def check(self, data: bytes, now: int) -> Frame:
        """Steps 1-3 above; raises the refusal."""
        context = self.context
        signed = frames.parse_frame(data)
        frame = signed.frame
        if frame.destination != context.node_id and \
                context.node_id not in ids.route(frame.origin, frame.destination):
            raise NotAddressedHere(f"{context.node_id} is not on the route from {frame.origin} "
                                   f"to {frame.destination}")
        if frame.origin == context.node_id:
            raise NotAddressedHere("a frame this node sent came back to it")
        certificate = context.directory.valid_certificate(frame.origin, now)
        signed.verify(certificate.keys.verify_key)
        frames.check_age(frame, now_ms=now, max_age_ms=REPLAY_WINDOW_MS,
                         max_future_ms=MAX_CLOCK_SKEW_MS)
        return frame

    async def receive(self, batch: list[bytes]) -> TransferResult:
        result, now = TransferResult(), now_ms()
        checked: list[tuple[Frame, bytes]] = []
        for data in batch:
            try:
                checked.append((self.check(data, now), data))
            except ProtocolError as refusal:
                result.rejected.append((_message_id_of(data), refusal.code, refusal.detail))
        if not checked:
            return result
        context = self.context
        async with transaction(context.db):
            seen = await context.outbox.seen_among([frame.message_id for frame, _ in checked])
            fresh: list[bytes] = []
            for frame, data in checked:
                if frame.message_id in seen:
                    result.accepted.append(frame.message_id)
                    continue
                try:
                    await self._handle(frame, data, now, result)
                except ProtocolError as refusal:
                    result.rejected.append((frame.message_id, refusal.code, refusal.detail))
                    continue
                seen.add(frame.message_id)
                fresh.append(frame.message_id)
                result.accepted.append(frame.message_id)
            await context.outbox.mark_seen(fresh, now)
        for hop in result.forwarded:
            context.wake(hop)
        return result

    async def _handle(self, frame: Frame, data: bytes, now: int, result: TransferResult) -> None:
        context = self.context
        if frame.destination != context.node_id:
            hop = context.next_hop(frame.destination)
            await context.outbox.add(frame.message_id, hop, frame.destination, data, now)
            result.forwarded.add(hop)
            return
        if isinstance(frame.body, DocumentBody):
            await self._deliver_document(frame, data, now)
            result.forwarded.add(context.next_hop(frame.origin))  # the delivered receipt
        elif isinstance(frame.body, ReceiptBody):
            await accept_receipt(context, frame)
        else:
            raise Malformed(f"{frame.type} frames are not delivered by transfer")
        result.delivered_here += 1

    async def _deliver_document(self, frame: Frame, data: bytes, now: int) -> None:
        context = self.context
        content = sealing.open_sealed(frame.body.sealed, context.keys.public.box_key,
                                      context.keys.box_secret)
        document, attachment_data = decode_content(content)
        if document.issuer_id != frame.origin:
            raise Malformed(f"document issued by {document.issuer_id} but sent by {frame.origin}")
        if context.node_id not in document.main_recipients + document.cc_recipients:
            raise NotAddressedHere(f"{context.node_id} is not among the document's recipients")
        if not await context.documents.add_document(document_row(document, "received", now)):
            return  # the same document again under another frame id: nothing new
        await context.documents.add_attachments(attachment_data)
        await context.documents.add_inbound(frame.message_id, document.doc_id, frame.origin,
                                            data, now)
        inbound = await context.documents.inbound_by_doc(document.doc_id)
        await take_step(context, inbound, Action.DELIVER, actor=context.node_id, role=Role.SYSTEM)


def _message_id_of(data: bytes) -> bytes:
    """Best effort, for naming a refused frame in the acknowledgement."""
    try:
        return frames.parse_frame(data).frame.message_id
    except ProtocolError:
        return b""

