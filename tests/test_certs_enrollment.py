"""Tests for protocol.certs: enrollment requests, from the child's request to the
parent's certificate. Requests round-trip through bytes, prove possession of the key
they ask to certify, refuse tampering byte by byte, and are read strictly (root ids,
the wrong parent, division codes, levels, names); the issuing side refuses what the
decoder would. The federation and helpers are those of tests/test_certs.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import (EnrollmentRequest, Level, certify_request, decode_enrollment_request,
                            issue_certificate, make_enrollment_request)
from protocol.errors import BadSignature, Malformed, NameConstraint, ProtocolError
from protocol.keys import NodeKeys
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack
from test_certs import (CITY, CITY_KEYS, COUNTY, COUNTY_KEYS, NOW, ROOT, ROOT_KEYS, SIBLING,
                        SIBLING_KEYS, YEAR, expect, flip, sign_raw)

# --- forging: signed bytes that bypass the issuing-side checks ----------------------

def request_wire(keys: NodeKeys, **overrides) -> dict:
    wire = {"v": 1, "sub": COUNTY, "name": "饶平县人民政府办公室", "lvl": "county",
            "div": "445122", "sk": keys.public.verify_key, "bk": keys.public.box_key, "at": NOW}
    wire.update(overrides)
    return wire


# --- enrollment --------------------------------------------------------------------------

def county_request(**kwargs) -> EnrollmentRequest:
    arguments = dict(subject=COUNTY, name="饶平县人民政府办公室", level=Level.COUNTY,
                     requested_at=NOW, division="445122")
    arguments.update(kwargs)
    return make_enrollment_request(COUNTY_KEYS, **arguments)


def test_enrollment_request_round_trips():
    request = county_request()
    again = decode_enrollment_request(request.encode())
    assert again == request
    assert (again.subject, again.name, again.level, again.division, again.requested_at) == (
        COUNTY, "饶平县人民政府办公室", Level.COUNTY, "445122", NOW)
    assert again.keys == COUNTY_KEYS.public
    assert again.parent == CITY
    assert again.fingerprint == COUNTY_KEYS.fingerprint


def test_enrollment_request_without_division_round_trips():
    request = make_enrollment_request(COUNTY_KEYS, subject="gd.finance", name="广东省财政厅",
                                      level=Level.DEPARTMENT, requested_at=NOW)
    again = decode_enrollment_request(request.encode())
    assert again.division is None and again.level is Level.DEPARTMENT and again.parent == ROOT


def test_tampered_enrollment_request_is_bad_signature():
    request = county_request()
    expect(BadSignature, decode_enrollment_request,
           encode_envelope(request.payload, flip(request.signature, 5)))
    # A changed timestamp (the last payload byte) under the original signature.
    expect(BadSignature, decode_enrollment_request,
           encode_envelope(flip(request.payload, len(request.payload) - 1), request.signature))


def test_enrollment_request_for_a_key_it_does_not_hold_is_bad_signature():
    # Proof of possession: the request names the county's keys but is signed by another.
    stolen = sign_raw(SIBLING_KEYS, Domain.ENROLLMENT, request_wire(COUNTY_KEYS))
    expect(BadSignature, decode_enrollment_request, stolen)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_of_an_enrollment_request_fails_with_a_typed_error(data):
    encoded = county_request().encode()
    position = data.draw(st.integers(0, len(encoded) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(ProtocolError):
        decode_enrollment_request(flip(encoded, position, mask))


def test_root_id_cannot_enroll():
    expect(NameConstraint, make_enrollment_request, ROOT_KEYS, subject=ROOT,
           name="广东省人民政府办公厅", level=Level.PROVINCE, requested_at=NOW)
    forged = sign_raw(ROOT_KEYS, Domain.ENROLLMENT, request_wire(ROOT_KEYS, sub="gd", lvl="province"))
    expect(NameConstraint, decode_enrollment_request, forged)


@pytest.mark.parametrize("issuer_keys, issuer", [
    (ROOT_KEYS, ROOT),  # the grandparent
    (SIBLING_KEYS, SIBLING),  # a sibling of the parent
    (COUNTY_KEYS, COUNTY),  # the requester itself
])
def test_certify_request_by_the_wrong_parent_is_name_constraint(issuer_keys, issuer):
    request = decode_enrollment_request(county_request().encode())
    error = expect(NameConstraint, certify_request, issuer_keys, issuer=issuer, request=request,
                   serial=1, not_before=NOW, not_after=NOW + YEAR)
    assert CITY in error.detail


@pytest.mark.parametrize("division", ["44512", "4451220", "44512a", "４４５１２２", "", "445 12"])
def test_bad_division_code_is_malformed(division):
    expect(Malformed, county_request, division=division)
    forged = sign_raw(COUNTY_KEYS, Domain.ENROLLMENT, request_wire(COUNTY_KEYS, div=division))
    expect(Malformed, decode_enrollment_request, forged)
    expect(Malformed, issue_certificate, CITY_KEYS, issuer=CITY, subject=COUNTY, name="饶平",
           level=Level.COUNTY, subject_keys=COUNTY_KEYS.public, serial=1, not_before=NOW,
           not_after=NOW + YEAR, division=division)


@pytest.mark.parametrize("level", ["village", "Province", ""])
def test_unknown_level_is_malformed(level):
    forged = sign_raw(COUNTY_KEYS, Domain.ENROLLMENT, request_wire(COUNTY_KEYS, lvl=level))
    expect(Malformed, decode_enrollment_request, forged)
    # The signing side refuses it the same way (an operator typed it; no ValueError).
    expect(Malformed, county_request, level=level)
    expect(Malformed, issue_certificate, CITY_KEYS, issuer=CITY, subject=COUNTY, name="饶平",
           level=level, subject_keys=COUNTY_KEYS.public, serial=1, not_before=NOW,
           not_after=NOW + YEAR)


def test_level_given_as_its_string_value_is_accepted():
    assert county_request(level="county").level is Level.COUNTY


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_empty_or_overlong_name_is_malformed(name):
    expect(Malformed, county_request, name=name)
    forged = sign_raw(COUNTY_KEYS, Domain.ENROLLMENT, request_wire(COUNTY_KEYS, name=name))
    expect(Malformed, decode_enrollment_request, forged)


def test_name_of_exactly_200_characters_is_accepted():
    name = "饶" * 200
    assert decode_enrollment_request(county_request(name=name).encode()).name == name


@pytest.mark.parametrize("data", [b"", b"\x00", pack([b"a"]), pack([b"\x80", b"\x00" * 64])])
def test_garbage_enrollment_request_is_malformed(data):
    expect(Malformed, decode_enrollment_request, data)
