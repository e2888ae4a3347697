"""Directory records, the merge rule, and digests for anti-entropy.

Theory of operation: the member directory is a set of self-verifying records, each
keyed by ``(kind, subject)`` and carrying a sequence number:

==============  ==============================  ======================  ===========
kind            content                         signed by               sequence
==============  ==============================  ======================  ===========
``cert``        membership certificate          the subject's parent    serial
``revocation``  revocation (serials up to N)    subject or an ancestor  N
``endpoint``    where the subject listens       the subject             seq
``status``      health beacon                   the subject             seq
==============  ==============================  ======================  ===========

A record's ``data`` is its signed envelope, exactly as its signer produced it, so any
node can forward it and any node can check it (``verify_record``) against the
certificates it already holds. **Merge rule** (``merge``): a higher sequence replaces
a lower one; a lower one is stale; the same bytes are a duplicate; the same sequence
with different bytes is *equivocation*: both are kept, the one with the smaller
hash stays current (so every node picks the same one whatever the arrival order) and
the other is kept as evidence for operators.

**Digest**: records of the ``DIGEST_KINDS`` hash into ``BUCKETS`` buckets by key; a
bucket's value is the XOR of the first 8 bytes of its records' hashes, and the
digest's root is the hash of all buckets. Two nodes in sync compare roots (one small
request, whatever the directory size); otherwise they compare buckets (fixed size)
and then exchange the ``(kind, subject, seq, hash)`` summaries of the differing
buckets only, and from those, just the records each side lacks (``reconcile``).
Status beacons stay out of the digest: they are soft state, replaced every few
seconds and wanted by the subject's ancestors (hub operators) rather than by every
member, so they travel up the tree (``node/gossip.py``) and never make two
directories that agree on every certificate, revocation and endpoint look different.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from enum import Enum
from typing import Any, Callable, Iterable, MutableSet, Sequence

from protocol.certs import (Certificate, Revocation, decode_certificate, decode_revocation,
                            validate_chain, verify_revocation)
from protocol.errors import Malformed, NameConstraint, UnknownType, WrongIssuer
from protocol.keys import NodeKeys
from protocol.signing import Domain, decode_envelope, encode_envelope, verify_bytes
from protocol.wire import Fields, Limits, pack, unpack

RECORD_VERSION = 1
RECORD_LIMITS = Limits(max_bytes=64 * 1024, max_str_len=4096, max_bin_len=64 * 1024,
                       max_array_len=64, max_map_len=1024, max_depth=4)
BUCKETS = 256
BUCKET_HASH_BYTES = 8
MAX_URLS = 8


class RecordKind(str, Enum):
    CERT = "cert"
    REVOCATION = "revocation"
    ENDPOINT = "endpoint"
    STATUS = "status"


DIGEST_KINDS = frozenset({RecordKind.CERT, RecordKind.REVOCATION, RecordKind.ENDPOINT})


# --- subject-signed records ---------------------------------------------------

@dataclass(frozen=True)
class EndpointAnnouncement:
    subject: str
    seq: int
    urls: tuple[str, ...]
    at: int

    def to_wire(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "k": RecordKind.ENDPOINT.value, "sub": self.subject,
                "seq": self.seq, "urls": list(self.urls), "at": self.at}

    @classmethod
    def from_wire(cls, fields: Fields) -> "EndpointAnnouncement":
        urls = fields.array("urls")
        if len(urls) > MAX_URLS or not all(isinstance(u, str) and 0 < len(u) <= 512 for u in urls):
            raise Malformed(f"endpoint urls: at most {MAX_URLS} non-empty strings")
        if not all(u.startswith(("http://", "https://")) for u in urls):
            raise Malformed("endpoint urls must be http:// or https://")
        return cls(fields.node_id("sub"), fields.int("seq", min_value=1), urls, fields.int("at"))


@dataclass(frozen=True)
class StatusBeacon:
    subject: str
    seq: int
    at: int
    version: str
    uptime_s: int
    queue_depths: dict[str, int]  # next hop -> frames waiting
    last_contact: dict[str, int]  # neighbour -> ms of last successful exchange
    directory_root: str  # hex of the sender's directory digest root
    disk_free: int
    stats: dict[str, int]

    def to_wire(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "k": RecordKind.STATUS.value, "sub": self.subject,
                "seq": self.seq, "at": self.at, "ver": self.version, "up": self.uptime_s,
                "queues": dict(self.queue_depths), "contacts": dict(self.last_contact),
                "dir": self.directory_root, "disk": self.disk_free, "stats": dict(self.stats)}

    @classmethod
    def from_wire(cls, fields: Fields) -> "StatusBeacon":
        return cls(
            subject=fields.node_id("sub"), seq=fields.int("seq", min_value=1),
            at=fields.int("at"), version=fields.str("ver", max_len=64),
            uptime_s=fields.int("up"), queue_depths=_counts(fields, "queues"),
            last_contact=_counts(fields, "contacts"), directory_root=fields.str("dir", max_len=64),
            disk_free=fields.int("disk"), stats=_counts(fields, "stats"))


def _counts(fields: Fields, key: str) -> dict[str, int]:
    value = fields.map(key)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values()):
        raise Malformed(f"status field {key!r} must map names to non-negative integers")
    return dict(value)


_SUBJECT_SIGNED = {RecordKind.ENDPOINT: EndpointAnnouncement, RecordKind.STATUS: StatusBeacon}
Content = Certificate | Revocation | EndpointAnnouncement | StatusBeacon


def sign_record(keys: NodeKeys, content: EndpointAnnouncement | StatusBeacon) -> "Record":
    wire = content.to_wire()
    payload = pack(wire)
    return Record.from_bytes(wire["k"], encode_envelope(payload, keys.sign(Domain.RECORD, payload)))


# --- the record ---------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    kind: RecordKind
    subject: str
    seq: int
    data: bytes  # the signed envelope, exactly as its signer produced it
    content: Content
    hash: bytes  # SHA-256 of data

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind.value, self.subject)

    @classmethod
    def from_bytes(cls, kind: str, data: bytes) -> "Record":
        """Parse a record of ``kind``; structure only, see ``verify_record`` for trust."""
        try:
            record_kind = RecordKind(kind)
        except ValueError:
            raise UnknownType(f"unknown directory record kind {kind!r}") from None
        content = _parse_content(record_kind, data)
        seq = content.serial if isinstance(content, Certificate) else (
            content.up_to_serial if isinstance(content, Revocation) else content.seq)
        return cls(record_kind, content.subject, seq, bytes(data), content,
                   hashlib.sha256(data).digest())

    @classmethod
    def of(cls, content: Certificate | Revocation) -> "Record":
        kind = RecordKind.CERT if isinstance(content, Certificate) else RecordKind.REVOCATION
        return cls.from_bytes(kind.value, content.encode())

    def encode(self) -> bytes:
        return pack([self.kind.value, self.data])


def _parse_content(kind: RecordKind, data: bytes) -> Content:
    if kind is RecordKind.CERT:
        return decode_certificate(data, RECORD_LIMITS)
    if kind is RecordKind.REVOCATION:
        return decode_revocation(data, RECORD_LIMITS)
    payload, _ = decode_envelope(data, RECORD_LIMITS, what=f"{kind.value} record")
    fields = Fields(unpack(payload, RECORD_LIMITS, what=f"{kind.value} record"), kind.value)
    if fields.int("v") != RECORD_VERSION or fields.str("k", max_len=16) != kind.value:
        raise Malformed(f"{kind.value} record: wrong version or kind inside")
    content = _SUBJECT_SIGNED[kind].from_wire(fields)
    fields.done()
    return content


def decode_record(data: bytes) -> Record:
    """Decode the ``[kind, data]`` form records travel in."""
    value = unpack(data, RECORD_LIMITS, what="directory record")
    if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], bytes)):
        raise Malformed("directory record: expected [kind, signed bytes]")
    return Record.from_bytes(value[0], value[1])


ChainLookup = Callable[[str], Sequence[Certificate]]


def verify_record(record: Record, *, chain_for: ChainLookup, trust_anchor: str, now_ms: int,
                  revocations: Iterable[Revocation] = (),
                  verified: MutableSet[bytes] | None = None) -> None:
    """Check a record against the directory's certificates; raise the typed refusal.

    ``chain_for(subject)`` returns that subject's current chain, root first, and raises
    ``UnknownOrigin`` when a link is missing. ``verified``: see ``validate_chain``.
    """
    content = record.content
    revocations = tuple(revocations)
    if isinstance(content, Certificate):
        chain = [content] if content.is_self_issued else [*chain_for(content.issuer), content]
        validate_chain(chain, trust_anchor=trust_anchor, now_ms=now_ms, revocations=revocations,
                       verified=verified)
        return
    if isinstance(content, Revocation):
        _verify_revocation_record(content, chain_for, trust_anchor, now_ms, revocations)
        return
    signer_cert = validate_chain(chain_for(record.subject), trust_anchor=trust_anchor,
                                 now_ms=now_ms, revocations=revocations, verified=verified)
    if signer_cert.subject != record.subject:
        raise WrongIssuer(f"{record.kind.value} record of {record.subject} checked against "
                          f"the chain of {signer_cert.subject}")
    payload, signature = decode_envelope(record.data, RECORD_LIMITS)
    verify_bytes(signer_cert.keys.verify_key, Domain.RECORD, payload, signature,
                 what=f"{record.kind.value} record of {record.subject}")


def _verify_revocation_record(revocation: Revocation, chain_for: ChainLookup, trust_anchor: str,
                              now_ms: int, revocations: tuple[Revocation, ...]) -> None:
    """A node may revoke itself even once revoked (its own chain is checked without
    revocations); an ancestor must itself be unrevoked. Nobody may revoke serials
    that were never issued, so a revocation cannot lock a node out of re-keying."""
    self_revocation = revocation.signer == revocation.subject
    signer_cert = validate_chain(chain_for(revocation.signer), trust_anchor=trust_anchor,
                                 now_ms=now_ms, revocations=() if self_revocation else revocations)
    verify_revocation(revocation, signer_cert)
    issued = chain_for(revocation.subject)[-1].serial
    if revocation.up_to_serial > issued:
        raise NameConstraint(f"revocation of {revocation.subject} up to serial "
                             f"{revocation.up_to_serial}, but only {issued} was issued")


# --- merge rule ---------------------------------------------------------------

class Outcome(str, Enum):
    NEW = "new"  # incoming becomes current
    STALE = "stale"  # incoming is older: ignore
    DUPLICATE = "duplicate"  # already have exactly this
    EQUIVOCATION = "equivocation"  # same seq, different content: keep both


@dataclass(frozen=True)
class MergeDecision:
    outcome: Outcome
    current: Record
    evidence: Record | None = None  # the losing record of an equivocation


def merge(current: Record | None, incoming: Record) -> MergeDecision:
    if current is None or incoming.seq > current.seq:
        return MergeDecision(Outcome.NEW, incoming)
    if incoming.seq < current.seq:
        return MergeDecision(Outcome.STALE, current)
    if incoming.hash == current.hash:
        return MergeDecision(Outcome.DUPLICATE, current)
    winner, loser = sorted((current, incoming), key=lambda record: record.hash)
    return MergeDecision(Outcome.EQUIVOCATION, winner, loser)


# --- digests ------------------------------------------------------------------

def bucket_of(kind: str, subject: str) -> int:
    key_hash = hashlib.sha256(f"{kind}\x00{subject}".encode()).digest()
    return int.from_bytes(key_hash[:4], "big") % BUCKETS


@dataclass(frozen=True)
class Digest:
    buckets: tuple[int, ...]  # BUCKETS values, each the XOR of 8-byte record hashes

    @cached_property
    def root(self) -> bytes:
        return hashlib.sha256(self.encode_buckets()).digest()[:16]

    def encode_buckets(self) -> bytes:
        return self._encoded

    @cached_property
    def _encoded(self) -> bytes:
        return b"".join(value.to_bytes(BUCKET_HASH_BYTES, "big") for value in self.buckets)

    @classmethod
    def decode_buckets(cls, data: bytes) -> "Digest":
        if not isinstance(data, bytes) or len(data) != BUCKETS * BUCKET_HASH_BYTES:
            raise Malformed(f"digest must be {BUCKETS * BUCKET_HASH_BYTES} bytes")
        step = BUCKET_HASH_BYTES
        return cls(tuple(int.from_bytes(data[i:i + step], "big")
                         for i in range(0, len(data), step)))


def record_bucket_value(record_hash: bytes) -> int:
    return int.from_bytes(record_hash[:BUCKET_HASH_BYTES], "big")


def digest_of(records: Iterable[Record]) -> Digest:
    """The digest of a directory's current records (kinds outside ``DIGEST_KINDS`` skipped)."""
    buckets = [0] * BUCKETS
    for record in records:
        if record.kind not in DIGEST_KINDS:
            continue
        buckets[bucket_of(*record.key)] ^= record_bucket_value(record.hash)
    return Digest(tuple(buckets))


