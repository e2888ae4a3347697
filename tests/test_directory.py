"""Tests for protocol.directory: records, verification, the merge rule and digests.

The federation is built as in tests/test_certs.py (province ``gd`` > city
``gd.chaozhou`` > county ``gd.chaozhou.raoping``, by enrollment), and ``chain_for``
is what the node's directory store will provide: the current chain of a subject,
root first, raising ``UnknownOrigin`` when a link is missing.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import ids
from protocol.certs import (Certificate, Level, Revocation, certify_request,
                            decode_enrollment_request, issue_certificate,
                            make_enrollment_request, revoke, self_signed_root, verify_revocation)
from protocol.directory import (BUCKET_HASH_BYTES, BUCKETS, DIGEST_KINDS, Digest,
                                EndpointAnnouncement, MergeDecision, Outcome, Record, RecordKind, StatusBeacon,
                                SummaryEntry, bucket_of, decode_record, differing_buckets,
                                digest_of, merge, reconcile, sign_record, verify_record)
from protocol.errors import (BadSignature, ExpiredCert, Malformed, NameConstraint, ProtocolError,
                             Revoked, TooLarge, UnknownOrigin, UnknownRoot, UnknownType)
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


# --- verify_record ---------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VALID_RECORDS))
def test_valid_records_verify(name):
    verify(VALID_RECORDS[name])


def test_endpoint_signed_by_someone_else_is_bad_signature():
    by_city = endpoint(keys=CITY_KEYS)  # claims to be the county's, signed by its parent
    expect(BadSignature, verify, by_city)
    expect(BadSignature, verify, status(keys=OTHER_KEYS))


def test_record_with_flipped_signature_is_bad_signature():
    # The envelope ends with the signature: flip its last byte.
    tampered = Record.from_bytes("endpoint", flip(ENDPOINT.data, len(ENDPOINT.data) - 1))
    expect(BadSignature, verify, tampered)


def test_record_of_an_unknown_subject_is_unknown_origin():
    stranger = "gd.chaozhou.huanggang"
    expect(UnknownOrigin, verify, endpoint(subject=stranger, keys=OTHER_KEYS))
    expect(UnknownOrigin, verify, status(subject=stranger, keys=OTHER_KEYS))
    # A certificate whose issuer the directory does not know yet.
    orphan = issue_certificate(OTHER_KEYS, issuer="gd.meizhou", subject="gd.meizhou.xingning",
                               name="兴宁市人民政府办公室", level=Level.COUNTY,
                               subject_keys=OTHER_KEYS.public, serial=1, not_before=NOW - DAY,
                               not_after=NOW + YEAR)
    expect(UnknownOrigin, verify, Record.of(orphan))
    # A revocation by a signer the directory does not know.
    expect(UnknownOrigin, verify, Record.of(revocation(OTHER_KEYS, "gd.meizhou",
                                                       subject="gd.meizhou.xingning")))


def test_cert_record_outside_the_name_constraint_is_refused():
    # gd certifies the county directly, skipping the city: forged, since issuing refuses.
    wire = {"v": 1, "sub": COUNTY, "name": "饶平县人民政府办公室", "lvl": "county", "div": "445122",
            "sk": COUNTY_KEYS.public.verify_key, "bk": COUNTY_KEYS.public.box_key, "iss": ROOT,
            "ser": 2, "nb": NOW - DAY, "na": NOW + YEAR}
    payload = pack(wire)
    forged = Record.from_bytes("cert", encode_envelope(payload, ROOT_KEYS.sign(Domain.CERTIFICATE, payload)))
    expect(NameConstraint, verify, forged)


def test_cert_record_of_a_foreign_root_is_unknown_root():
    impostor = self_signed_root(OTHER_KEYS, subject=ROOT, name="广东省人民政府办公厅",
                                not_before=NOW - DAY, not_after=NOW + YEAR)
    expect(UnknownRoot, verify, Record.of(impostor))


def test_expired_certificate_refuses_its_records():
    late = COUNTY_CERT.not_after
    expect(ExpiredCert, verify, Record.of(COUNTY_CERT), now=late)
    expect(ExpiredCert, verify, ENDPOINT, now=late)
    expect(ExpiredCert, verify, STATUS, now=late)
    # The city is still valid then, and so are its records.
    verify(Record.of(CITY_CERT), now=late)
    verify(endpoint(subject=CITY, keys=CITY_KEYS), now=late)


def test_expired_parent_refuses_the_childs_records():
    old_city = enroll(ROOT_KEYS, ROOT, CITY_KEYS, subject=CITY, name="潮州市人民政府办公室",
                      level=Level.CITY, division="445100", not_after=NOW)
    lookup = chain_lookup(ROOT_CERT, old_city, COUNTY_CERT)
    expect(ExpiredCert, verify, ENDPOINT, lookup=lookup)
    expect(ExpiredCert, verify, Record.of(COUNTY_CERT), lookup=lookup)


@pytest.mark.parametrize("by", [BY_CITY, BY_ROOT, BY_SELF], ids=["parent", "root", "self"])
def test_revoked_node_has_its_beacon_endpoint_and_cert_refused(by):
    verify_revocation(by, LOOKUP(by.signer)[-1])
    expect(Revoked, verify, STATUS, revocations=[by])
    expect(Revoked, verify, ENDPOINT, revocations=[by])
    expect(Revoked, verify, Record.of(COUNTY_CERT), revocations=[by])
    # Without the revocation the same records verify: the revocation is what refuses them.
    verify(STATUS)


def test_revoked_parent_refuses_the_childs_beacon():
    by_root = revocation(ROOT_KEYS, ROOT, subject=CITY)
    error = expect(Revoked, verify, STATUS, revocations=[by_root])
    assert CITY in error.detail


def test_revoked_node_may_still_revoke_itself():
    # A revocation only removes trust: the signer's chain is checked without revocations.
    verify(Record.of(BY_SELF), revocations=[BY_CITY])


def test_rekeyed_node_records_verify_under_the_new_key_only():
    rekeyed = enroll(CITY_KEYS, CITY, COUNTY_KEYS_2, subject=COUNTY, name="饶平县人民政府办公室",
                     level=Level.COUNTY, division="445122", serial=2)
    lookup = chain_lookup(ROOT_CERT, CITY_CERT, rekeyed)
    verify(Record.of(rekeyed), lookup=lookup, revocations=[BY_CITY])
    verify(endpoint(seq=2, keys=COUNTY_KEYS_2), lookup=lookup, revocations=[BY_CITY])
    expect(BadSignature, verify, endpoint(seq=2, keys=COUNTY_KEYS), lookup=lookup,
           revocations=[BY_CITY])


def test_self_revocation_of_newer_serials_is_refused():
    expect(NameConstraint, verify, Record.of(revocation(COUNTY_KEYS, COUNTY, up_to=2)))


def test_revocation_record_signed_with_the_wrong_key_is_bad_signature():
    impostor = revocation(OTHER_KEYS, CITY)
    expect(BadSignature, verify, Record.of(impostor))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_of_any_record_fails_with_a_typed_error(data):
    name = data.draw(st.sampled_from(sorted(VALID_RECORDS)), label="record")
    encoded = VALID_RECORDS[name].encode()
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(ProtocolError):
        verify(decode_record(flip(encoded, position, mask)))


# --- merge rule ---------------------------------------------------------------------------

def test_first_record_for_a_key_is_new():
    decision = merge(None, ENDPOINT)
    assert decision == MergeDecision(Outcome.NEW, ENDPOINT, None)


def test_higher_sequence_replaces_and_lower_is_stale():
    first, second = endpoint(seq=1), endpoint(seq=2, urls=("https://new.example",))
    assert merge(first, second) == MergeDecision(Outcome.NEW, second)
    assert merge(second, first) == MergeDecision(Outcome.STALE, second)


def test_same_bytes_are_a_duplicate():
    again = decode_record(ENDPOINT.encode())
    assert again is not ENDPOINT
    assert merge(ENDPOINT, again) == MergeDecision(Outcome.DUPLICATE, ENDPOINT)


def test_equivocation_keeps_the_lower_hash_whatever_the_order():
    a = endpoint(seq=3, urls=("https://a.example",))
    b = endpoint(seq=3, urls=("https://b.example",))
    winner, loser = (a, b) if a.hash < b.hash else (b, a)
    for current, incoming in ((a, b), (b, a)):
        decision = merge(current, incoming)
        assert decision.outcome is Outcome.EQUIVOCATION
        assert decision.current is winner
        assert decision.evidence is loser
    # The evidence arriving again changes nothing; the winner again is a duplicate.
    assert merge(winner, loser).current is winner
    assert merge(winner, winner).outcome is Outcome.DUPLICATE


def test_equivocating_certificates_with_the_same_serial():
    other = enroll(CITY_KEYS, CITY, COUNTY_KEYS_2, subject=COUNTY, name="饶平县人民政府办公室",
                   level=Level.COUNTY, division="445122", serial=1)
    a, b = Record.of(COUNTY_CERT), Record.of(other)
    assert merge(a, b).outcome is Outcome.EQUIVOCATION
    assert merge(a, b).current == merge(b, a).current == min((a, b), key=lambda r: r.hash)
    assert {merge(a, b).evidence.hash, merge(a, b).current.hash} == {a.hash, b.hash}


# A pool of records for one key: three sequence numbers, three different records each.
MERGE_POOL = [endpoint(seq=seq, urls=(f"https://v{variant}.example",), at=NOW + variant)
              for seq in (1, 2, 3) for variant in range(3)]


def fold(records) -> Record | None:
    current = None
    for record in records:
        current = merge(current, record).current
    return current


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(MERGE_POOL), min_size=1, max_size=12).flatmap(
    lambda chosen: st.tuples(st.just(chosen), st.permutations(chosen))))
def test_merging_in_any_order_ends_with_the_same_current_record(orders):
    chosen, shuffled = orders
    top = max(record.seq for record in chosen)
    expected = min((record for record in chosen if record.seq == top), key=lambda r: r.hash)
    assert fold(chosen) is expected
    assert fold(shuffled) is expected


# --- digests ------------------------------------------------------------------------------

def test_bucket_of_follows_the_spec():
    for kind, subject in (("cert", ROOT), ("endpoint", COUNTY), ("status", "gd.x")):
        key_hash = hashlib.sha256(kind.encode() + b"\x00" + subject.encode()).digest()
        assert bucket_of(kind, subject) == int.from_bytes(key_hash[:4], "big") % 256


def test_digest_buckets_and_root_follow_the_spec():
    records = list(VALID_RECORDS.values())[:3] + [ENDPOINT]
    digest = digest_of(records + [STATUS])
    expected = [0] * BUCKETS
    for record in records:  # status beacons are not in the digest
        expected[bucket_of(*record.key)] ^= int.from_bytes(record.hash[:8], "big")
    assert digest.buckets == tuple(expected)
    assert digest == digest_of(records)
    assert digest.root == hashlib.sha256(digest.encode_buckets()).digest()[:16]
    assert len(digest.root) == 16


def test_empty_digest_is_all_zero():
    digest = digest_of([])
    assert digest.encode_buckets() == bytes(BUCKETS * BUCKET_HASH_BYTES)
    assert digest == Digest((0,) * BUCKETS)


# Records for many keys, several sequences and variants each, for the digest properties.
SUBJECTS = [ROOT, CITY, COUNTY, "gd.shantou", "gd.finance", "gd.chaozhou.chao-an",
            "gd.chaozhou.xiangqiao", "gd.shantou.nanao"]
POOL = [sign_record(OTHER_KEYS, EndpointAnnouncement(subject, seq, (f"https://v{variant}.example",), NOW))
        for subject in SUBJECTS for seq in (1, 2, 3) for variant in range(2)] + \
       [sign_record(OTHER_KEYS, beacon(subject, seq, uptime_s=variant))
        for subject in SUBJECTS[:4] for seq in (1, 2) for variant in range(2)]


def store_of(records) -> dict[tuple[str, str], Record]:
    store: dict[tuple[str, str], Record] = {}
    for record in records:
        store[record.key] = merge(store.get(record.key), record).current
    return store


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=40, unique_by=lambda r: r.key).flatmap(
    lambda chosen: st.tuples(st.just(chosen), st.permutations(chosen))))
def test_digest_is_independent_of_insertion_order(orders):
    chosen, shuffled = orders
    assert digest_of(chosen) == digest_of(shuffled)
    assert digest_of(chosen).root == digest_of(shuffled).root


def test_digest_size_does_not_grow_with_the_directory():
    many = [endpoint(subject=f"gd.n{i}", keys=OTHER_KEYS) for i in range(500)]
    one, lots = digest_of(many[:1]), digest_of(many)
    assert len(one.encode_buckets()) == len(lots.encode_buckets()) == BUCKETS * BUCKET_HASH_BYTES == 2048
    assert len(one.root) == len(lots.root) == 16
    assert one != lots
    assert len(differing_buckets(one, lots)) > 200  # 500 keys touch most of the 256 buckets


@pytest.mark.parametrize("records", [[], [ENDPOINT], list(POOL)], ids=["empty", "one", "pool"])
def test_decode_buckets_round_trips(records):
    digest = digest_of(store_of(records).values())
    again = Digest.decode_buckets(digest.encode_buckets())
    assert again == digest
    assert again.root == digest.root


@pytest.mark.parametrize("data", [b"", bytes(2047), bytes(2049), bytes(8), bytes(4096),
                                  bytearray(2048), "0" * 2048, None],
                         ids=["empty", "2047", "2049", "8", "4096", "bytearray", "str", "none"])
def test_decode_buckets_refuses_anything_but_2048_bytes(data):
    expect(Malformed, Digest.decode_buckets, data)


def test_differing_buckets_finds_exactly_the_bucket_of_a_changed_record():
    store = store_of(record for record in POOL if record.seq == 1)
    before = digest_of(store.values())
    changed = store_of([*store.values(), endpoint(subject="gd.finance", seq=2, keys=OTHER_KEYS)])
    after = digest_of(changed.values())
    assert differing_buckets(before, after) == (bucket_of("endpoint", "gd.finance"),)
    assert differing_buckets(after, before) == (bucket_of("endpoint", "gd.finance"),)
    assert differing_buckets(before, before) == ()
    assert before.root != after.root


def test_in_sync_nodes_compare_equal_roots():
    a = digest_of(store_of(POOL).values())
    b = digest_of(store_of(reversed(POOL)).values())
    assert a.root == b.root and differing_buckets(a, b) == ()


# --- reconcile --------------------------------------------------------------------------

def summary(*records: Record) -> list[SummaryEntry]:
    return [SummaryEntry.of(record) for record in records]


def test_summary_entry_carries_the_record_identity():
    entry = SummaryEntry.of(STATUS)
    # Summaries carry the first 8 bytes of the record hash: enough to tell versions
    # apart, and a bucket's summary stays small on the wire.
    assert (entry.kind, entry.subject, entry.seq, entry.hash, entry.key) == (
        "status", COUNTY, 1, STATUS.hash[:8], STATUS.key)


def test_reconcile_sends_what_they_lack_or_have_older_and_fetches_the_reverse():
    same = endpoint(subject=ROOT, keys=OTHER_KEYS)
    mine_newer, theirs_older = endpoint(subject=CITY, seq=2, keys=OTHER_KEYS), endpoint(subject=CITY, keys=OTHER_KEYS)
    only_mine = status(subject=CITY, keys=OTHER_KEYS)
    only_theirs = status(subject=ROOT, keys=OTHER_KEYS)
    mine_older, theirs_newer = endpoint(keys=OTHER_KEYS), endpoint(seq=5, keys=OTHER_KEYS)
    to_send, to_fetch = reconcile(summary(same, mine_newer, only_mine, mine_older),
                                  summary(same, theirs_older, only_theirs, theirs_newer))
    assert to_send == {("endpoint", CITY), ("status", CITY)}
    assert to_fetch == {("status", ROOT), ("endpoint", COUNTY)}


def test_reconcile_equivocation_goes_both_ways():
    a = endpoint(seq=3, urls=("https://a.example",))
    b = endpoint(seq=3, urls=("https://b.example",))
    to_send, to_fetch = reconcile(summary(a), summary(b))
    assert to_send == to_fetch == {("endpoint", COUNTY)}
    # After both merge what they received, both hold the same winner.
    assert merge(a, b).current == merge(b, a).current


def test_reconcile_of_identical_or_empty_summaries_is_empty():
    assert reconcile(summary(ENDPOINT, STATUS), summary(STATUS, ENDPOINT)) == (set(), set())
    assert reconcile([], []) == (set(), set())


def _two_subjects_in_one_bucket() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(10_000):
        subject = f"gd.n{i}"
        bucket = bucket_of("endpoint", subject)
        if bucket in seen:
            return seen[bucket], subject
        seen[bucket] = subject
    raise AssertionError("no bucket collision found")


def test_reconcile_within_a_shared_bucket_sends_only_the_differing_record():
    first, second = _two_subjects_in_one_bucket()
    shared = endpoint(subject=first, keys=OTHER_KEYS)
    mine = [shared, endpoint(subject=second, seq=2, keys=OTHER_KEYS)]
    theirs = [shared, endpoint(subject=second, seq=1, keys=OTHER_KEYS)]
    assert differing_buckets(digest_of(mine), digest_of(theirs)) == (bucket_of("endpoint", first),)
    assert reconcile(summary(*mine), summary(*theirs)) == ({("endpoint", second)}, set())


def anti_entropy_round(a: dict, b: dict) -> tuple[set, set]:
    """One push-pull exchange as the protocol describes it; both stores updated in place."""
    buckets = set(differing_buckets(digest_of(a.values()), digest_of(b.values())))
    to_send, to_fetch = reconcile(
        [SummaryEntry.of(r) for r in a.values() if bucket_of(*r.key) in buckets],
        [SummaryEntry.of(r) for r in b.values() if bucket_of(*r.key) in buckets])
    outgoing, incoming = [a[key] for key in to_send], [b[key] for key in to_fetch]
    for record in outgoing:
        b[record.key] = merge(b.get(record.key), record).current
    for record in incoming:
        a[record.key] = merge(a.get(record.key), record).current
    return to_send, to_fetch


DIGEST_POOL = [record for record in POOL if record.kind in DIGEST_KINDS]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(DIGEST_POOL), max_size=30),
       st.lists(st.sampled_from(DIGEST_POOL), max_size=30))
def test_after_one_anti_entropy_round_both_sides_are_in_sync(mine, theirs):
    a, b = store_of(mine), store_of(theirs)
    before_a, before_b = dict(a), dict(b)
    to_send, to_fetch = anti_entropy_round(a, b)
    assert digest_of(a.values()) == digest_of(b.values())
    assert a == b
    # Only records that actually differed travelled.
    assert all(before_b.get(key) != before_a[key] for key in to_send)
    assert all(before_a.get(key) != before_b[key] for key in to_fetch)
    # Each side ends with the merge-rule winner of everything either side had.
    assert a == store_of([*before_a.values(), *before_b.values()])
    # A second round finds nothing to do.
    assert anti_entropy_round(a, b) == (set(), set())
