"""Persistence of directory records: current winners and equivocation evidence."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.directory import MergeDecision, Outcome, Record

from node.store.connection import Database
from node.store.db import transaction


@dataclass(frozen=True)
class StoredRecord:
    kind: str
    subject: str
    seq: int
    data: bytes
    received_at: int
    change_no: int


class DirectoryStore:
    def __init__(self, connection: Database) -> None:
        self._db = connection

    async def load_current(self, after_change: int = 0) -> list[StoredRecord]:
        async with self._db.execute(
            "SELECT kind, subject, seq, data, received_at, change_no FROM directory_records "
            "WHERE change_no > ? ORDER BY change_no", (after_change,)) as cursor:
            return [StoredRecord(*row) for row in await cursor.fetchall()]

    async def save(self, decisions: list[MergeDecision], now_ms: int) -> None:
        """Write the outcome of merging a batch, in one transaction."""
        if not decisions:
            return
        async with transaction(self._db, durable=False):  # peers hold these too
            for decision in decisions:
                await self._save_one(decision, now_ms)

    async def _save_one(self, decision: MergeDecision, now_ms: int) -> None:
        if decision.outcome in (Outcome.NEW, Outcome.EQUIVOCATION):
            await self._upsert(decision.current, now_ms)
        if decision.evidence is not None:
            record = decision.evidence
            await self._db.execute(
                "INSERT OR IGNORE INTO directory_evidence VALUES (?, ?, ?, ?, ?, ?)",
                (record.kind.value, record.subject, record.seq, record.hash, record.data, now_ms))

    async def _upsert(self, record: Record, now_ms: int) -> None:
        await self._db.execute(
            "INSERT INTO directory_records VALUES (?, ?, ?, ?, ?, ?, "
            " (SELECT COALESCE(MAX(change_no), 0) + 1 FROM directory_records)) "
            "ON CONFLICT (kind, subject) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, "
            " data = excluded.data, received_at = excluded.received_at, "
            " change_no = excluded.change_no "
            # The merge rule again, so that a writer with a stale view (another process)
            # can never replace a newer record with an older one.
            "WHERE excluded.seq > directory_records.seq OR (excluded.seq = directory_records.seq"
            " AND excluded.hash < directory_records.hash)",
            (record.kind.value, record.subject, record.seq, record.hash, record.data, now_ms))

    async def evidence(self) -> list[StoredRecord]:
        async with self._db.execute(
            "SELECT kind, subject, seq, data, received_at, 0 FROM directory_evidence "
            "ORDER BY received_at") as cursor:
            return [StoredRecord(*row) for row in await cursor.fetchall()]

    async def count(self) -> int:
        async with self._db.execute("SELECT COUNT(*) FROM directory_records") as cursor:
            (count,) = await cursor.fetchone()
        return count
