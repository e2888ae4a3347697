"""Tests for protocol.certs: how long a certificate is good for, and its revocation.

Validity windows (inclusive start, exclusive end) for the leaf, a middle link and the
root; revocations by the subject itself or an ancestor, their scope (``up_to_serial``,
re-keying past it), who may sign one, their byte form and their tampering; and the
order in which a chain's checks report (signature, then validity, then revocation).
The federation and helpers are those of tests/test_certs.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import (Level, decode_certificate, decode_revocation, issue_certificate,
                            revocation_index, revoke, verify_revocation)
from protocol.errors import (BadSignature, ExpiredCert, Malformed, NameConstraint, NotYetValid,
                             ProtocolError, Revoked, WrongIssuer)
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack
from test_certs import (CITY, CITY_KEYS, COUNTY, COUNTY_KEYS, COUNTY_KEYS_2, DAY, FED, NOW,
                        OTHER_ROOT_KEYS, ROOT, ROOT_KEYS, SIBLING, SIBLING_KEYS, YEAR, enroll,
                        expect, flip, revocation_by, sign_raw, validate)

# --- validity ----------------------------------------------------------------------

def test_expired_leaf():
    error = expect(ExpiredCert, validate, FED.chain, now=FED.county.not_after + 1)
    assert COUNTY in error.detail
    # The city and root are still valid then: the leaf is the one reported.
    assert validate(FED.chain[:2], now=FED.county.not_after + 1) is FED.city


def test_leaf_not_yet_valid():
    _, future = enroll(CITY_KEYS, CITY, COUNTY_KEYS, subject=COUNTY, name="饶平县人民政府办公室",
                       level=Level.COUNTY, division="445122", not_before=NOW + DAY,
                       not_after=NOW + YEAR)
    error = expect(NotYetValid, validate, [FED.root, FED.city, future])
    assert COUNTY in error.detail
    assert validate([FED.root, FED.city, future], now=NOW + DAY) is future


def test_expired_middle_link_breaks_the_chain_below_it():
    _, old_city = enroll(ROOT_KEYS, ROOT, CITY_KEYS, subject=CITY, name="潮州市人民政府办公室",
                         level=Level.CITY, division="445100", not_before=NOW - 2 * YEAR,
                         not_after=NOW - 1)
    error = expect(ExpiredCert, validate, [FED.root, old_city, FED.county])
    assert CITY in error.detail and COUNTY not in error.detail


def test_middle_link_not_yet_valid_breaks_the_chain_below_it():
    _, early_city = enroll(ROOT_KEYS, ROOT, CITY_KEYS, subject=CITY, name="潮州市人民政府办公室",
                           level=Level.CITY, division="445100", not_before=NOW + 1,
                           not_after=NOW + YEAR)
    error = expect(NotYetValid, validate, [FED.root, early_city, FED.county])
    assert CITY in error.detail


def test_expired_root_breaks_every_chain():
    expect(ExpiredCert, validate, FED.chain, now=FED.root.not_after)
    expect(ExpiredCert, validate, [FED.root], now=FED.root.not_after)


def test_issuing_an_empty_validity_window_is_refused():
    for not_after in (NOW, NOW - 1):
        expect(Malformed, issue_certificate, CITY_KEYS, issuer=CITY, subject=COUNTY,
               name="饶平县人民政府办公室", level=Level.COUNTY, subject_keys=COUNTY_KEYS.public,
               serial=1, not_before=NOW, not_after=not_after)


# --- revocation ----------------------------------------------------------------------

@pytest.mark.parametrize("signer_keys, signer, signer_cert", [
    (CITY_KEYS, CITY, "city"),  # the parent
    (ROOT_KEYS, ROOT, "root"),  # an ancestor two levels up
    (COUNTY_KEYS, COUNTY, "county"),  # the subject itself (compromised key)
])
def test_verified_revocation_revokes_the_county(signer_keys, signer, signer_cert):
    revocation = revocation_by(signer_keys, signer)
    verify_revocation(revocation, getattr(FED, signer_cert))
    error = expect(Revoked, validate, FED.chain, revocations=[revocation])
    assert COUNTY in error.detail
    # The chain above the county is untouched.
    assert validate(FED.chain[:2], revocations=[revocation]) is FED.city


def test_revoking_the_city_breaks_the_county_chain_at_the_city():
    revocation = revocation_by(ROOT_KEYS, ROOT, subject=CITY)
    verify_revocation(revocation, FED.root)
    error = expect(Revoked, validate, FED.chain, revocations=[revocation])
    assert CITY in error.detail and COUNTY not in error.detail


def test_revocation_of_another_node_does_not_touch_this_chain():
    revocation = revocation_by(ROOT_KEYS, ROOT, subject=SIBLING)
    assert validate(FED.chain, revocations=[revocation]) is FED.county


def test_rekey_with_higher_serial_survives_revocation_of_the_old_one():
    revocation = revocation_by(CITY_KEYS, CITY, up_to=1)
    _, rekeyed = enroll(CITY_KEYS, CITY, COUNTY_KEYS_2, subject=COUNTY, name="饶平县人民政府办公室",
                        level=Level.COUNTY, division="445122", serial=2)
    assert validate([FED.root, FED.city, rekeyed], revocations=[revocation]) is rekeyed
    expect(Revoked, validate, FED.chain, revocations=[revocation])
    # Revoking up to 2 then takes the new certificate too.
    second = revocation_by(CITY_KEYS, CITY, up_to=2)
    expect(Revoked, validate, [FED.root, FED.city, rekeyed], revocations=[revocation, second])


def test_revocation_index_keeps_the_highest_serial_per_subject():
    revocations = [revocation_by(CITY_KEYS, CITY, up_to=3), revocation_by(ROOT_KEYS, ROOT, up_to=1),
                   revocation_by(ROOT_KEYS, ROOT, subject=SIBLING, up_to=2)]
    assert revocation_index(revocations) == {COUNTY: 3, SIBLING: 2}
    assert revocation_index(reversed(revocations)) == {COUNTY: 3, SIBLING: 2}
    assert revocation_index([]) == {}


def test_revocation_round_trips_through_bytes():
    revocation = revocation_by(CITY_KEYS, CITY, up_to=4)
    again = decode_revocation(revocation.encode())
    assert again == revocation
    assert (again.subject, again.signer, again.up_to_serial, again.reason, again.revoked_at) == (
        COUNTY, CITY, 4, "密钥泄露", NOW)


@pytest.mark.parametrize("signer_keys, signer, subject", [
    (SIBLING_KEYS, SIBLING, CITY),  # a sibling
    (SIBLING_KEYS, SIBLING, COUNTY),  # a sibling's child (an uncle)
    (COUNTY_KEYS, COUNTY, CITY),  # a child revoking its parent
    (CITY_KEYS, CITY, "gd.chaozhoux"),  # a string prefix, not an ancestor
    (OTHER_ROOT_KEYS, "zj", COUNTY),  # another province
])
def test_only_the_subject_or_an_ancestor_may_revoke(signer_keys, signer, subject):
    expect(NameConstraint, revoke, signer_keys, signer=signer, subject=subject, up_to_serial=1,
           reason="越权", revoked_at=NOW)
    # The same revocation forged as bytes is refused on decoding.
    wire = {"v": 1, "sub": subject, "upto": 1, "by": signer, "reason": "越权", "at": NOW}
    expect(NameConstraint, decode_revocation, sign_raw(signer_keys, Domain.REVOCATION, wire))


def test_revocation_checked_against_the_wrong_signer_certificate_is_wrong_issuer():
    revocation = revocation_by(CITY_KEYS, CITY)
    expect(WrongIssuer, verify_revocation, revocation, FED.root)
    expect(WrongIssuer, verify_revocation, revocation, FED.county)


def test_node_may_not_revoke_serials_newer_than_its_own():
    verify_revocation(revocation_by(COUNTY_KEYS, COUNTY, up_to=1), FED.county)  # its own: fine
    newer = revocation_by(COUNTY_KEYS, COUNTY, up_to=2)
    expect(NameConstraint, verify_revocation, newer, FED.county)


def test_tampered_revocation_is_bad_signature():
    revocation = revocation_by(CITY_KEYS, CITY)
    tampered_sig = decode_revocation(encode_envelope(revocation.payload,
                                                     flip(revocation.signature, 10)))
    expect(BadSignature, verify_revocation, tampered_sig, FED.city)
    # A different reason under the original signature.
    wire = {"v": 1, "sub": COUNTY, "upto": 1, "by": CITY, "reason": "另一个理由", "at": NOW}
    tampered_payload = decode_revocation(encode_envelope(pack(wire), revocation.signature))
    expect(BadSignature, verify_revocation, tampered_payload, FED.city)
    # Claims the city as signer but made with another key.
    impostor = revocation_by(SIBLING_KEYS, CITY)
    expect(BadSignature, verify_revocation, impostor, FED.city)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_of_a_revocation_fails_with_a_typed_error(data):
    encoded = revocation_by(CITY_KEYS, CITY).encode()
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(ProtocolError):
        verify_revocation(decode_revocation(flip(encoded, position, mask)), FED.city)


# --- check order -------------------------------------------------------------------------

def test_signature_then_validity_then_revocation_order():
    revocation = revocation_by(CITY_KEYS, CITY)
    late = FED.county.not_after
    expect(ExpiredCert, validate, FED.chain, now=late, revocations=[revocation])
    bad_sig = decode_certificate(encode_envelope(FED.county.payload, flip(FED.county.signature, 0)))
    expect(BadSignature, validate, [FED.root, FED.city, bad_sig], now=late, revocations=[revocation])
