"""Directory gossip: anti-entropy push-pull rounds and eager push of fresh records.

Theory of operation. A round between this node (A) and a peer (B) is up to three
signed request/reply pairs on ``POST /v1/gossip``:

1. A sends its digest root (and any records it is eagerly pushing). If B's root,
   after merging the push, is the same, B says so and the round is over: one small
   request whatever the directory size. Otherwise B replies with its 256 buckets.
2. A compares buckets and sends the ``(kind, subject, seq, hash8)`` summary of its
   records in the differing ones. B reconciles and replies with the records A lacks
   and the keys it wants.
3. A merges what it got and pushes what B wanted.

Peers: each round A talks to up to ``fanout`` members: its parent and children first
(taking turns among children), plus ``random_peers`` random members so that
information also crosses the tree sideways. A record that is new to this node is
pushed at once to ``eager_fanout`` peers (rumour spreading, each node forwarding a
record once); status beacons, frequent and not urgent, are left to the rounds, which
guarantee that whatever the pushes miss arrives.

Every request and reply is a frame signed by its sender, verified against the
directory before anything in it is looked at; records inside are verified one by
one on merge, and a refused record is reported back, never stored.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import aiohttp

from protocol import frames, ids
from protocol.directory import (Digest, Record, RecordKind, SummaryEntry,
                                decode_record, differing_buckets, reconcile)
from protocol.errors import Malformed, ProtocolError
from protocol.keys import NodeKeys
from protocol.messages import GossipBody, GossipReplyBody
from protocol.wire import unpack

from node.clock import now_ms, sleep_unless
from node.config import GossipSettings
from node.contacts import ContactBook
from node.http_client import Unreachable, post_msgpack
from node.member_directory import AcceptResult, MemberDirectory
from node.metrics import NodeMetrics

log = logging.getLogger("govnode.gossip")
GOSSIP_PATH = "/v1/gossip"
MAX_BUCKETS_PER_ROUND = 128


class PeerError(Exception):
    """A gossip exchange that failed: unreachable, refused, or an invalid reply."""


@dataclass(frozen=True)
class ExchangeResult:
    peer: str
    in_sync: bool  # roots were equal at the first step
    received: int  # records merged from the peer
    sent: int  # records pushed to the peer
    bytes: int  # request + reply bytes of the whole exchange


def summary_of(records: Iterable[Record]) -> list[SummaryEntry]:
    return [SummaryEntry.of(r) for r in records]


class Gossip:
    def __init__(self, *, node_id: str, keys: NodeKeys, directory: MemberDirectory,
                 settings: GossipSettings, session: Callable[[], aiohttp.ClientSession],
                 peer_urls: Callable[[str], Sequence[str]], contacts: ContactBook,
                 metrics: NodeMetrics, rng: random.Random | None = None) -> None:
        self.node_id = node_id
        self.keys = keys
        self.directory = directory
        self.settings = settings
        self._session = session
        self._peer_urls = peer_urls
        self.contacts = contacts
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.rounds = 0
        self.last_insync_bytes = 0
        self._fresh: list[Record] = []
        self._fresh_event = asyncio.Event()
        directory.on_new_records(self._remember_fresh)

    # --- initiating ---------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Periodic rounds and eager pushes until ``stop`` is set."""
        pusher = asyncio.create_task(self._push_fresh_records(stop))
        try:
            while not stop.is_set():
                await self.round()
                await sleep_unless(stop, self.settings.interval_ms / 1000)
        finally:
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)

    async def round(self) -> list[ExchangeResult]:
        self.rounds += 1
        peers = self.choose_peers(self.settings.fanout)
        results = await asyncio.gather(*(self.exchange_quietly(p) for p in peers))
        return [r for r in results if r is not None]

    async def exchange_quietly(self, peer: str, push: Sequence[Record] = ()) -> ExchangeResult | None:
        try:
            return await self.exchange(peer, push)
        except PeerError as error:
            self.metrics.gossip_rounds.labels("failed").inc()
            self.contacts.failed(peer, now_ms(), str(error))
            log.debug("gossip with %s failed: %s", peer, error)
            return None

    async def exchange(self, peer: str, push: Sequence[Record] = ()) -> ExchangeResult:
        limit = self.settings.max_records_per_request
        reply, size = await self._request(peer, GossipBody(
            root=self.directory.digest.root, push=tuple(r.encode() for r in push[:limit])))
        total = size
        if reply.root == self.directory.digest.root:
            self._finish(peer, "in_sync", total)
            self.last_insync_bytes = total if not push else self.last_insync_bytes
            return ExchangeResult(peer, True, 0, len(push), total)
        if not reply.buckets:
            self._finish(peer, "synced", total)
            return ExchangeResult(peer, False, 0, len(push), total)
        theirs = Digest.decode_buckets(reply.buckets)
        buckets = differing_buckets(self.directory.digest, theirs)[:MAX_BUCKETS_PER_ROUND]
        entries = summary_of(self.directory.records_in_buckets(buckets))
        reply, size = await self._request(peer, GossipBody(
            root=self.directory.digest.root, covered=tuple(buckets),
            entries=tuple((e.kind, e.subject, e.seq, e.hash) for e in entries)))
        total += size
        received = await self._merge_records(reply.records, peer)
        wanted = [r for r in (self.directory.get(kind, subject) for kind, subject in reply.want[:limit])
                  if r is not None]
        if wanted:
            _, size = await self._request(peer, GossipBody(
                root=self.directory.digest.root, push=tuple(r.encode() for r in wanted)))
            total += size
        self._finish(peer, "synced", total)
        return ExchangeResult(peer, False, received, len(push) + len(wanted), total)

    def _finish(self, peer: str, result: str, size: int) -> None:
        self.metrics.gossip_rounds.labels(result).inc()
        self.contacts.succeeded(peer, now_ms())
        self.metrics.peer_last_contact.labels(peer).set(now_ms() / 1000)

    async def _request(self, peer: str, body: GossipBody) -> tuple[GossipReplyBody, int]:
        urls = self._peer_urls(peer)
        if not urls:
            raise PeerError(f"no known endpoint for {peer}")
        frame = frames.make_frame(body, origin=self.node_id, destination=peer,
                                  created_at=now_ms(), message_id=frames.new_message_id())
        data = frames.encode_frame(frame, self.keys)
        try:
            status, answer = await post_msgpack(self._session(), urls[0] + GOSSIP_PATH, data,
                                                timeout_ms=self.settings.request_timeout_ms)
        except Unreachable as error:
            raise PeerError(f"unreachable: {error}") from None
        self.metrics.gossip_bytes.labels("sent").inc(len(data))
        self.metrics.gossip_bytes.labels("received").inc(len(answer))
        if status != 200:
            raise PeerError(f"{peer} refused gossip: HTTP {status} {_error_code(answer)}")
        return self._open_reply(peer, answer), len(data) + len(answer)

    def _open_reply(self, peer: str, answer: bytes) -> GossipReplyBody:
        try:
            signed = frames.parse_frame(answer)
            if signed.origin != peer or signed.frame.destination != self.node_id:
                raise Malformed(f"reply from {signed.origin} to {signed.frame.destination}")
            frame = signed.verify(self.directory.valid_certificate(peer, now_ms()).keys.verify_key)
        except ProtocolError as refusal:
            raise PeerError(f"invalid reply from {peer}: {refusal.code}: {refusal.detail}") from None
        if not isinstance(frame.body, GossipReplyBody):
            raise PeerError(f"{peer} answered gossip with a {frame.type} frame")
        return frame.body

    async def _merge_records(self, encoded: Iterable[bytes], source: str) -> int:
        result = await self.accept_encoded(encoded)
        for key, refusal in result.rejected:
            log.log(logging.DEBUG if refusal.code == "unknown_origin" else logging.WARNING,
                    "record %s from %s refused: %s %s", key, source, refusal.code, refusal.detail)
        return len(result.new)

    async def accept_encoded(self, encoded: Iterable[bytes]) -> AcceptResult:
        records, refused = [], []
        for item in encoded:
            try:
                records.append(decode_record(item))
            except ProtocolError as refusal:
                refused.append((("?", "?"), refusal))
        result = await self.directory.accept(records, now_ms())
        result.rejected.extend(refused)
        for _, refusal in result.rejected:
            self.metrics.records_refused.labels(refusal.code).inc()
        self.metrics.equivocations.inc(len(result.equivocations))
        return result

    # --- choosing peers -----------------------------------------------------

    def choose_peers(self, count: int) -> list[str]:
        now = now_ms()
        members = [m for m in self.directory.members(now)
                   if m != self.node_id and self._peer_urls(m)]
        parent = ids.parent(self.node_id)
        children = [m for m in members if ids.parent(m) == self.node_id]
        preferred = ([parent] if parent and self._peer_urls(parent) else [])
        if children:
            start = self.rounds % len(children)
            preferred += (children[start:] + children[:start])
        chosen = preferred[:max(count - self.settings.random_peers, 1)]
        others = [m for m in members if m not in chosen]
        extra = min(count - len(chosen), len(others))
        return chosen + (self.rng.sample(others, extra) if extra > 0 else [])

    # --- eager push ---------------------------------------------------------

    def _remember_fresh(self, records: list[Record]) -> None:
        # Status beacons are frequent and not urgent: anti-entropy carries them.
        urgent = [r for r in records if r.kind is not RecordKind.STATUS]
        if urgent:
            self._fresh.extend(urgent)
            self._fresh_event.set()

    async def _push_fresh_records(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._fresh_event.wait()
            self._fresh_event.clear()
            fresh, self._fresh = self._fresh, []
            peers = self.choose_peers(self.settings.eager_fanout)
            await asyncio.gather(*(self.exchange_quietly(p, fresh) for p in peers))

    # --- responding ---------------------------------------------------------

    async def respond(self, origin: str, body: GossipBody) -> GossipReplyBody:
        refused: list[tuple[str, str, str]] = []
        if body.push:
            result = await self.accept_encoded(body.push)
            refused = [(key[0], key[1], refusal.code) for key, refusal in result.rejected]
        digest = self.directory.digest
        self.contacts.succeeded(origin, now_ms())
        if not body.covered:
            in_sync = digest.root == body.root
            return GossipReplyBody(root=digest.root,
                                   buckets=b"" if in_sync else digest.encode_buckets(),
                                   refused=tuple(refused))
        covered = [b for b in body.covered][:MAX_BUCKETS_PER_ROUND]
        mine = summary_of(self.directory.records_in_buckets(covered))
        theirs = [SummaryEntry(*entry) for entry in body.entries]
        to_send, to_fetch = reconcile(mine, theirs)
        limit = self.settings.max_records_per_request
        records = [self.directory.get(kind, subject) for kind, subject in sorted(to_send)][:limit]
        return GossipReplyBody(root=digest.root, records=tuple(r.encode() for r in records if r),
                               want=tuple(sorted(to_fetch))[:limit], refused=tuple(refused))




def _error_code(answer: bytes) -> str:
    try:
        document = unpack(answer)
        return f"{document.get('error')}: {document.get('detail')}"
    except (ProtocolError, AttributeError):
        return answer[:100].decode("utf-8", "replace")
