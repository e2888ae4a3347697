"""Small per-node facts (counters, enrollment progress) and peer contact times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from node.store.connection import Database
from node.store.db import transaction


@dataclass(frozen=True)
class PeerContact:
    peer: str
    last_success: int | None
    last_failure: int | None
    failures: int
    last_error: str


class StateStore:
    def __init__(self, connection: Database) -> None:
        self._db = connection

    async def get(self, key: str, default: Any = None) -> Any:
        async with self._db.execute("SELECT value FROM local_state WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return default if row is None else row[0]

    # Every write takes the connection's transaction lock: a bare statement issued
    # while another coroutine's transaction is open would become part of it (and be
    # rolled back with it -- a reused sequence number is equivocation).

    async def put(self, key: str, value: Any) -> None:
        async with transaction(self._db):
            await self._db.execute(
                "INSERT INTO local_state VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                "SET value = excluded.value", (key, value))

    async def next_counter(self, key: str) -> int:
        """Increment and return a durable counter (sequence numbers of our records)."""
        async with transaction(self._db):
            async with self._db.execute(
                    "INSERT INTO local_state VALUES (?, 1) ON CONFLICT (key) DO UPDATE "
                    "SET value = value + 1 RETURNING value", (key,)) as cursor:
                (value,) = await cursor.fetchone()
        return value

    async def record_contacts(self, contacts: list[tuple[str, bool, int, str]]) -> None:
        """Save (peer, succeeded, at_ms, error) observations in one transaction."""
        if not contacts:
            return
        async with transaction(self._db, durable=False):
            for peer, succeeded, at_ms, error in contacts:
                if succeeded:
                    await self._db.execute(
                        "INSERT INTO peer_contacts (peer, last_success, failures) VALUES (?, ?, 0) "
                        "ON CONFLICT (peer) DO UPDATE SET last_success = excluded.last_success, "
                        "failures = 0, last_error = ''", (peer, at_ms))
                else:
                    await self._db.execute(
                        "INSERT INTO peer_contacts (peer, last_failure, failures, last_error) "
                        "VALUES (?, ?, 1, ?) ON CONFLICT (peer) DO UPDATE SET "
                        "last_failure = excluded.last_failure, failures = failures + 1, "
                        "last_error = excluded.last_error", (peer, at_ms, error))

    async def contacts(self) -> list[PeerContact]:
        async with self._db.execute(
            "SELECT peer, last_success, last_failure, failures, last_error FROM peer_contacts "
            "ORDER BY peer") as cursor:
            return [PeerContact(*row) for row in await cursor.fetchall()]
