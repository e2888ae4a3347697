"""Enrollment requests a parent has received, and what its operator decided."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.certs import EnrollmentRequest, decode_enrollment_request

from node.store.connection import Database
from node.store.db import transaction


@dataclass(frozen=True)
class StoredRequest:
    request: EnrollmentRequest
    received_at: int
    state: str
    decided_at: int | None
    reason: str
    serial: int | None

    @property
    def subject(self) -> str:
        return self.request.subject


_COLUMNS = "data, received_at, state, decided_at, reason, serial"


def _row(row: tuple) -> StoredRequest:
    return StoredRequest(decode_enrollment_request(row[0]), *row[1:])


class EnrollmentStore:
    def __init__(self, connection: Database) -> None:
        self._db = connection

    async def add(self, request: EnrollmentRequest, now_ms: int) -> StoredRequest:
        """Store a verified request; the same request again changes nothing."""
        async with transaction(self._db):
            await self._db.execute(
                "INSERT OR IGNORE INTO enrollment_requests (subject, fingerprint, data, received_at) "
                "VALUES (?, ?, ?, ?)", (request.subject, request.fingerprint, request.encode(), now_ms))
        found = await self.get(request.subject, request.fingerprint)
        assert found is not None
        return found

    async def get(self, subject: str, fingerprint: str) -> StoredRequest | None:
        async with self._db.execute(
            f"SELECT {_COLUMNS} FROM enrollment_requests WHERE subject = ? AND fingerprint = ?",
            (subject, fingerprint)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _row(row)

    async def list(self, state: str | None = None) -> list[StoredRequest]:
        query = f"SELECT {_COLUMNS} FROM enrollment_requests"
        params: tuple = ()
        if state:
            query, params = query + " WHERE state = ?", (state,)
        async with self._db.execute(query + " ORDER BY received_at", params) as cursor:
            return [_row(row) for row in await cursor.fetchall()]

    async def pending_for(self, subject: str) -> list[StoredRequest]:
        return [r for r in await self.list("pending") if r.subject == subject]

    async def decide(self, request: EnrollmentRequest, *, state: str, now_ms: int,
                     reason: str = "", serial: int | None = None) -> None:
        async with transaction(self._db):
            await self._db.execute(
                "UPDATE enrollment_requests SET state = ?, decided_at = ?, reason = ?, serial = ? "
                "WHERE subject = ? AND fingerprint = ?",
                (state, now_ms, reason, serial, request.subject, request.fingerprint))
