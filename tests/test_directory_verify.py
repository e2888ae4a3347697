"""Tests for protocol.directory's ``verify_record``: a record is accepted only when
its signer's current chain is good. Records of every valid kind verify; a wrong
signer, a flipped signature, an unknown subject or issuer, a forged certificate
outside the name constraint, a foreign root, an expired or revoked node (or parent)
each refuse with their own code, and any flipped byte of any record fails with a
typed error. The federation and sample records are those of tests/test_directory.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import Level, issue_certificate, self_signed_root, verify_revocation
from protocol.directory import Record, decode_record
from protocol.errors import (BadSignature, ExpiredCert, NameConstraint, ProtocolError, Revoked,
                             UnknownOrigin, UnknownRoot)
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack
from test_directory import (BY_CITY, BY_ROOT, BY_SELF, CITY, CITY_CERT, CITY_KEYS, COUNTY,
                            COUNTY_CERT, COUNTY_KEYS, COUNTY_KEYS_2, DAY, ENDPOINT, LOOKUP, NOW,
                            OTHER_KEYS, ROOT, ROOT_CERT, ROOT_KEYS, STATUS, VALID_RECORDS,
                            YEAR, chain_lookup, endpoint, enroll, expect, flip, revocation,
                            status, verify)

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
