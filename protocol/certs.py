"""Membership certificates, revocations and enrollment requests.

Theory of operation: the id tree is the trust tree. The province signs its own root
certificate; every config pins that certificate's key fingerprint (the trust
anchor). A parent signs one certificate per direct child, and may certify nothing
else (the *name constraint*). A chain, root first, is valid when:

=============================  =================
check                          refusal code
=============================  =================
root key matches the anchor    ``unknown_root``
root is self-issued            ``wrong_issuer``
root subject is a root id      ``name_constraint``
link issuer = previous subject ``wrong_issuer``
subject directly under issuer  ``name_constraint``
signature verifies             ``bad_signature``
now within validity            ``expired_cert`` / ``not_yet_valid``
serial not revoked             ``revoked``
=============================  =================

checked in that order for each link from the root down, so the first broken link is
the one reported. Re-keying issues a new certificate with a higher serial. A
revocation names a subject and revokes every serial up to ``up_to_serial``; it is
signed by the subject itself (a compromised key) or by one of its ancestors.

An enrollment request is signed by the new node's own key (proof that it holds the
key it asks to have certified) and names the parent it asks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Iterable, MutableSet, Sequence

from protocol import ids
from protocol.errors import (ExpiredCert, Malformed, NameConstraint, NotYetValid,
                             Revoked, UnknownRoot, WrongIssuer)
from protocol.keys import NodeKeys, PublicKeys, fingerprint
from protocol.messages import MAX_TEXT
from protocol.signing import Domain, decode_envelope, encode_envelope, verify_bytes
from protocol.wire import DEFAULT_LIMITS, Fields, Limits, pack, unpack

CERT_VERSION = 1
MAX_NAME = 200
DIVISION_CODE_LEN = 6


class Level(str, Enum):
    PROVINCE = "province"
    CITY = "city"
    COUNTY = "county"
    DEPARTMENT = "department"


def _level(fields: Fields, key: str) -> Level:
    return _as_level(fields.str(key, max_len=16))


def _as_level(value: Level | str) -> Level:
    try:
        return Level(value)
    except ValueError:
        raise Malformed(f"unknown level {value!r}; expected one of "
                        f"{', '.join(level.value for level in Level)}") from None


def _division(fields: Fields, key: str) -> str | None:
    value = fields.optional_str(key, max_len=DIVISION_CODE_LEN)
    if value is not None and not (len(value) == DIVISION_CODE_LEN and value.isascii()
                                  and value.isdigit()):
        raise Malformed(f"division code must be 6 digits (GB/T 2260), got {value!r}")
    return value


def _decode_signed(data: bytes, domain_name: str, limits: Limits) -> tuple[Fields, bytes, bytes]:
    payload, signature = decode_envelope(data, limits, what=domain_name)
    return Fields(unpack(payload, limits, what=domain_name), domain_name), payload, signature


# --- certificates -------------------------------------------------------------

@dataclass(frozen=True)
class Certificate:
    subject: str
    name: str
    level: Level
    keys: PublicKeys
    issuer: str
    serial: int
    not_before: int  # ms since the epoch
    not_after: int
    division: str | None = None
    payload: bytes = b""
    signature: bytes = b""

    @property
    def fingerprint(self) -> str:
        return self.keys.fingerprint

    @property
    def is_self_issued(self) -> bool:
        return self.issuer == self.subject

    def encode(self) -> bytes:
        return encode_envelope(self.payload, self.signature)

    def to_wire(self) -> dict[str, Any]:
        return {"v": CERT_VERSION, "sub": self.subject, "name": self.name,
                "lvl": self.level.value, "div": self.division, "sk": self.keys.verify_key,
                "bk": self.keys.box_key, "iss": self.issuer, "ser": self.serial,
                "nb": self.not_before, "na": self.not_after}


def issue_certificate(issuer_keys: NodeKeys, *, issuer: str, subject: str, name: str,
                      level: Level, subject_keys: PublicKeys, serial: int, not_before: int,
                      not_after: int, division: str | None = None) -> Certificate:
    """Sign a certificate. Refuses to sign what a verifier would refuse."""
    if subject != issuer and not ids.is_child_of(subject, issuer):
        raise NameConstraint(f"{issuer} may only certify ids directly under it, not {subject}")
    if subject == issuer and ids.parent(subject) is not None:
        raise NameConstraint(f"only a root id may be self-certified, not {subject}")
    if not_after <= not_before:
        raise Malformed("certificate validity ends before it starts")
    unsigned = Certificate(subject, name, _as_level(level), subject_keys, issuer, serial,
                           not_before, not_after, division)
    payload = pack(unsigned.to_wire())
    certificate = replace(unsigned, payload=payload,
                          signature=issuer_keys.sign(Domain.CERTIFICATE, payload))
    decode_certificate(certificate.encode())  # field limits are the receiver's
    return certificate


def self_signed_root(keys: NodeKeys, *, subject: str, name: str, not_before: int,
                     not_after: int, serial: int = 1, division: str | None = None) -> Certificate:
    return issue_certificate(keys, issuer=subject, subject=subject, name=name,
                             level=Level.PROVINCE, subject_keys=keys.public, serial=serial,
                             not_before=not_before, not_after=not_after, division=division)


def decode_certificate(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Certificate:
    """Parse a certificate. Its signature is checked by ``validate_chain``, not here."""
    fields, payload, signature = _decode_signed(data, "certificate", limits)
    if fields.int("v") != CERT_VERSION:
        raise Malformed(f"certificate version is not {CERT_VERSION}")
    certificate = Certificate(
        subject=fields.node_id("sub"),
        name=fields.str("name", max_len=MAX_NAME, allow_empty=False),
        level=_level(fields, "lvl"),
        division=_division(fields, "div"),
        keys=PublicKeys(fields.bin("sk", size=32), fields.bin("bk", size=32)),
        issuer=fields.node_id("iss"),
        serial=fields.int("ser", min_value=1),
        not_before=fields.int("nb"),
        not_after=fields.int("na"),
        payload=payload,
        signature=signature,
    )
    fields.done()
    return certificate


def validate_chain(chain: Sequence[Certificate], *, trust_anchor: str, now_ms: int,
                   revocations: Iterable["Revocation"] = (),
                   verified: MutableSet[bytes] | None = None) -> Certificate:
    """Check a chain, root first; return its leaf or raise the first link's refusal.

    ``revocations`` must already be verified (``verify_revocation``). ``verified``, if
    given, remembers link signatures already checked (with the issuer key and the exact
payload they cover), so a
    caller validating the same chains over and over checks each signature once; every
    other rule is checked every time.
    """
    if not chain:
        raise UnknownRoot("empty certificate chain")
    revoked_up_to = revocation_index(revocations)
    root = chain[0]
    if root.fingerprint != trust_anchor:
        raise UnknownRoot(f"root {root.subject} (key {root.fingerprint[:16]}…) "
                          f"is not the pinned trust anchor")
    if not root.is_self_issued:
        raise WrongIssuer(f"root certificate for {root.subject} is not self-issued")
    if ids.parent(root.subject) is not None:
        raise NameConstraint(f"only a root id may be self-certified, not {root.subject}")
    issuer = root
    for position, link in enumerate(chain):
        _check_link(link, issuer, now_ms, revoked_up_to, is_root=position == 0,
                    verified=verified)
        issuer = link
    return chain[-1]


def _check_link(link: Certificate, issuer: Certificate, now_ms: int,
                revoked_up_to: dict[str, int], *, is_root: bool,
                verified: MutableSet[bytes] | None) -> None:
    if link.issuer != issuer.subject:
        raise WrongIssuer(f"certificate for {link.subject} names issuer {link.issuer}, "
                          f"but the chain's issuer is {issuer.subject}")
    if not is_root and not ids.is_child_of(link.subject, issuer.subject):
        raise NameConstraint(f"{issuer.subject} may not certify {link.subject}")
    seen = link.signature + issuer.keys.verify_key + link.payload  # all that was verified
    if verified is None or seen not in verified:
        verify_bytes(issuer.keys.verify_key, Domain.CERTIFICATE, link.payload, link.signature,
                     what=f"certificate for {link.subject}")
        if verified is not None:
            verified.add(seen)
    if now_ms < link.not_before:
        raise NotYetValid(f"certificate for {link.subject} is not valid before {link.not_before}")
    if now_ms >= link.not_after:
        raise ExpiredCert(f"certificate for {link.subject} expired at {link.not_after}")
    if link.serial <= revoked_up_to.get(link.subject, 0):
        raise Revoked(f"certificate {link.serial} of {link.subject} is revoked")


# --- revocations --------------------------------------------------------------

@dataclass(frozen=True)
class Revocation:
    subject: str
    up_to_serial: int
    signer: str
    reason: str
    revoked_at: int
    payload: bytes = b""
    signature: bytes = b""

    def encode(self) -> bytes:
        return encode_envelope(self.payload, self.signature)

    def to_wire(self) -> dict[str, Any]:
        return {"v": CERT_VERSION, "sub": self.subject, "upto": self.up_to_serial,
                "by": self.signer, "reason": self.reason, "at": self.revoked_at}


def revoke(signer_keys: NodeKeys, *, signer: str, subject: str, up_to_serial: int,
           reason: str, revoked_at: int) -> Revocation:
    _check_revoker(signer, subject)
    unsigned = Revocation(subject, up_to_serial, signer, reason, revoked_at)
    payload = pack(unsigned.to_wire())
    revocation = replace(unsigned, payload=payload,
                         signature=signer_keys.sign(Domain.REVOCATION, payload))
    decode_revocation(revocation.encode())
    return revocation


def decode_revocation(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Revocation:
    fields, payload, signature = _decode_signed(data, "revocation", limits)
    if fields.int("v") != CERT_VERSION:
        raise Malformed(f"revocation version is not {CERT_VERSION}")
    revocation = Revocation(
        subject=fields.node_id("sub"),
        up_to_serial=fields.int("upto", min_value=1),
        signer=fields.node_id("by"),
        reason=fields.str("reason", max_len=MAX_TEXT),
        revoked_at=fields.int("at"),
        payload=payload,
        signature=signature,
    )
    fields.done()
    _check_revoker(revocation.signer, revocation.subject)
    return revocation


def _check_revoker(signer: str, subject: str) -> None:
    if signer != subject and not ids.is_under(subject, signer):
        raise NameConstraint(f"{signer} may not revoke {subject}: only the node itself "
                             f"or one of its ancestors may")


def verify_revocation(revocation: Revocation, signer_certificate: Certificate) -> None:
    """Check the signature under the signer's (already validated) certificate.

    A node revoking itself may revoke only serials it holds, never its successors.
    """
    if signer_certificate.subject != revocation.signer:
        raise WrongIssuer(f"revocation is signed by {revocation.signer}, "
                          f"not {signer_certificate.subject}")
    if revocation.signer == revocation.subject and \
            revocation.up_to_serial > signer_certificate.serial:
        raise NameConstraint("a node may not revoke certificates newer than its own")
    verify_bytes(signer_certificate.keys.verify_key, Domain.REVOCATION, revocation.payload,
                 revocation.signature, what=f"revocation of {revocation.subject}")


def revocation_index(revocations: Iterable[Revocation]) -> dict[str, int]:
    """Highest revoked serial per subject."""
    index: dict[str, int] = {}
    for revocation in revocations:
        index[revocation.subject] = max(index.get(revocation.subject, 0),
                                        revocation.up_to_serial)
    return index


# --- enrollment requests ------------------------------------------------------

@dataclass(frozen=True)
class EnrollmentRequest:
    subject: str
    name: str
    level: Level
    keys: PublicKeys
    requested_at: int
    division: str | None = None
    payload: bytes = b""
    signature: bytes = b""

    @property
    def parent(self) -> str | None:
        return ids.parent(self.subject)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.keys.verify_key)

    def encode(self) -> bytes:
        return encode_envelope(self.payload, self.signature)

    def to_wire(self) -> dict[str, Any]:
        return {"v": CERT_VERSION, "sub": self.subject, "name": self.name,
                "lvl": self.level.value, "div": self.division, "sk": self.keys.verify_key,
                "bk": self.keys.box_key, "at": self.requested_at}


def make_enrollment_request(keys: NodeKeys, *, subject: str, name: str, level: Level,
                            requested_at: int, division: str | None = None) -> EnrollmentRequest:
    if ids.parent(subject) is None:
        raise NameConstraint(f"{subject} is a root id: roots are self-certified, not enrolled")
    unsigned = EnrollmentRequest(subject, name, _as_level(level), keys.public, requested_at, division)
    payload = pack(unsigned.to_wire())
    request = replace(unsigned, payload=payload, signature=keys.sign(Domain.ENROLLMENT, payload))
    decode_enrollment_request(request.encode())
    return request


def decode_enrollment_request(data: bytes, limits: Limits = DEFAULT_LIMITS) -> EnrollmentRequest:
    """Parse and check proof of possession: the request verifies under its own key."""
    fields, payload, signature = _decode_signed(data, "enrollment request", limits)
    if fields.int("v") != CERT_VERSION:
        raise Malformed(f"enrollment request version is not {CERT_VERSION}")
    request = EnrollmentRequest(
        subject=fields.node_id("sub"),
        name=fields.str("name", max_len=MAX_NAME, allow_empty=False),
        level=_level(fields, "lvl"),
        division=_division(fields, "div"),
        keys=PublicKeys(fields.bin("sk", size=32), fields.bin("bk", size=32)),
        requested_at=fields.int("at"),
        payload=payload,
        signature=signature,
    )
    fields.done()
    if request.parent is None:
        raise NameConstraint(f"{request.subject} is a root id and cannot enroll")
    verify_bytes(request.keys.verify_key, Domain.ENROLLMENT, payload, signature,
                 what=f"enrollment request of {request.subject}")
    return request


def certify_request(issuer_keys: NodeKeys, *, issuer: str, request: EnrollmentRequest,
                    serial: int, not_before: int, not_after: int) -> Certificate:
    """Approve an enrollment request: the parent signs the child's certificate."""
    if request.parent != issuer:
        raise NameConstraint(f"{request.subject} must enroll with {request.parent}, not {issuer}")
    return issue_certificate(issuer_keys, issuer=issuer, subject=request.subject,
                             name=request.name, level=request.level, subject_keys=request.keys,
                             serial=serial, not_before=not_before, not_after=not_after,
                             division=request.division)


__all__ = ["Level", "Certificate", "issue_certificate", "self_signed_root", "decode_certificate",
           "validate_chain", "Revocation", "revoke", "decode_revocation", "verify_revocation",
           "revocation_index", "EnrollmentRequest", "make_enrollment_request",
           "decode_enrollment_request", "certify_request"]
