"""End-to-end receipts: taking a workflow step at the recipient, accepting it at the sender.

Theory of operation. Both sides number the steps of one document at one recipient
from 1 (``seq``) and check them against the one transition table
(``protocol.workflow``):

- **Recipient** (``take_step``): the action must be allowed from the document's
  current state for the actor's role; the step is recorded, the state advances and a
  signed receipt frame to the origin is queued, in the caller's transaction.
- **Sender** (``accept_receipt``): a receipt must come from the recipient of that
  delivery. The next expected step is applied only if the table allows it (else
  ``illegal_transition``, nothing stored); a step that arrives ahead of a missing one
  is kept unapplied and applied when the gap is filled, since frames on different
  retries may overtake each other. A step already applied is a harmless duplicate.

Every check that can refuse runs before the first write, so a refusal stores nothing.
"""

from __future__ import annotations

import logging

from protocol import workflow
from protocol.errors import IllegalTransition, NotPermitted, ProtocolError
from protocol.frames import Frame
from protocol.messages import ReceiptBody
from protocol.workflow import Action, Role, State

from node.clock import now_ms
from node.context import NodeContext
from node.store.document_store import InboundRow, ReceiptRow

log = logging.getLogger("govnode.receipts")


async def take_step(context: NodeContext, inbound: InboundRow, action: Action, *, actor: str,
                    role: Role | None, detail: str = "") -> State:
    """Apply ``action`` at the recipient and queue its receipt (inside a transaction)."""
    reason = detail if action is Action.RETURN else None
    new_state = workflow.apply(State(inbound.state), action, role, reason)
    seq, now = inbound.last_seq + 1, now_ms()
    step = workflow.RECEIPT_STEP[action]
    await context.documents.add_receipt(ReceiptRow(inbound.message_id, seq, step, actor, now,
                                                   detail, True))
    await context.documents.set_inbound_state(inbound.message_id, new_state.value, seq, now)
    await context.queue_frame(ReceiptBody(document_id=inbound.message_id, seq=seq, step=step,
                                          actor=actor, at=now, detail=detail), inbound.origin)
    return new_state


async def accept_receipt(context: NodeContext, frame: Frame) -> None:
    """Apply a receipt frame addressed to this node (inside a transaction)."""
    receipt: ReceiptBody = frame.body
    delivery = await context.documents.delivery(receipt.document_id)
    if delivery is None:
        raise IllegalTransition(f"receipt for document frame {receipt.document_id.hex()}, "
                                f"which this node did not send")
    if delivery.recipient != frame.origin:
        raise NotPermitted(f"receipt from {frame.origin} for the copy sent to {delivery.recipient}")
    action = workflow.action_for_receipt(receipt.step)
    if receipt.seq <= delivery.last_seq:
        return  # already applied: a duplicate on another path
    if receipt.seq > delivery.last_seq + 1:
        await context.documents.add_receipt(_row(receipt, applied=False))
        return
    state = workflow.apply(State(delivery.state), action)  # refuses before any write
    await context.documents.add_receipt(_row(receipt, applied=True))
    await _apply_waiting(context, receipt.document_id, state, receipt.seq)


async def _apply_waiting(context: NodeContext, message_id: bytes, state: State, seq: int) -> None:
    """Apply receipts that arrived early, in order, now that their predecessor is here."""
    waiting = {r.seq: r for r in await context.documents.receipts_of(message_id) if not r.applied}
    while seq + 1 in waiting:
        early = waiting[seq + 1]
        try:
            state = workflow.apply(state, workflow.action_for_receipt(early.step))
        except ProtocolError as refusal:
            log.warning("dropping receipt %d of %s: %s", early.seq, message_id.hex(), refusal.detail)
            await context.documents.drop_receipt(message_id, early.seq)
            break
        await context.documents.mark_receipt_applied(message_id, early.seq)
        seq += 1
    await context.documents.set_delivery_state(message_id, state.value, seq, now_ms())


def _row(receipt: ReceiptBody, *, applied: bool) -> ReceiptRow:
    return ReceiptRow(receipt.document_id, receipt.seq, receipt.step, receipt.actor, receipt.at,
                      receipt.detail, applied)
