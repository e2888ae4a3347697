"""Directory gossip: anti-entropy push-pull rounds, eager push, status beacons upward.

Theory of operation. A round between this node (A) and a peer (B) is up to three
signed request/reply pairs on ``POST /v1/gossip``:

1. A sends its digest root (and any records it is pushing). If B's root, after
   merging the push, is the same, B says so and the round is over: one small
   request whatever the directory size. Otherwise B replies with its 256 buckets.
2. A compares buckets and sends the ``(kind, subject, seq, hash8)`` summary of its
   records in the differing ones. B reconciles and replies with the records A lacks
   and the keys it wants.
3. A merges what it got and pushes what B wanted.

Peers: each round A talks to up to ``fanout`` members: its tree neighbours (parent and
children, taking turns), plus ``random_peers`` random members so that
information also crosses the tree sideways. A record that is new to this node (other
than a status beacon) is pushed at once to its parent, all its children and
``eager_fanout`` random members, each node forwarding a record once: a flood along the
tree, which reaches every reachable node in at most four hops at a cost of about two
exchanges per member, with random members so that a dead hub does not stop it. The
rounds guarantee that whatever the pushes miss arrives. A burst of more than
``EAGER_PUSH_MAX_RECORDS`` new records is left to the rounds.

Quiet rounds: when every exchange of a round found the peer in sync and this node's
root has not changed since, the node is quiet: it skips ``quiet_rounds`` rounds,
then checks up on one peer (its parent, a child or a random member) and is quiet
again if they agree. A change anywhere changes the root of whoever learns it, and
that node's rounds resume at once with ``fanout`` peers, so changes still spread
round by round; a quiet federation of hundreds of nodes costs one exchange per node
every ``quiet_rounds`` intervals instead of ``fanout`` every interval. A failed
exchange never counts as quiet.

Status beacons are not in the digest (``protocol.directory``): a node pushes its
own beacon and those of its subtree to its parent in its next round (which is then
never skipped), so every hub holds the beacons of its subtree and the root holds
everyone's, each beacon verified once per ancestor instead of once per member.

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

from node.clock import new_id, now_ms, sleep_unless
from node.config import GossipSettings
from node.contacts import ContactBook
from node.http_client import Unreachable, post_msgpack
from node.member_directory import AcceptResult, MemberDirectory
from node.metrics import NodeMetrics

log = logging.getLogger("govnode.gossip")
GOSSIP_PATH = "/v1/gossip"
MAX_BUCKETS_PER_ROUND = 128
# More new records than this at once is a bulk transfer (this node catching up, a
# whole subtree enrolled): pushing it to every neighbour would multiply the work by the
# number of neighbours, where rounds send each peer only what it lacks.
EAGER_PUSH_MAX_RECORDS = 32


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
        self.skipped_rounds = 0
        self.last_insync_bytes = 0
        self._parent = ids.parent(node_id)
        self._upward: dict[str, Record] = {}  # status beacons of this subtree, by subject
        self._quiet_root: bytes | None = None  # root after the last all-in-sync round
        self._quiet_left = 0
        self._reachable_cache: tuple[int, tuple[list[str], list[str], list[str]]] | None = None
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
        peers = self._peers_for_round()
        if not peers:
            self.skipped_rounds += 1
            return []
        root = self.directory.digest.root
        results = await asyncio.gather(*(self.exchange_quietly(p) for p in peers))
        self._settle(root, peers, results)
        return [r for r in results if r is not None]

    def _settle(self, root: bytes, peers: list[str], results: Sequence[ExchangeResult | None]) -> None:
        """After a round or a push wave: quiet if every peer agreed and nothing changed
        meanwhile (so a push that reached every neighbour needs no round after it)."""
        quiet = bool(peers) and all(r is not None and r.in_sync for r in results)
        if quiet and root == self.directory.digest.root:
            self._quiet_root, self._quiet_left = root, self.settings.quiet_rounds
        else:
            self._quiet_root = None

    def _peers_for_round(self) -> list[str]:
        """``fanout`` peers after a change; when quiet, nobody, or the parent if beacons
        are waiting for it, or one peer for a check-up every ``quiet_rounds`` rounds."""
        if self._fresh:
            return []  # a push wave is about to go to every neighbour: no round on top
        if self._quiet_root != self.directory.digest.root:
            return self.choose_peers(self.settings.fanout)
        if self._upward and self._parent is not None and self._peer_urls(self._parent):
            return [self._parent]
        if self._quiet_left > 0:
            self._quiet_left -= 1
            return []
        # (check-ups go to tree neighbours; random members are met after changes)
        _, parent, children = self._reachable()
        neighbours = parent + children  # kept-alive connections: no new one per check-up
        return [self.rng.choice(neighbours)] if neighbours else []

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
        push = list(push)[:limit]
        upward = list(self._upward.values())[:limit - len(push)] if peer == self._parent else []
        push += upward
        reply, size = await self._request(peer, GossipBody(
            root=self.directory.digest.root, push=tuple(r.encode() for r in push)))
        self._delivered_upward(upward)
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

    def _delivered_upward(self, sent: list[Record]) -> None:
        """The parent has these beacons now (or refused them: they are soft state, the
        next beacon replaces them); forget them unless a newer one arrived meanwhile."""
        for record in sent:
            if self._upward.get(record.subject) is record:
                del self._upward[record.subject]

    def _finish(self, peer: str, result: str, size: int) -> None:
        self.metrics.gossip_rounds.labels(result).inc()
        self.contacts.succeeded(peer, now_ms())
        self.metrics.peer_last_contact.labels(peer).set(now_ms() / 1000)

    async def _request(self, peer: str, body: GossipBody) -> tuple[GossipReplyBody, int]:
        urls = self._peer_urls(peer)
        if not urls:
            raise PeerError(f"no known endpoint for {peer}")
        frame = frames.make_frame(body, origin=self.node_id, destination=peer,
                                  created_at=now_ms(), message_id=new_id())
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
            if isinstance(item, bytes) and self.directory.holds_encoded(item):
                continue  # already current here, exactly as sent
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
        """``count`` peers for a round: tree neighbours (parent and children) in turn,
        then ``random_peers`` random members. Taking turns, rather than the parent every
        round, keeps a hub with a hundred children from hearing from all of them at once."""
        members, parent, children = self._reachable()
        neighbours = parent + children
        if neighbours:
            turn = self.rounds % len(neighbours)
            neighbours = neighbours[turn:] + neighbours[:turn]
        chosen = neighbours[:max(count - self.settings.random_peers, 1)]
        return chosen + self._random_others(members, chosen, count - len(chosen))

    def choose_push_peers(self) -> list[str]:
        """Parent, every child, and ``eager_fanout`` random members."""
        members, parent, children = self._reachable()
        return parent + children + self._random_others(members, parent + children,
                                                       self.settings.eager_fanout)

    def _reachable(self) -> tuple[list[str], list[str], list[str]]:
        """Members with a known endpoint (not this node), the parent among them, the children.

        Remembered until a certificate, revocation or endpoint arrives, and for at most
        a second (validity periods pass): rounds and pushes ask for it all the time."""
        second = now_ms() // 1000
        if self._reachable_cache is None or self._reachable_cache[0] != second:
            members = [m for m in self.directory.members(now_ms())
                       if m != self.node_id and self._peer_urls(m)]
            parent = [self._parent] if self._parent in members else []
            children = [m for m in members if ids.parent(m) == self.node_id]
            self._reachable_cache = (second, (members, parent, children))
        members, parent, children = self._reachable_cache[1]
        return list(members), list(parent), list(children)

    def _random_others(self, members: list[str], chosen: list[str], count: int) -> list[str]:
        taken = set(chosen)
        others = [m for m in members if m not in taken]
        count = min(count, len(others))
        return self.rng.sample(others, count) if count > 0 else []

    # --- eager push ---------------------------------------------------------

    def _remember_fresh(self, records: list[Record]) -> None:
        urgent = [r for r in records if r.kind is not RecordKind.STATUS]
        if urgent:
            self._reachable_cache = None
        if self._parent is not None:
            for record in records:
                if record.kind is RecordKind.STATUS and \
                        ids.is_under(record.subject, self.node_id, strict=False):
                    self._upward[record.subject] = record
        if urgent:
            self._fresh.extend(urgent)
            self._fresh_event.set()

    async def _push_fresh_records(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._fresh_event.wait()
            self._fresh_event.clear()
            fresh = list(self._fresh)
            if len(fresh) > EAGER_PUSH_MAX_RECORDS:
                self._fresh = []
                continue  # a node catching up, not news: the rounds carry bulk better
            try:
                peers = self.choose_push_peers()
                root = self.directory.digest.root
                results = await asyncio.gather(*(self.exchange_quietly(p, fresh) for p in peers))
                self._settle(root, peers, results)
            except Exception:  # rounds wait while a wave is pending: never leave one behind
                log.exception("eager push failed; the rounds will carry these records")
                self._quiet_root = None
            finally:
                self._fresh = self._fresh[len(fresh):]
            # At most one push wave per interval: what arrives meanwhile goes together.
            await sleep_unless(stop, self.settings.interval_ms / 1000)

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
