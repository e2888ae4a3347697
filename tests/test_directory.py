"""Tests for protocol.directory: records, how they are built and how they are read.

The federation is built as in tests/test_certs.py (province ``gd`` > city
``gd.chaozhou`` > county ``gd.chaozhou.raoping``, by enrollment), and ``chain_for``
is what the node's directory store will provide: the current chain of a subject,
root first, raising ``UnknownOrigin`` when a link is missing. This file holds that
federation and the sample records the other directory tests import, and covers
records of every kind (keys, sequence numbers, round trips) and the refusal of
malformed ones; verification is in tests/test_directory_verify.py, the merge rule,
digests and reconciliation in tests/test_directory_sync.py.
"""

from __future__ import annotations

import hashlib

import pytest

from protocol import ids
from protocol.certs import (Certificate, Level, Revocation, certify_request,
                            decode_enrollment_request, make_enrollment_request, revoke,
                            self_signed_root)
from protocol.directory import (EndpointAnnouncement, Record, RecordKind, StatusBeacon,
                                decode_record, sign_record, verify_record)
from protocol.errors import (Malformed, NameConstraint, ProtocolError, TooLarge, UnknownOrigin,
                             UnknownType)
from protocol.keys import NodeKeys
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack

# --- the federation ------------------------------------------------------------

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, ms
DAY = 24 * 3600 * 1000
YEAR = 365 * DAY

ROOT_KEYS = NodeKeys.from_seed(b"test-directory gd")
CITY_KEYS = NodeKeys.from_seed(b"test-directory gd.chaozhou")
COUNTY_KEYS = NodeKeys.from_seed(b"test-directory gd.chaozhou.raoping")
COUNTY_KEYS_2 = NodeKeys.from_seed(b"test-directory gd.chaozhou.raoping rekey")
OTHER_KEYS = NodeKeys.from_seed(b"test-directory stranger")

ROOT, CITY, COUNTY = "gd", "gd.chaozhou", "gd.chaozhou.raoping"
ANCHOR = ROOT_KEYS.fingerprint


def enroll(parent_keys: NodeKeys, parent: str, child_keys: NodeKeys, *, subject: str, name: str,
           level: Level, division: str, serial: int = 1, not_after: int = NOW + YEAR) -> Certificate:
    sent = make_enrollment_request(child_keys, subject=subject, name=name, level=level,
                                   requested_at=NOW - DAY, division=division).encode()
    return certify_request(parent_keys, issuer=parent, request=decode_enrollment_request(sent),
                           serial=serial, not_before=NOW - DAY, not_after=not_after)


ROOT_CERT = self_signed_root(ROOT_KEYS, subject=ROOT, name="广东省人民政府办公厅",
                             not_before=NOW - DAY, not_after=NOW + 10 * YEAR, division="440000")
CITY_CERT = enroll(ROOT_KEYS, ROOT, CITY_KEYS, subject=CITY, name="潮州市人民政府办公室",
                   level=Level.CITY, division="445100")
