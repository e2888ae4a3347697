"""The node's member directory: verified records in memory, written through to SQLite.

Theory of operation: every record, whether it came by gossip, from the CLI (an
approval, a revocation) or from this node itself (endpoint, status beacon), enters
through ``accept``. A batch is sorted so that what others depend on comes first
(certificates by depth, then revocations, then subject-signed records), each record is
verified against the directory as it stands (including what this batch already
added), merged by the protocol's rule, and the whole batch's outcome is committed in
one transaction before memory changes. A record that fails verification is never
stored or forwarded; the caller learns why.

Other processes (the ``govnode`` CLI) write through their own ``MemberDirectory`` on
the same database; ``refresh`` picks their rows up by change number, so a running node
sees an approval or revocation made from the command line within one gossip tick.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterable

from protocol import ids
from protocol.certs import Certificate, Revocation, validate_chain
from protocol.directory import (BUCKETS, DIGEST_KINDS, Digest, EndpointAnnouncement,
                                MergeDecision, Outcome,
                                Record, RecordKind, StatusBeacon, bucket_of, merge,
                                record_bucket_value, verify_record)
from protocol.errors import ProtocolError, UnknownOrigin

from node.store.directory_store import DirectoryStore

log = logging.getLogger("govnode.directory")

MAX_PARKED = 10_000
_KIND_ORDER = {RecordKind.CERT: 0, RecordKind.REVOCATION: 1, RecordKind.ENDPOINT: 2,
               RecordKind.STATUS: 3}


@dataclass
class AcceptResult:
    new: list[Record] = field(default_factory=list)
    equivocations: list[MergeDecision] = field(default_factory=list)
    rejected: list[tuple[tuple[str, str], ProtocolError]] = field(default_factory=list)
    unchanged: int = 0


class MemberDirectory:
    def __init__(self, store: DirectoryStore, *, trust_anchor: str) -> None:
        self._store = store
        self.trust_anchor = trust_anchor
        self._current: dict[tuple[str, str], Record] = {}
        self._revocations: dict[str, Revocation] = {}  # by subject, for chain checks
        # The certificate a re-key replaced, by subject: frames signed with the old key
        # before the re-key may still be travelling (kept in memory only).
        self._previous_certificates: dict[str, Certificate] = {}
        # Chains verified since the last certificate or revocation change: subject ->
        # (leaf, valid from, valid until). Every frame's origin is checked, so verifying
        # each chain's signatures once instead of per frame matters (valid_certificate).
        self._valid: dict[str, tuple[Certificate, int, int]] = {}
        self._buckets = [0] * BUCKETS
        self._digest: Digest | None = None  # cached until a digest kind changes
        # Fingerprints of the [kind, data] encodings of current records: a record that
        # gossip brings again (the common case) is recognised before it is parsed.
        self._encodings: set[bytes] = set()
        self._bucket_keys: list[set[tuple[str, str]]] = [set() for _ in range(BUCKETS)]
        self._last_change = 0
        self._listeners: list[Callable[[list[Record]], None]] = []
        self._lock = asyncio.Lock()
        self._parked: dict[tuple[str, str], Record] = {}
        self._verified_links: set[bytes] = set()  # certificate signatures checked once
        # members(): gossip asks every round; recomputed when certificates or
        # revocations change, or once a second (validity periods pass).
        self._members: tuple[int, list[str]] | None = None

    # --- loading ---------------------------------------------------------------

    async def load(self) -> None:
        await self.refresh()

    async def refresh(self) -> list[Record]:
        """Take in rows committed since we last looked (by us or another process)."""
        async with self._lock:
            changed = await self._refresh()
        if changed:
            self._notify(changed)
        return changed

    async def _refresh(self) -> list[Record]:
        rows = await self._store.load_current(self._last_change)
        changed = []
        for row in rows:
            record = Record.from_bytes(row.kind, row.data)
            if self._put(record):
                changed.append(record)
            self._last_change = max(self._last_change, row.change_no)
        return changed

    def on_new_records(self, listener: Callable[[list[Record]], None]) -> None:
        self._listeners.append(listener)

    # --- reading ---------------------------------------------------------------

    @property
    def digest(self) -> Digest:
        if self._digest is None:
            self._digest = Digest(tuple(self._buckets))
        return self._digest

    def holds_encoded(self, encoded: bytes) -> bool:
        """True if ``encoded`` (the ``[kind, data]`` form) is a current record, as is."""
        return _fingerprint(encoded) in self._encodings

    def __len__(self) -> int:
        return len(self._current)

    def get(self, kind: RecordKind | str, subject: str) -> Record | None:
        """The current record, or None (also for a kind no record has: peers send keys)."""
        kind_name = kind.value if isinstance(kind, RecordKind) else kind
        return self._current.get((kind_name, subject))

    def records(self, kind: RecordKind | None = None) -> list[Record]:
        if kind is None:
            return list(self._current.values())
        return [r for r in self._current.values() if r.kind is kind]

    def records_in_buckets(self, buckets: Iterable[int]) -> list[Record]:
        return [self._current[key] for bucket in set(buckets)
                for key in self._bucket_keys[bucket]]

    def certificate(self, subject: str) -> Certificate | None:
        record = self.get(RecordKind.CERT, subject)
        return record.content if record else None

    def previous_certificate(self, subject: str, now_ms: int) -> Certificate | None:
        """The certificate before the subject's last re-key, if still unrevoked and
        unexpired: a re-key without revocation means the old key was not compromised."""
        previous = self._previous_certificates.get(subject)
        revoked = self._revocations.get(subject)
        if previous is None or now_ms >= previous.not_after or \
                (revoked is not None and previous.serial <= revoked.up_to_serial):
            return None
        return previous

    def revocations(self) -> list[Revocation]:
        return list(self._revocations.values())

    def endpoint(self, subject: str) -> EndpointAnnouncement | None:
        record = self.get(RecordKind.ENDPOINT, subject)
        return record.content if record else None

    def status(self, subject: str) -> StatusBeacon | None:
        record = self.get(RecordKind.STATUS, subject)
        return record.content if record else None

    async def equivocation_evidence(self) -> list[Record]:
        """Losing sides of equivocations, kept for operators."""
        return [Record.from_bytes(row.kind, row.data) for row in await self._store.evidence()]

    def chain_for(self, subject: str, staged: dict[tuple[str, str], Record] | None = None
                  ) -> list[Certificate]:
        """The subject's current chain, root first; ``UnknownOrigin`` if a link is missing.

        ``staged`` records (a batch being accepted) take precedence over current ones.
        """
        staged = staged or {}
        chain = []
        for node_id in (subject, *ids.ancestors(subject)):
            key = (RecordKind.CERT.value, node_id)
            found = staged.get(key) or self._current.get(key)
            if found is None:
                raise UnknownOrigin(f"no certificate for {node_id} in this node's directory")
            chain.append(found.content)
        chain.reverse()
        return chain

    def valid_certificate(self, subject: str, now_ms: int) -> Certificate:
        """The subject's certificate if its whole chain is valid now; else the refusal.

        A chain that verified is remembered until a certificate or a revocation changes
        (``_put``); until then only its validity period is checked against ``now_ms``.
        """
        remembered = self._valid.get(subject)
        if remembered is not None and remembered[1] <= now_ms < remembered[2]:
            return remembered[0]
        chain = self.chain_for(subject)
        leaf = validate_chain(chain, trust_anchor=self.trust_anchor, now_ms=now_ms,
                              revocations=self.revocations(), verified=self._verified_links)
        self._valid[subject] = (leaf, max(link.not_before for link in chain),
                                min(link.not_after for link in chain))
        return leaf

    def is_valid_member(self, subject: str, now_ms: int) -> bool:
        try:
            self.valid_certificate(subject, now_ms)
        except ProtocolError:
            return False
        return True

    def members(self, now_ms: int) -> list[str]:
        """Subjects whose chain is valid now, sorted."""
        second = now_ms // 1000
        if self._members is None or self._members[0] != second:
            self._members = (second, sorted(r.subject for r in self.records(RecordKind.CERT)
                                            if self.is_valid_member(r.subject, now_ms)))
        return list(self._members[1])

    # --- accepting -------------------------------------------------------------

    async def accept(self, records: Iterable[Record], now_ms: int) -> AcceptResult:
        # One batch at a time: each batch merges against what the previous one left.
        async with self._lock:
            result = await self._accept(list(records), now_ms)
            self._park(result, records)
            if self._parked and any(r.kind is RecordKind.CERT for r in result.new):
                parked, self._parked = self._parked, {}
                retried = await self._accept(list(parked.values()), now_ms)
                self._park(retried, parked.values())  # still waiting for a certificate
                result.new.extend(retried.new)
        if result.new:
            self._notify(result.new)
        return result

    def _park(self, result: AcceptResult, records: Iterable[Record]) -> None:
        """Keep records refused only because a certificate has not arrived yet (they
        can come before it by gossip) and try them again when certificates arrive."""
        by_key = {r.key: r for r in records}
        for key, refusal in result.rejected:
            if isinstance(refusal, UnknownOrigin) and key in by_key and \
                    len(self._parked) < MAX_PARKED:
                self._parked[key] = by_key[key]

    async def _accept(self, records: list[Record], now_ms: int) -> AcceptResult:
        result = AcceptResult()
        staged: dict[tuple[str, str], Record] = {}
        decisions: list[MergeDecision] = []
        for record in sorted(records, key=_dependency_order):
            current = staged.get(record.key) or self._current.get(record.key)
            decision = merge(current, record)
            if decision.outcome in (Outcome.STALE, Outcome.DUPLICATE):
                result.unchanged += 1
                continue
            try:
                self._verify(record, staged, now_ms)
            except ProtocolError as refusal:
                result.rejected.append((record.key, refusal))
                continue
            decisions.append(decision)
            if decision.outcome is Outcome.EQUIVOCATION:
                result.equivocations.append(decision)
                log.warning("equivocation on %s %s seq %d", record.kind.value, record.subject,
                            record.seq)
            if decision.current is record:
                staged[record.key] = record
        await self._store.save(decisions, now_ms)
        for record in staged.values():
            if self._put(record):
                result.new.append(record)
        return result

    def _verify(self, record: Record, staged: dict[tuple[str, str], Record], now_ms: int) -> None:
        revocations = {**self._revocations, **{
            key[1]: r.content for key, r in staged.items() if r.kind is RecordKind.REVOCATION}}
        verify_record(record, chain_for=lambda subject: self.chain_for(subject, staged),
                      trust_anchor=self.trust_anchor, now_ms=now_ms,
                      revocations=revocations.values(), verified=self._verified_links)

    def _put(self, record: Record) -> bool:
        previous = self._current.get(record.key)
        if previous is not None and previous.hash == record.hash:
            return False
        if record.kind in DIGEST_KINDS:
            bucket = bucket_of(*record.key)
            if previous is not None:
                self._buckets[bucket] ^= record_bucket_value(previous.hash)
            self._buckets[bucket] ^= record_bucket_value(record.hash)
            self._bucket_keys[bucket].add(record.key)
            self._digest = None
        if previous is not None:
            self._encodings.discard(_fingerprint(previous.encode()))
        self._encodings.add(_fingerprint(record.encode()))
        self._current[record.key] = record
        if record.kind in (RecordKind.CERT, RecordKind.REVOCATION):
            self._valid.clear()  # any chain may have changed
            self._members = None
        if record.kind is RecordKind.CERT and previous is not None and \
                previous.content.keys != record.content.keys:
            self._previous_certificates[record.subject] = previous.content
        if record.kind is RecordKind.REVOCATION:
            self._revocations[record.subject] = record.content
        return True

    def _notify(self, records: list[Record]) -> None:
        for listener in self._listeners:
            try:
                listener(records)
            except Exception:  # a listener's bug must not undo a committed merge
                log.exception("directory listener failed")


def _fingerprint(encoded: bytes) -> bytes:
    return hashlib.blake2b(encoded, digest_size=16).digest()


def _dependency_order(record: Record) -> tuple[int, int, str]:
    return (_KIND_ORDER[record.kind], ids.depth(record.subject), record.subject)
