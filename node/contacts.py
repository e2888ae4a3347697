"""Last contact with each peer: kept in memory, flushed to SQLite for the CLI."""

from __future__ import annotations

from node.store.state_store import StateStore


class ContactBook:
    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.last_success: dict[str, int] = {}
        self.last_failure: dict[str, tuple[int, str]] = {}
        self._unsaved: list[tuple[str, bool, int, str]] = []
        self._listeners: list = []

    def on_success(self, listener) -> None:
        """Call ``listener(peer)`` whenever a peer is seen alive."""
        self._listeners.append(listener)

    def succeeded(self, peer: str, at_ms: int) -> None:
        self.last_success[peer] = at_ms
        self.last_failure.pop(peer, None)
        self._unsaved.append((peer, True, at_ms, ""))
        for listener in self._listeners:
            listener(peer)

    def failed(self, peer: str, at_ms: int, error: str) -> None:
        self.last_failure[peer] = (at_ms, error)
        self._unsaved.append((peer, False, at_ms, error[:500]))

    async def load(self) -> None:
        for contact in await self._store.contacts():
            if contact.last_success is not None:
                self.last_success[contact.peer] = contact.last_success

    async def flush(self) -> None:
        pending, self._unsaved = self._unsaved, []
        # Only the latest observation per peer and outcome matters on disk.
        latest = {(peer, ok): (peer, ok, at, error) for peer, ok, at, error in pending}
        await self._store.record_contacts(sorted(latest.values(), key=lambda c: c[2]))