COUNTY_CERT = enroll(CITY_KEYS, CITY, COUNTY_KEYS, subject=COUNTY, name="饶平县人民政府办公室",
                     level=Level.COUNTY, division="445122", not_after=NOW + YEAR // 2)


def chain_lookup(*certificates: Certificate):
    """A ``chain_for`` over a set of current certificates, as the directory store provides."""
    by_subject = {certificate.subject: certificate for certificate in certificates}

    def chain_for(subject: str) -> list[Certificate]:
        chain, node = [], subject
        while node is not None:
            if node not in by_subject:
                raise UnknownOrigin(f"no current certificate for {node}")
            chain.append(by_subject[node])
            node = ids.parent(node)
        return chain[::-1]

    return chain_for


LOOKUP = chain_lookup(ROOT_CERT, CITY_CERT, COUNTY_CERT)


def verify(record: Record, *, now: int = NOW, revocations=(), lookup=LOOKUP) -> None:
    verify_record(record, chain_for=lookup, trust_anchor=ANCHOR, now_ms=now,
                  revocations=revocations)


def expect(error_class: type[ProtocolError], call, *args, **kwargs) -> ProtocolError:
    """Run ``call`` and check it refuses with exactly ``error_class`` and its code."""
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is error_class, f"{type(caught.value).__name__}: {caught.value}"
    assert caught.value.code == error_class.code
    return caught.value


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


def endpoint(subject: str = COUNTY, seq: int = 1, urls: tuple[str, ...] = ("https://raoping.example:8443",),
             keys: NodeKeys = COUNTY_KEYS, at: int = NOW) -> Record:
    return sign_record(keys, EndpointAnnouncement(subject, seq, urls, at))


def beacon(subject: str = COUNTY, seq: int = 1, keys: NodeKeys = COUNTY_KEYS, **changes) -> StatusBeacon:
    fields = dict(subject=subject, seq=seq, at=NOW, version="0.1.0", uptime_s=86_400,
                  queue_depths={CITY: 3}, last_contact={CITY: NOW - 5_000},
                  directory_root="ab" * 16, disk_free=12 * 2**30, stats={"sent": 42, "received": 40})
    fields.update(changes)
    return StatusBeacon(**fields)


def status(subject: str = COUNTY, seq: int = 1, keys: NodeKeys = COUNTY_KEYS, **changes) -> Record:
    return sign_record(keys, beacon(subject, seq, **changes))


def revocation(keys: NodeKeys = CITY_KEYS, signer: str = CITY, subject: str = COUNTY,
               up_to: int = 1, reason: str = "密钥泄露") -> Revocation:
    return revoke(keys, signer=signer, subject=subject, up_to_serial=up_to, reason=reason,
                  revoked_at=NOW)


def raw_record(kind: str, keys: NodeKeys, wire: dict) -> bytes:
    """A subject-signed record from hand-made wire fields, bypassing ``sign_record``."""
    payload = pack(wire)
    return pack([kind, encode_envelope(payload, keys.sign(Domain.RECORD, payload))])


ENDPOINT = endpoint()
STATUS = status()
BY_CITY = revocation()
BY_ROOT = revocation(ROOT_KEYS, ROOT)
BY_SELF = revocation(COUNTY_KEYS, COUNTY)

VALID_RECORDS = {
    "cert.root": Record.of(ROOT_CERT),
    "cert.city": Record.of(CITY_CERT),
    "cert.county": Record.of(COUNTY_CERT),
    "revocation.by_parent": Record.of(BY_CITY),
    "revocation.by_root": Record.of(BY_ROOT),
    "revocation.by_self": Record.of(BY_SELF),
    "endpoint": ENDPOINT,
    "status": STATUS,
}


# --- records: construction, keys, sequence numbers, round trips ---------------------

@pytest.mark.parametrize("certificate", [ROOT_CERT, CITY_CERT, COUNTY_CERT], ids=lambda c: c.subject)
def test_cert_record(certificate):
    record = Record.of(certificate)
    assert record.kind is RecordKind.CERT
    assert record.key == ("cert", certificate.subject)
    assert record.subject == certificate.subject
    assert record.seq == certificate.serial
    assert record.content == certificate
    assert record.data == certificate.encode()
    assert record.hash == hashlib.sha256(certificate.encode()).digest()


def test_cert_record_sequence_is_the_serial():
    rekeyed = enroll(CITY_KEYS, CITY, COUNTY_KEYS_2, subject=COUNTY, name="饶平县人民政府办公室",
                     level=Level.COUNTY, division="445122", serial=7)
    assert Record.of(rekeyed).seq == 7
    assert Record.of(rekeyed).key == Record.of(COUNTY_CERT).key


def test_revocation_record_sequence_is_up_to_serial():
    record = Record.of(revocation(up_to=3))
    assert record.kind is RecordKind.REVOCATION
    assert record.key == ("revocation", COUNTY)
    assert record.seq == 3
    assert record.content.up_to_serial == 3 and record.content.signer == CITY


def test_endpoint_record():
    announcement = EndpointAnnouncement(COUNTY, 5, ("https://raoping.example:8443",
                                                    "http://10.44.51.22:8080"), NOW)
    record = sign_record(COUNTY_KEYS, announcement)
    assert record.kind is RecordKind.ENDPOINT
    assert record.key == ("endpoint", COUNTY)
    assert record.seq == 5
    assert record.content == announcement
    assert record.hash == hashlib.sha256(record.data).digest()


def test_status_record():
    content = beacon(seq=9)
    record = sign_record(COUNTY_KEYS, content)
    assert record.kind is RecordKind.STATUS
    assert record.key == ("status", COUNTY)
    assert record.seq == 9
    assert record.content == content
    assert record.content.queue_depths == {CITY: 3}


@pytest.mark.parametrize("name", sorted(VALID_RECORDS))
def test_every_kind_round_trips_through_its_wire_form(name):
    record = VALID_RECORDS[name]
    again = decode_record(record.encode())
    assert again == record
    assert (again.kind, again.key, again.seq, again.hash, again.data) == (
        record.kind, record.key, record.seq, record.hash, record.data)
    assert Record.from_bytes(record.kind.value, record.data) == record


def test_records_of_different_kinds_have_different_keys():
    assert len({record.key for record in (Record.of(COUNTY_CERT), Record.of(BY_CITY),
                                          ENDPOINT, STATUS)}) == 4


# --- refusing malformed records ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["bogus", "certificate", "CERT", "", "cert "])
def test_unknown_record_kind_is_unknown_type(kind):
    expect(UnknownType, decode_record, pack([kind, ENDPOINT.data]))
    expect(UnknownType, Record.from_bytes, kind, ENDPOINT.data)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x92", pack("cert"), pack(["cert"]), pack(["cert", "text"]),
    pack([b"cert", COUNTY_CERT.encode()]), pack(["cert", COUNTY_CERT.encode(), 1]),
    pack({"cert": COUNTY_CERT.encode()}), pack(["cert", b"garbage"]), pack(["endpoint", b""]),
    pack(["status", pack([b"x", b"y"])]),
], ids=range(12))
def test_garbage_record_is_malformed(data):
    expect(Malformed, decode_record, data)


