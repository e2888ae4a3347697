"""What document handling needs of a node, whether the node runs or the CLI acts alone.

The running ``Node`` and the offline CLI (``operations.open_node``) both build a
``NodeContext``; sending, receiving and workflow actions take one, so the same code
path serves both. ``wake`` tells a running node's delivery that a next hop has new
frames (the CLI's is a no-op: the node notices the commit within a second).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from protocol import frames, ids, sealing
from protocol.errors import CannotDecrypt
from protocol.keys import NodeKeys
from protocol.messages import Body

from node.clock import now_ms
from node.config import NodeConfig
from node.member_directory import MemberDirectory
from node.store.connection import Database
from node.store.document_store import DocumentStore
from node.store.outbox_store import OutboxStore


@dataclass
class NodeContext:
    node_id: str
    keys: NodeKeys
    config: NodeConfig
    directory: MemberDirectory
    db: Database
    documents: DocumentStore = field(init=False)
    outbox: OutboxStore = field(init=False)
    wake: Callable[[str], None] = lambda hop: None
    previous_keys: tuple[NodeKeys, ...] = ()  # kept after a re-key for documents in flight
    _hops: dict[str, str] = field(init=False, repr=False, default_factory=dict)  # next_hop's

    def __post_init__(self) -> None:
        self.documents = DocumentStore(self.db)
        self.outbox = OutboxStore(self.db)
        self._opening_keys = (self.keys, *self.previous_keys)

    def use_keys(self, keys: NodeKeys, previous: tuple[NodeKeys, ...]) -> None:
        """Switch to new keys (a re-key). What ``open_sealed`` tries is replaced in one
        assignment: it may run in a worker thread, which must never see the old key
        where the new one belongs."""
        self._opening_keys = (keys, *previous)
        self.keys, self.previous_keys = keys, previous

    def open_sealed(self, sealed: bytes) -> bytes:
        """Decrypt with the current key, or with the key before a re-key: documents
        sealed to the old key may still be on their way. Safe in a worker thread."""
        for keys in self._opening_keys:
            try:
                return sealing.open_sealed(sealed, keys.public.box_key, keys.box_secret)
            except CannotDecrypt:
                continue
        raise CannotDecrypt("sealed content does not open with this node's keys")

    def next_hop(self, destination: str) -> str:
        hop = self._hops.get(destination)
        if hop is None:  # routing is a pure function of the two ids: computed once each
            hop = ids.next_hop(self.node_id, destination)
            assert hop is not None, "a node never routes to itself"
            self._hops[destination] = hop
        return hop

    async def queue_frame(self, body: Body, destination: str) -> tuple[bytes, bytes]:
        """Sign a frame from this node and put it in the outbox (inside a transaction).

        Returns (message id, frame bytes). The caller wakes delivery after committing.
        """
        message_id, data = self.sign_frame(body, destination)
        await self.outbox.add(message_id, self.next_hop(destination), destination, data, now_ms())
        return message_id, data

    def sign_frame(self, body: Body, destination: str) -> tuple[bytes, bytes]:
        """A new signed frame from this node: (message id, frame bytes); nothing stored.
        Safe in a worker thread: it reads only the node id and the keys."""
        now = now_ms()
        message_id = frames.new_message_id(created_at=now)
        frame = frames.make_frame(body, origin=self.node_id, destination=destination,
                                  created_at=now, message_id=message_id)
        return message_id, frames.encode_frame(frame, self.keys)
