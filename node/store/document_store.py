"""Documents, attachments, per-recipient deliveries, inbound documents and receipts.

Writes happen inside a caller's transaction (``db.transaction``). The plural methods
(``add_documents``, ``deliveries_among``, ...) do a whole transfer batch in one
statement (``executemany``, ``IN (...)``): a statement run from Python costs more
than the row, so the hot paths make a few per batch, not a few per document.

The row types are named tuples in their table's column order: a few of them are made
for every document that passes, and a tuple is both the cheapest immutable record
Python builds and the parameters ``executemany`` takes as they are.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

import msgpack

from protocol.documents import Attachment, Document, decode_kept_content

from node.store.connection import Database


class DocumentRow(NamedTuple):
    doc_id: bytes
    direction: str
    origin: str
    title: str
    doc_number: str
    kind: str
    urgency: str
    issuer: str
    created_at: int
    deadline: int | None
    in_reply_to: bytes | None
    stored_at: int
    content: bytes


class DeliveryRow(NamedTuple):
    message_id: bytes
    doc_id: bytes
    recipient: str
    copy: str
    state: str
    last_seq: int
    updated_at: int


class InboundRow(NamedTuple):
    message_id: bytes
    doc_id: bytes
    origin: str
    state: str
    last_seq: int
    updated_at: int


class ReceiptRow(NamedTuple):
    message_id: bytes
    seq: int
    step: str
    actor: str
    at: int
    detail: str
    applied: bool


_DOCUMENT_COLUMNS = ("doc_id, direction, origin, title, doc_number, kind, urgency, issuer, "
                     "created_at, deadline, in_reply_to, stored_at, content")
_INBOUND_COLUMNS = "message_id, doc_id, origin, state, last_seq, updated_at"
_IN_CHUNK = 500  # ids per ``IN (...)``: below SQLite's variable limit


class DocumentStore:
    def __init__(self, connection: Database) -> None:
        self._db = connection

    # --- writing (inside a transaction) ---------------------------------------

    async def add_documents(self, rows: list[DocumentRow]) -> None:
        """Insert documents known to be new (see ``existing_documents``)."""
        if rows:
            await self._db.executemany(
                f"INSERT INTO documents ({_DOCUMENT_COLUMNS}) VALUES "
                f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    async def add_attachments(self, data: dict[bytes, bytes]) -> None:
        if not data:
            return
        await self._db.executemany("INSERT OR IGNORE INTO attachments VALUES (?, ?, ?)",
                                   [(sha, len(blob), blob) for sha, blob in data.items()])

    async def add_deliveries(self, rows: list[DeliveryRow]) -> None:
        if rows:
            await self._db.executemany("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    async def add_inbounds(self, rows: list[tuple[InboundRow, bytes]]) -> None:
        """Insert inbound documents (row, frame as it arrived), state and seq as given."""
        if rows:
            await self._db.executemany(
                f"INSERT INTO inbound ({_INBOUND_COLUMNS}, frame) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(*row, frame) for row, frame in rows])

    async def add_receipt(self, row: ReceiptRow) -> None:
        await self._db.execute("INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?)",
                               row)  # applied: a bool, stored as 0 or 1

    async def add_receipts(self, rows: list[ReceiptRow]) -> None:
        if rows:
            await self._db.executemany(
                "INSERT OR IGNORE INTO receipts VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    async def mark_receipts_applied(self, keys: list[tuple[bytes, int]]) -> None:
        """``keys``: (message id, seq) of receipts now applied."""
        if keys:
            await self._db.executemany(
                "UPDATE receipts SET applied = 1 WHERE message_id = ? AND seq = ?", keys)

    async def drop_receipts(self, keys: list[tuple[bytes, int]]) -> None:
        if keys:
            await self._db.executemany("DELETE FROM receipts WHERE message_id = ? AND seq = ?",
                                       keys)

    async def set_delivery_states(self, rows: Iterable[DeliveryRow]) -> None:
        await self._db.executemany(
            "UPDATE deliveries SET state = ?, last_seq = ?, updated_at = ? WHERE message_id = ?",
            [(row.state, row.last_seq, row.updated_at, row.message_id) for row in rows])

    async def set_inbound_state(self, message_id: bytes, state: str, last_seq: int,
                                now_ms: int) -> None:
        await self._db.execute(
            "UPDATE inbound SET state = ?, last_seq = ?, updated_at = ? WHERE message_id = ?",
            (state, last_seq, now_ms, message_id))

    # --- reading ----------------------------------------------------------------

    async def document(self, doc_id: bytes) -> DocumentRow | None:
        async with self._db.execute(f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE doc_id = ?",
                                    (doc_id,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else DocumentRow(*row)

    async def find_documents(self, id_prefix: bytes) -> list[DocumentRow]:
        """Documents whose id starts with ``id_prefix`` (people type short prefixes)."""
        upper = _prefix_upper_bound(id_prefix)
        query = f"SELECT {_DOCUMENT_COLUMNS} FROM documents WHERE doc_id >= ?"
        params: tuple = (id_prefix,)
        if upper is not None:
            query, params = query + " AND doc_id < ?", (id_prefix, upper)
        async with self._db.execute(query + " LIMIT 2", params) as cursor:
            return [DocumentRow(*row) for row in await cursor.fetchall()]

    async def documents(self, direction: str | None = None, limit: int = 200) -> list[DocumentRow]:
        query = f"SELECT {_DOCUMENT_COLUMNS} FROM documents"
        params: tuple = ()
        if direction:
            query, params = query + " WHERE direction = ?", (direction,)
        async with self._db.execute(query + " ORDER BY stored_at DESC LIMIT ?",
                                    params + (limit,)) as cursor:
            return [DocumentRow(*row) for row in await cursor.fetchall()]

    async def attachment(self, sha256: bytes) -> bytes | None:
        async with self._db.execute("SELECT data FROM attachments WHERE sha256 = ?",
                                    (sha256,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else row[0]

    async def delivery(self, message_id: bytes) -> DeliveryRow | None:
        async with self._db.execute("SELECT * FROM deliveries WHERE message_id = ?",
                                    (message_id,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else DeliveryRow(*row)

    async def existing_documents(self, doc_ids: list[bytes]) -> set[bytes]:
        """Those of ``doc_ids`` this node already holds (sent or received)."""
        return {row[0] for row in await self._among("SELECT doc_id FROM documents", "doc_id",
                                                    doc_ids)}

    async def deliveries_among(self, message_ids: list[bytes]) -> dict[bytes, DeliveryRow]:
        rows = await self._among("SELECT * FROM deliveries", "message_id", message_ids)
        return {row[0]: DeliveryRow(*row) for row in rows}

    async def waiting_receipts(self, message_ids: list[bytes]) -> dict[bytes, dict[int, ReceiptRow]]:
        """Receipts kept unapplied (they arrived ahead of a missing one), by message and seq."""
        waiting: dict[bytes, dict[int, ReceiptRow]] = {}
        for row in await self._among("SELECT * FROM receipts", "message_id", message_ids,
                                     "applied = 0"):
            waiting.setdefault(row[0], {})[row[1]] = ReceiptRow(*row[:6], False)
        return waiting

    async def _among(self, select: str, column: str, keys: list[bytes],
                     condition: str = "") -> list[tuple]:
        found: list[tuple] = []
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start:start + _IN_CHUNK]
            where = f"{column} IN ({','.join('?' * len(chunk))})"
            found.extend(await self._db.execute_fetchall(
                f"{select} WHERE {where}{' AND ' + condition if condition else ''}", chunk))
        return found

    async def deliveries_of(self, doc_id: bytes) -> list[DeliveryRow]:
        async with self._db.execute("SELECT * FROM deliveries WHERE doc_id = ? ORDER BY copy DESC, "
                                    "recipient", (doc_id,)) as cursor:
            return [DeliveryRow(*row) for row in await cursor.fetchall()]

    async def inbound_by_doc(self, doc_id: bytes) -> InboundRow | None:
        async with self._db.execute(f"SELECT {_INBOUND_COLUMNS} FROM inbound WHERE doc_id = ?",
                                    (doc_id,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else InboundRow(*row)

    async def receipts_of(self, message_id: bytes) -> list[ReceiptRow]:
        async with self._db.execute(
                "SELECT * FROM receipts WHERE message_id = ? ORDER BY seq", (message_id,)) as cursor:
            return [ReceiptRow(*row[:6], bool(row[6])) for row in await cursor.fetchall()]

    async def counts(self) -> dict[str, int]:
        async with self._db.execute(
                "SELECT direction, COUNT(*) FROM documents GROUP BY direction") as cursor:
            return {direction: count for direction, count in await cursor.fetchall()}


def _prefix_upper_bound(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


# The older form was written as a map (header: 3 bytes) whose first key is "doc_id".
_NAMED_FIELDS_START = b"\xa6doc_id"


def decode_metadata(blob: bytes) -> Document:
    """A document as this node keeps it (``documents.content``): the content map without
    attachment bytes (``protocol.documents.encode_kept_content``), or, for a document
    stored before that, the dataclass fields by name."""
    if blob[3:10] != _NAMED_FIELDS_START:
        return decode_kept_content(blob)
    fields = msgpack.unpackb(blob, raw=False)
    fields["attachments"] = tuple(Attachment(**item) for item in fields["attachments"])
    for key in ("main_recipients", "cc_recipients"):
        fields[key] = tuple(fields[key])
    return Document(**fields)
