"""API tokens (``api_tokens``): only the SHA-256 of a token is kept, never the token."""

from __future__ import annotations

from dataclasses import dataclass

from node.store.connection import Database



@dataclass(frozen=True)
class TokenRow:
    name: str
    role: str
    created_at: int


class TokenStore:
    def __init__(self, connection: Database) -> None:
        self._db = connection

    async def add(self, token_hash: bytes, name: str, role: str, created_at: int) -> None:
        """Inside a caller's transaction."""
        await self._db.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?)",
                               (token_hash, name, role, created_at))

    async def find(self, token_hash: bytes) -> TokenRow | None:
        async with self._db.execute("SELECT name, role, created_at FROM api_tokens "
                                    "WHERE token_hash = ?", (token_hash,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else TokenRow(*row)

    async def named(self, name: str) -> TokenRow | None:
        async with self._db.execute("SELECT name, role, created_at FROM api_tokens "
                                    "WHERE name = ?", (name,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else TokenRow(*row)

    async def delete(self, name: str) -> int:
        """Inside a caller's transaction; the number of tokens removed."""
        cursor = await self._db.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
        return cursor.rowcount

    async def all(self) -> list[TokenRow]:
        async with self._db.execute("SELECT name, role, created_at FROM api_tokens "
                                    "ORDER BY created_at, name") as cursor:
            return [TokenRow(*row) for row in await cursor.fetchall()]