def test_oversized_record_is_too_large():
    expect(TooLarge, decode_record, pack(["endpoint", bytes(70_000)]))


@pytest.mark.parametrize("kind, record", [
    ("revocation", Record.of(COUNTY_CERT)),  # a certificate labelled as a revocation
    ("cert", Record.of(BY_CITY)),
    ("endpoint", Record.of(COUNTY_CERT)),
    ("status", ENDPOINT),  # the kind inside the signed payload says endpoint
    ("endpoint", STATUS),
], ids=["cert-as-revocation", "revocation-as-cert", "cert-as-endpoint", "endpoint-as-status",
        "status-as-endpoint"])
def test_record_under_the_wrong_kind_is_malformed(kind, record):
    expect(Malformed, decode_record, pack([kind, record.data]))


@pytest.mark.parametrize("urls", [
    ("ftp://raoping.example",), ("raoping.example:8443",), ("",), ("https://" + "x" * 600,),
    tuple(f"https://n{i}.example" for i in range(9)),
], ids=["ftp", "no-scheme", "empty", "too-long", "nine"])
def test_bad_endpoint_urls_are_malformed(urls):
    expect(Malformed, endpoint, urls=urls)


def test_endpoint_with_eight_urls_and_with_none_are_accepted():
    eight = tuple(f"https://n{i}.example" for i in range(8))
    assert endpoint(urls=eight).content.urls == eight
    assert endpoint(urls=()).content.urls == ()


@pytest.mark.parametrize("changes", [
    {"queue_depths": {CITY: -1}}, {"stats": {"sent": True}}, {"last_contact": {CITY: "x"}},
    {"directory_root": "ab" * 40}, {"version": "v" * 65}, {"seq": 0},
], ids=["negative", "bool", "str-value", "long-dir", "long-version", "seq-0"])
def test_bad_status_fields_are_malformed(changes):
    expect(Malformed, status, **changes)


def test_status_count_map_with_a_binary_key_is_malformed():
    wire = beacon().to_wire()
    wire["queues"] = {b"gd.chaozhou": 3}
    expect(Malformed, decode_record, raw_record("status", COUNTY_KEYS, wire))


def test_subject_signed_record_with_unknown_field_or_version_is_malformed():
    for change in ({"extra": 1}, {"v": 2}):
        wire = ENDPOINT.content.to_wire()
        wire.update(change)
        expect(Malformed, decode_record, raw_record("endpoint", COUNTY_KEYS, wire))
    wire = ENDPOINT.content.to_wire()
    del wire["at"]
    expect(Malformed, decode_record, raw_record("endpoint", COUNTY_KEYS, wire))


def test_revocation_record_from_a_sibling_is_refused_on_decoding():
    wire = {"v": 1, "sub": COUNTY, "upto": 1, "by": "gd.shantou", "reason": "越权", "at": NOW}
    payload = pack(wire)
    data = encode_envelope(payload, OTHER_KEYS.sign(Domain.REVOCATION, payload))
    expect(NameConstraint, decode_record, pack(["revocation", data]))
