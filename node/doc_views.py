"""What people see of documents: lists and a document with its timeline (CLI and API)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from node.context import NodeContext
from node.store.document_store import DocumentRow, decode_metadata


async def list_documents(context: NodeContext, box: str | None = None,
                         limit: int = 200) -> list[dict[str, Any]]:
    direction = {"inbox": "received", "outbox": "sent"}.get(box or "", None)
    rows = await context.documents.documents(direction, limit)
    return [await _summary(context, row) for row in rows]


async def _summary(context: NodeContext, row: DocumentRow) -> dict[str, Any]:
    summary = {"id": row.doc_id.hex(), "direction": row.direction, "title": row.title,
               "doc_number": row.doc_number, "kind": row.kind, "urgency": row.urgency,
               "origin": row.origin, "issuer": row.issuer, "created_at": row.created_at,
               "deadline": row.deadline, "stored_at": row.stored_at}
    if row.direction == "received":
        inbound = await context.documents.inbound_by_doc(row.doc_id)
        summary["state"] = inbound.state if inbound else "unknown"
    else:
        states = Counter(d.state for d in await context.documents.deliveries_of(row.doc_id))
        summary["state"] = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        summary["recipient_states"] = dict(states)
    return summary


async def show_document(context: NodeContext, doc_id: bytes) -> dict[str, Any] | None:
    row = await context.documents.document(doc_id)
    if row is None:
        return None
    document = decode_metadata(row.content)
    view = await _summary(context, row)
    view.update({
        "classification": document.classification, "secrecy_period": document.secrecy_period,
        "copy_number": document.copy_number, "signer": document.signer,
        "main_recipients": list(document.main_recipients),
        "cc_recipients": list(document.cc_recipients), "body": document.body,
        "notes": document.notes, "written_date": document.written_date,
        "printed_by": document.printed_by, "printed_date": document.printed_date,
        "in_reply_to": document.in_reply_to.hex() if document.in_reply_to else None,
        "attachments": [{"name": a.name, "media_type": a.media_type, "sha256": a.sha256.hex(),
                         "size": a.size} for a in document.attachments],
    })
    if row.direction == "sent":
        view["recipients"] = [
            {"recipient": d.recipient, "copy": d.copy, "state": d.state,
             "message_id": d.message_id.hex(),
             "timeline": await _timeline(context, d.message_id)}
            for d in await context.documents.deliveries_of(doc_id)]
    else:
        inbound = await context.documents.inbound_by_doc(doc_id)
        view["timeline"] = await _timeline(context, inbound.message_id) if inbound else []
    return view


async def _timeline(context: NodeContext, message_id: bytes) -> list[dict[str, Any]]:
    return [{"seq": r.seq, "step": r.step, "actor": r.actor, "at": r.at, "detail": r.detail}
            for r in await context.documents.receipts_of(message_id) if r.applied]