def differing_buckets(mine: Digest, theirs: Digest) -> tuple[int, ...]:
    return tuple(i for i, (a, b) in enumerate(zip(mine.buckets, theirs.buckets)) if a != b)


@dataclass(frozen=True)
class SummaryEntry:
    """One record in a bucket summary; ``hash`` is the record hash's first 8 bytes."""

    kind: str
    subject: str
    seq: int
    hash: bytes

    @classmethod
    def of(cls, record: Record) -> "SummaryEntry":
        return cls(record.kind.value, record.subject, record.seq,
                   record.hash[:BUCKET_HASH_BYTES])

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.subject)


def reconcile(mine: Iterable[SummaryEntry], theirs: Iterable[SummaryEntry]
              ) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """From two bucket summaries: (keys to send them, keys to ask them for).

    Same sequence with a different hash goes both ways: each side then holds both
    versions and the merge rule records the equivocation.
    """
    my_index = {entry.key: entry for entry in mine}
    their_index = {entry.key: entry for entry in theirs}
    to_send, to_fetch = set(), set()
    for key, entry in my_index.items():
        other = their_index.get(key)
        if other is None or entry.seq > other.seq or (entry.seq == other.seq and entry.hash != other.hash):
            to_send.add(key)
    for key, entry in their_index.items():
        other = my_index.get(key)
        if other is None or entry.seq > other.seq or (entry.seq == other.seq and entry.hash != other.hash):
            to_fetch.add(key)
    return to_send, to_fetch
