"""Frames waiting for a next hop, and the ids of frames already accepted (dedupe).

Writes here happen inside a caller's transaction (``db.transaction``): a frame is
acknowledged only once the transaction that stored it has committed.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.store.connection import Database



@dataclass(frozen=True)
class QueuedFrame:
    message_id: bytes
    destination: str
    frame: bytes


class OutboxStore:
    def __init__(self, connection: Database) -> None:
        self._db = connection

    async def add(self, message_id: bytes, next_hop: str, destination: str, frame: bytes,
                  now_ms: int) -> None:
        await self._db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)",
                               (message_id, next_hop, destination, frame, now_ms))

    async def add_many(self, rows: list[tuple[bytes, str, str, bytes, int]]) -> None:
        """Rows of (message id, next hop, destination, frame, now_ms)."""
        if rows:
            await self._db.executemany("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)",
                                       rows)

    async def batch(self, next_hop: str, *, max_frames: int, max_bytes: int,
                    skip: set[bytes] = frozenset()) -> list[QueuedFrame]:
        """The oldest frames for ``next_hop``, at most ``max_frames`` and about ``max_bytes``,
        leaving out those in ``skip`` (already on their way)."""
        # Two statements whatever the batch: choose by size (length() does
        # not read the blobs), then read only the chosen frames.
        chosen, total = [], 0
        for message_id, size in await self._db.execute_fetchall(
                "SELECT message_id, length(frame) FROM outbox WHERE next_hop = ? "
                "ORDER BY enqueued_at, message_id LIMIT ?", (next_hop, max_frames + len(skip))):
            if message_id in skip:
                continue
            if len(chosen) == max_frames or (chosen and total + size > max_bytes):
                break
            chosen.append(message_id)
            total += size
        rows = {}
        for start in range(0, len(chosen), 500):  # SQLite's variable limit
            chunk = chosen[start:start + 500]
            rows.update((row[0], row) for row in await self._db.execute_fetchall(
                f"SELECT message_id, destination, frame FROM outbox "
                f"WHERE message_id IN ({','.join('?' * len(chunk))})", chunk))
        return [QueuedFrame(*rows[mid]) for mid in chosen if mid in rows]

    async def remove(self, message_ids: list[bytes]) -> None:
        await self._db.executemany("DELETE FROM outbox WHERE message_id = ?",
                                   [(mid,) for mid in message_ids])

    async def depths(self) -> dict[str, int]:
        async with self._db.execute(
                "SELECT next_hop, COUNT(*) FROM outbox GROUP BY next_hop") as cursor:
            return {hop: count for hop, count in await cursor.fetchall()}

    async def seen_among(self, message_ids: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(message_ids), 500):  # SQLite's variable limit
            chunk = message_ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in await self._db.execute_fetchall(
                f"SELECT message_id FROM seen WHERE message_id IN ({marks})", chunk))
        return found

    async def mark_seen(self, message_ids: list[bytes], now_ms: int) -> None:
        if message_ids:
            await self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?, ?)",
                                       [(mid, now_ms) for mid in message_ids])

    async def forget_seen_before(self, cutoff_ms: int) -> int:
        """Forget frame ids first accepted before ``cutoff_ms``; returns how many."""
        cursor = await self._db.execute("DELETE FROM seen WHERE received_at < ?", (cutoff_ms,))
        return cursor.rowcount
