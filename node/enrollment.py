"""Enrollment: how a node joins the federation, from both sides.

Theory of operation:

- **Child.** ``govnode init --parent-url`` writes keys and config, then sends a signed
  enrollment request to the parent (``POST /v1/enroll``). Until it holds a
  certificate, the running child polls ``GET /v1/enroll/{id}/{fingerprint}``; once
  approved it receives its chain (root first) and the parent's endpoint record,
  checks the chain against its pinned trust anchor and that the leaf certifies *its
  own* keys, and enters them into its directory. Air-gapped sites carry the same
  request and the same answer as files.
- **Parent.** Requests are verified (proof of possession, addressed to this node)
  and kept as ``pending``. The operator approves (a certificate with the next serial
  enters the directory and spreads by gossip) or rejects with a reason.

Re-keying is enrollment again with new keys: the parent sees a request for an id that
already has a certificate, and approval issues a higher serial.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol import certs
from protocol.certs import Certificate, EnrollmentRequest
from protocol.directory import Record, RecordKind, decode_record
from protocol.errors import Malformed, NameConstraint, ProtocolError, UnknownRoot
from protocol.keys import NodeKeys
from protocol.wire import Fields, Limits, pack, unpack

from node.member_directory import MemberDirectory
from node.store.enrollment_store import EnrollmentStore, StoredRequest

DAY_MS = 24 * 3600 * 1000
ROOT_CERT_DAYS = 3650
ANSWER_LIMITS = Limits(max_bytes=1024 * 1024, max_array_len=64, max_map_len=16, max_depth=4)


class EnrollmentError(Exception):
    """An enrollment step that cannot go on; the message says what to do."""


@dataclass(frozen=True)
class EnrollmentAnswer:
    """What a parent tells a child about its request (also the air-gap file format)."""

    status: str  # unknown | pending | approved | rejected
    subject: str
    reason: str = ""
    chain: tuple[bytes, ...] = ()  # certificate envelopes, root first
    records: tuple[bytes, ...] = ()  # bootstrap directory records ([kind, data] form)

    def encode(self) -> bytes:
        return pack({"status": self.status, "subject": self.subject, "reason": self.reason,
                     "chain": list(self.chain), "records": list(self.records)})

    @classmethod
    def decode(cls, data: bytes) -> "EnrollmentAnswer":
        fields = Fields(unpack(data, ANSWER_LIMITS, what="enrollment answer"), "enrollment answer")
        answer = cls(status=fields.str("status", max_len=16), subject=fields.node_id("subject"),
                     reason=fields.str("reason", max_len=4096), chain=fields.array("chain"),
                     records=fields.array("records"))
        fields.done()
        if answer.status not in ("unknown", "pending", "approved", "rejected"):
            raise Malformed(f"enrollment answer: unknown status {answer.status!r}")
        if not all(isinstance(item, bytes) for item in answer.chain + answer.records):
            raise Malformed("enrollment answer: chain and records must be binary")
        return answer


# --- parent side ----------------------------------------------------------------

async def receive_request(data: bytes, *, own_id: str, store: EnrollmentStore,
                          directory: MemberDirectory, now_ms: int) -> EnrollmentAnswer:
    """Verify and keep an incoming request; answer with its current state."""
    request = certs.decode_enrollment_request(data)
    if request.parent != own_id:
        raise NameConstraint(f"{request.subject} must enroll with {request.parent}, "
                             f"not with {own_id}")
    stored = await store.add(request, now_ms)
    return answer_for(stored, directory)


def answer_for(stored: StoredRequest | None, directory: MemberDirectory,
               subject: str = "") -> EnrollmentAnswer:
    if stored is None:
        return EnrollmentAnswer("unknown", subject, reason="no such enrollment request")
    if stored.state != "approved":
        return EnrollmentAnswer(stored.state, stored.subject, reason=stored.reason)
    certificate = directory.certificate(stored.subject)
    if certificate is None:  # approved by another process, not yet picked up here
        return EnrollmentAnswer("pending", stored.subject)
    if certificate.fingerprint != stored.request.fingerprint:
        return EnrollmentAnswer("rejected", stored.subject,
                                reason="a newer certificate replaced this one")
    chain = tuple(c.encode() for c in directory.chain_for(stored.subject))
    parent_endpoint = directory.get(RecordKind.ENDPOINT, stored.request.parent or "")
    records = (parent_endpoint.encode(),) if parent_endpoint else ()
    return EnrollmentAnswer("approved", stored.subject, chain=chain, records=records)


def next_serial(directory: MemberDirectory, subject: str) -> int:
    current = directory.certificate(subject)
    revoked = next((r.up_to_serial for r in directory.revocations() if r.subject == subject), 0)
    return max(current.serial if current else 0, revoked) + 1


async def approve(stored: StoredRequest, *, keys: NodeKeys, own_id: str,
                  directory: MemberDirectory, store: EnrollmentStore, now_ms: int,
                  cert_days: int) -> Certificate:
    if stored.state != "pending":
        raise EnrollmentError(f"the request of {stored.subject} is already {stored.state}")
    serial = next_serial(directory, stored.subject)
    certificate = certs.certify_request(keys, issuer=own_id, request=stored.request,
                                        serial=serial, not_before=now_ms - 60_000,
                                        not_after=now_ms + cert_days * DAY_MS)
    result = await directory.accept([Record.of(certificate)], now_ms)
    if result.rejected:
        key, refusal = result.rejected[0]
        raise EnrollmentError(f"this node cannot certify {stored.subject}: "
                              f"{refusal.code}: {refusal.detail}")
    await store.decide(stored.request, state="approved", now_ms=now_ms, serial=serial)
    return certificate


async def reject(stored: StoredRequest, *, reason: str, store: EnrollmentStore,
                 now_ms: int) -> None:
    if stored.state != "pending":
        raise EnrollmentError(f"the request of {stored.subject} is already {stored.state}")
    await store.decide(stored.request, state="rejected", now_ms=now_ms,
                       reason=reason or "rejected by the operator")


# --- child side -----------------------------------------------------------------

async def install_answer(answer: EnrollmentAnswer, *, keys: NodeKeys, own_id: str,
                         directory: MemberDirectory, now_ms: int) -> Certificate:
    """Check an approval against our anchor and keys, then enter it into the directory."""
    if answer.status != "approved":
        raise EnrollmentError(f"enrollment of {answer.subject} is {answer.status}"
                              + (f": {answer.reason}" if answer.reason else ""))
    if answer.subject != own_id:
        raise EnrollmentError(f"this answer is for {answer.subject}, not {own_id}")
    chain = [certs.decode_certificate(item) for item in answer.chain]
    leaf = certs.validate_chain(chain, trust_anchor=directory.trust_anchor, now_ms=now_ms)
    if leaf.subject != own_id or leaf.keys != keys.public:
        raise UnknownRoot("the certificate does not certify this node's keys")
    records = [Record.of(c) for c in chain]
    for item in answer.records:
        try:
            records.append(decode_record(item))
        except ProtocolError:
            continue  # bootstrap hints are optional; gossip brings them again
    result = await directory.accept(records, now_ms)
    installed = directory.certificate(own_id)
    if installed is None or installed.keys != keys.public:
        reasons = "; ".join(f"{refusal.code}: {refusal.detail}" for _, refusal in result.rejected)
        raise EnrollmentError(f"the certificate was not accepted ({reasons or 'a newer one is installed'})")
    return leaf


def make_request(keys: NodeKeys, *, node_id: str, name: str, level: certs.Level,
                 division: str | None, now_ms: int) -> EnrollmentRequest:
    return certs.make_enrollment_request(keys, subject=node_id, name=name, level=level,
                                         requested_at=now_ms, division=division)


async def recertify_children(keys: NodeKeys, *, own_id: str, directory: MemberDirectory,
                             now_ms: int) -> list[Certificate]:
    """After a re-key, sign every unrevoked child's certificate again with the new key.

    A chain link is checked against the issuer's *current* key, so a re-keyed city
    must re-issue its counties' certificates (same keys, next serial, same expiry)
    or they would stop validating everywhere.
    """
    revoked = certs.revocation_index(directory.revocations())
    renewed = []
    for record in directory.records(RecordKind.CERT):
        child = record.content
        if child.issuer != own_id or child.subject == own_id or \
                child.serial <= revoked.get(child.subject, 0):
            continue
        renewed.append(certs.issue_certificate(
            keys, issuer=own_id, subject=child.subject, name=child.name, level=child.level,
            subject_keys=child.keys, serial=next_serial(directory, child.subject),
            not_before=now_ms - 60_000, not_after=max(child.not_after, now_ms + DAY_MS),
            division=child.division))
    result = await directory.accept([Record.of(c) for c in renewed], now_ms)
    for key, refusal in result.rejected:
        raise EnrollmentError(f"could not re-certify {key[1]}: {refusal.code}: {refusal.detail}")
    return renewed
