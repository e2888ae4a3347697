"""Workflow actions on a received document: sign for, assign, instruct, complete, return.

Each action is checked against the transition table for the actor's role, recorded as
the next step, and reported to the sender by a signed receipt, in one transaction.
"""

from __future__ import annotations

from protocol.errors import IllegalTransition, Malformed
from protocol.messages import MAX_TEXT
from protocol.workflow import Action, Role, State

from node.context import NodeContext
from node.receipts import take_step
from node.store.db import transaction

# Who acts when the command line does not say (the CLI operator is trusted locally).
DEFAULT_ROLE = {Action.SIGN_FOR: Role.CLERK, Action.ASSIGN: Role.CLERK,
                Action.INSTRUCT: Role.LEADER, Action.COMPLETE: Role.HANDLER,
                Action.RETURN: Role.CLERK}


class DocumentNotFound(LookupError):
    """No received document matches the id (or the prefix is ambiguous)."""


async def resolve_document_id(context: NodeContext, text: str) -> bytes:
    """A full document id in hex, or an unambiguous prefix of at least 4 hex digits."""
    cleaned = text.strip().lower()
    if len(cleaned) < 4 or any(c not in "0123456789abcdef" for c in cleaned):
        raise DocumentNotFound(f"not a document id (hex, at least 4 digits): {text!r}")
    prefix = bytes.fromhex(cleaned[: len(cleaned) // 2 * 2])
    matches = [row for row in await context.documents.find_documents(prefix)
               if row.doc_id.hex().startswith(cleaned)]
    if not matches:
        raise DocumentNotFound(f"no document with id {text}")
    if len(matches) > 1:
        raise DocumentNotFound(f"{text} is ambiguous; give more digits")
    return matches[0].doc_id


async def act(context: NodeContext, doc_id: bytes, action: Action, *, actor: str,
              role: Role | None = None, detail: str = "") -> State:
    if not actor.strip():
        raise IllegalTransition("the person acting must be named (--by)")
    if len(actor.strip()) > MAX_TEXT or len(detail) > MAX_TEXT:  # the receipt would be refused
        raise Malformed(f"the person acting and the text are limited to {MAX_TEXT} characters each")
    async with transaction(context.db):
        inbound = await context.documents.inbound_by_doc(doc_id)
        if inbound is None:
            raise DocumentNotFound(f"{doc_id.hex()} is not a document this node received")
        state = await take_step(context, inbound, action, actor=actor.strip(),
                                role=role or DEFAULT_ROLE[action], detail=detail)
    context.wake(context.next_hop(inbound.origin))
    return state
