"""Helpers for the tests that talk to ``POST /v1/transfer`` directly: observing a
node's tables from outside (read-only SQLite), posting transfers, and crafting frames
with real keys."""

from __future__ import annotations

import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp

from federation import Federation, wait_until
from node.app import Node
from node.clock import now_ms
from node.sending import send_document
from protocol import frames, sealing
from protocol.documents import CONTENT_LIMITS, Document, encode_content
from protocol.keys import NodeKeys
from protocol.messages import DocumentBody, ReceiptBody
from protocol.wire import pack, unpack

ROOT, CHAOZHOU, SHANTOU, RAOPING = "gd", "gd.chaozhou", "gd.shantou", "gd.chaozhou.raoping"
DOCUMENT_TABLES = ("documents", "attachments", "deliveries", "inbound", "receipts", "outbox",
                   "seen")
MSGPACK_HEADERS = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}


async def root_and_two_cities(path: Path) -> Federation:
    """gd with 潮州 and 汕头 enrolled under it, converged."""
    federation = Federation(path)
    await federation.create_root(ROOT)
    await federation.enroll(CHAOZHOU, "潮州市人民政府办公室")
    await federation.enroll(SHANTOU, "汕头市人民政府办公室")
    await federation.wait_converged()
    return federation


# --- observing a node from outside ----------------------------------------------------


def read_rows(node: Node, query: str) -> list[tuple]:
    connection = sqlite3.connect(f"file:{node.data.database_file}?mode=ro", uri=True)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def snapshot(node: Node) -> dict[str, list[tuple]]:
    """Every row of the tables that hold documents and their delivery, read-only."""
    return {table: read_rows(node, f"SELECT * FROM {table} ORDER BY 1, 2")
            for table in DOCUMENT_TABLES}


def counts(node: Node) -> dict[str, int]:
    return {table: len(rows) for table, rows in snapshot(node).items()}


async def quiet(federation: Federation) -> None:
    """Nothing in flight: every outbox is empty (a frame leaves its sender's outbox
    only after the next hop has committed it, so nothing can still land anywhere)."""
    await wait_until(lambda: all(not read_rows(node, "SELECT 1 FROM outbox LIMIT 1")
                                 for node in federation.nodes.values()),
                     what="every outbox to drain")


@asynccontextmanager
async def stores_nothing(federation: Federation, node: Node) -> AsyncIterator[None]:
    await quiet(federation)
    before = snapshot(node)
    yield
    assert snapshot(node) == before, f"refused input changed what {node.id} stores"


# --- talking to /v1/transfer -------------------------------------------------------------


async def post(http: aiohttp.ClientSession, node: Node, body: Any,
               headers: dict[str, str] = MSGPACK_HEADERS) -> tuple[int, dict]:
    async with http.post(node.urls[0] + "/v1/transfer", data=body, headers=headers) as response:
        return response.status, unpack(await response.read())


async def transfer(http: aiohttp.ClientSession, node: Node, batch: list[bytes],
                   sender: str = CHAOZHOU) -> dict:
    status, answer = await post(http, node, pack({"from": sender, "frames": batch}))
    assert status == 200, answer
    assert set(answer) == {"accepted", "rejected", "deferred"}, answer
    return answer


def assert_refused(answer: dict, message_id: bytes, code: str, *, kind: str = "rejected") -> str:
    """Exactly this frame refused (or, with kind="deferred", kept back) with ``code``;
    returns the detail."""
    assert answer["accepted"] == (), answer
    other = "deferred" if kind == "rejected" else "rejected"
    assert answer[other] == (), answer
    ((refused_id, refused_code, detail),) = answer[kind]
    assert (refused_id, refused_code) == (message_id, code), answer
    assert isinstance(detail, str) and detail.strip()
    return detail


def assert_body_refused(status: int, answer: dict, code: str) -> None:
    assert set(answer) == {"error", "detail"}, answer
    assert answer["error"] == code, answer
    assert status == (413 if code == "too_large" else 400), (status, answer)
    assert isinstance(answer["detail"], str) and answer["detail"].strip()


# --- crafting frames ------------------------------------------------------------------------


def frame(body, *, origin: str, destination: str, keys: NodeKeys,
          created_at: int | None = None) -> tuple[bytes, bytes]:
    """(message id, signed frame bytes)."""
    message_id = frames.new_message_id()
    made = frames.make_frame(body, origin=origin, destination=destination,
                             created_at=now_ms() if created_at is None else created_at,
                             message_id=message_id)
    return message_id, frames.encode_frame(made, keys)


def draft(issuer_id: str, to: list[str], **fields: Any) -> Document:
    values = dict(doc_id=frames.new_message_id(), title="关于开展汛前安全检查的通知", kind="通知",
                  issuer="测试发文机关", issuer_id=issuer_id, main_recipients=tuple(to),
                  doc_number="潮府办〔2026〕3号", body="请各单位于五月底前完成检查。",
                  created_at=now_ms())
    values.update(fields)
    return Document(**values)


def document_frame(sender: Node, recipient: Node, *, content: bytes | None = None,
                   box_key: bytes | None = None, created_at: int | None = None,
                   **fields: Any) -> tuple[bytes, bytes]:
    """A document frame from ``sender`` to ``recipient``, sealed to its key by default."""
    if content is None:
        content = encode_content(draft(sender.id, [recipient.id], **fields), {})
    sealed = sealing.seal(content, box_key or recipient.keys.public.box_key)
    return frame(DocumentBody(sealed), origin=sender.id, destination=recipient.id,
                 keys=sender.keys, created_at=created_at)


def receipt_frame(sender: Node, recipient: Node, document_id: bytes, seq: int, step: str,
                  detail: str = "") -> tuple[bytes, bytes]:
    body = ReceiptBody(document_id=document_id, seq=seq, step=step, actor="王科长",
                       at=now_ms(), detail=detail)
    return frame(body, origin=sender.id, destination=recipient.id, keys=sender.keys)


def edited_content(**changes: Any) -> bytes:
    """A valid content map, re-packed with ``changes`` (so it skips the sender's checks)."""
    content = unpack(encode_content(draft(ROOT, [CHAOZHOU]), {}), CONTENT_LIMITS)
    return pack({**content, **changes})


async def delivery_row(node: Node, message_id: bytes) -> tuple[str, int]:
    row = await node.context.documents.delivery(message_id)
    return row.state, row.last_seq


async def delivered_document(federation: Federation) -> bytes:
    """A real document sent by gd to gd.chaozhou, its ``delivered`` receipt back at gd;
    returns the message id of gd's delivery (what receipts name)."""
    root = federation.nodes[ROOT]
    sent = await send_document(root.context, draft(ROOT, [CHAOZHOU]))
    ((_, message_id),) = sent.deliveries

    async def delivered() -> bool:
        return await delivery_row(root, message_id) == ("delivered", 1)

    await wait_until(delivered, what="the delivered receipt back at gd")
    await quiet(federation)
    return message_id
