"""End-to-end receipts: taking a workflow step at the recipient, accepting it at the sender.

Theory of operation. Both sides number the steps of one document at one recipient
from 1 (``seq``) and check them against the one transition table
(``protocol.workflow``):

- **Recipient** (``take_step``; ``plan_step`` is its check without the writes): the
  action must be allowed from the document's current state for the actor's role; the
  step is recorded, the state advances and a signed receipt frame to the origin is
  queued, in the caller's transaction.
- **Sender** (``SentLedger``, for a whole transfer batch, with one read and one
  write per table; a ``receipts`` frame is applied item by item and only as a whole,
  see ``SentLedger.accept``): a receipt must come from the recipient of that
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
from protocol.messages import ReceiptBody, ReceiptsBody
from protocol.workflow import Action, Role, State

from node.clock import now_ms
from node.context import NodeContext
from node.store.document_store import DeliveryRow, InboundRow, ReceiptRow

log = logging.getLogger("govnode.receipts")


def plan_step(inbound: InboundRow, action: Action, *, actor: str, role: Role | None,
              detail: str, now: int) -> tuple[State, ReceiptRow, ReceiptBody]:
    """The recipient's next step, checked against the table; nothing is written.

    Returns the new state, the step as recorded here and the receipt for the origin.
    """
    reason = detail if action is Action.RETURN else None
    new_state = workflow.apply(State(inbound.state), action, role, reason)
    seq, step = inbound.last_seq + 1, workflow.RECEIPT_STEP[action]
    return (new_state, ReceiptRow(inbound.message_id, seq, step, actor, now, detail, True),
            ReceiptBody(document_id=inbound.message_id, seq=seq, step=step, actor=actor, at=now,
                        detail=detail))


async def take_step(context: NodeContext, inbound: InboundRow, action: Action, *, actor: str,
                    role: Role | None, detail: str = "") -> State:
    """Apply ``action`` at the recipient and queue its receipt (inside a transaction)."""
    now = now_ms()
    new_state, row, receipt = plan_step(inbound, action, actor=actor, role=role, detail=detail,
                                        now=now)
    await context.documents.add_receipt(row)
    await context.documents.set_inbound_state(inbound.message_id, new_state.value, row.seq, now)
    await context.queue_frame(receipt, inbound.origin)
    return new_state


class SentLedger:
    """The sender's side for a batch of receipt frames: read once, checked and applied in
    memory in arrival order, written once (inside the caller's transaction).

    ``load`` reads the deliveries the receipts are about and their waiting (early)
    receipts; ``accept`` applies one receipt frame or raises its refusal having
    changed nothing; ``save`` writes what the accepted ones changed.
    """

    def __init__(self, context: NodeContext) -> None:
        self.context = context
        self._deliveries: dict[bytes, DeliveryRow] = {}
        self._waiting: dict[bytes, dict[int, ReceiptRow]] = {}
        self._new: list[ReceiptRow] = []
        self._applied: list[tuple[bytes, int]] = []
        self._dropped: list[tuple[bytes, int]] = []
        self._changed: set[bytes] = set()

    async def load(self, message_ids: list[bytes]) -> None:
        documents = self.context.documents
        self._deliveries.update(await documents.deliveries_among(message_ids))
        self._waiting.update(await documents.waiting_receipts(message_ids))

    def accept(self, frame: Frame) -> None:
        """Apply a ``receipt`` or ``receipts`` frame, or raise the refusal of its first
        refused item having changed nothing: a batch applies whole or not at all."""
        if isinstance(frame.body, ReceiptBody):
            self._accept_one(frame.origin, frame.body)
            return
        body: ReceiptsBody = frame.body
        before = self._snapshot()
        try:
            for receipt in body.items:
                self._accept_one(frame.origin, receipt)
        except ProtocolError:
            self._restore(before)
            raise

    def _snapshot(self) -> tuple:
        return (dict(self._deliveries), {mid: dict(w) for mid, w in self._waiting.items()},
                len(self._new), len(self._applied), len(self._dropped), set(self._changed))

    def _restore(self, snapshot: tuple) -> None:
        self._deliveries, self._waiting, new, applied, dropped, self._changed = snapshot
        del self._new[new:], self._applied[applied:], self._dropped[dropped:]

    def _accept_one(self, origin: str, receipt: ReceiptBody) -> None:
        message_id = receipt.document_id
        delivery = self._deliveries.get(message_id)
        if delivery is None:
            raise IllegalTransition(f"receipt for document frame {message_id.hex()}, "
                                    f"which this node did not send")
        if delivery.recipient != origin:
            raise NotPermitted(f"receipt from {origin} for the copy sent to "
                               f"{delivery.recipient}")
        action = workflow.action_for_receipt(receipt.step)
        if receipt.seq <= delivery.last_seq:
            return  # already applied: a duplicate on another path
        waiting = self._waiting.setdefault(message_id, {})
        if receipt.seq > delivery.last_seq + 1:
            if receipt.seq not in waiting:  # kept until the gap is filled
                waiting[receipt.seq] = _row(receipt, applied=False)
                self._new.append(waiting[receipt.seq])
            return
        # The reason a return needs travels as the receipt's detail.
        state = workflow.apply(State(delivery.state), action, None, receipt.detail)  # refuses first
        if waiting.pop(receipt.seq, None) is None:
            self._new.append(_row(receipt, applied=True))
        else:  # the same step was kept unapplied earlier
            self._applied.append((message_id, receipt.seq))
        seq = receipt.seq
        while seq + 1 in waiting:  # receipts that arrived early, in order
            early = waiting.pop(seq + 1)
            try:
                state = workflow.apply(state, workflow.action_for_receipt(early.step), None,
                                       early.detail)
            except ProtocolError as refusal:
                log.warning("dropping receipt %d of %s: %s", early.seq, message_id.hex(),
                            refusal.detail)
                self._dropped.append((message_id, early.seq))
                break
            self._applied.append((message_id, early.seq))
            seq += 1
        self._deliveries[message_id] = DeliveryRow(
            message_id, delivery.doc_id, delivery.recipient, delivery.copy, state.value, seq,
            now_ms())
        self._changed.add(message_id)

    async def save(self) -> None:
        documents = self.context.documents
        await documents.add_receipts(self._new)  # before the updates and deletes below
        await documents.mark_receipts_applied(self._applied)
        await documents.drop_receipts(self._dropped)
        if self._changed:
            await documents.set_delivery_states(self._deliveries[mid] for mid in self._changed)
        self._new, self._applied, self._dropped, self._changed = [], [], [], set()


def _row(receipt: ReceiptBody, *, applied: bool) -> ReceiptRow:
    return ReceiptRow(receipt.document_id, receipt.seq, receipt.step, receipt.actor, receipt.at,
                      receipt.detail, applied)
