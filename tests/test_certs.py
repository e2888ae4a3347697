"""Tests for protocol.certs: certificates, chain validation, revocations, enrollment.

Every refusal is checked by its exact error class *and* its stable ``code`` (the codes
are part of the wire contract, SPEC §10). The federation used throughout is built the
way a real one is: the province self-signs, the city enrolls with the province
(request -> bytes -> decode -> certify), the county enrolls with the city.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import (Certificate, EnrollmentRequest, Level, Revocation, certify_request,
                            decode_certificate, decode_enrollment_request, decode_revocation,
                            issue_certificate, make_enrollment_request, revocation_index, revoke,
                            self_signed_root, validate_chain, verify_revocation)
from protocol.errors import (BadNodeId, BadSignature, ExpiredCert, Malformed, NameConstraint,
                             NotYetValid, ProtocolError, Revoked, UnknownRoot, WrongIssuer)
from protocol.keys import NodeKeys, PublicKeys
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack

# --- the federation ------------------------------------------------------------

NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z, ms
DAY = 24 * 3600 * 1000
YEAR = 365 * DAY

ROOT_KEYS = NodeKeys.from_seed(b"test-certs gd")
CITY_KEYS = NodeKeys.from_seed(b"test-certs gd.chaozhou")
COUNTY_KEYS = NodeKeys.from_seed(b"test-certs gd.chaozhou.raoping")
COUNTY_KEYS_2 = NodeKeys.from_seed(b"test-certs gd.chaozhou.raoping rekey")
SIBLING_KEYS = NodeKeys.from_seed(b"test-certs gd.shantou")
OTHER_ROOT_KEYS = NodeKeys.from_seed(b"test-certs impostor gd")

ROOT, CITY, COUNTY, SIBLING = "gd", "gd.chaozhou", "gd.chaozhou.raoping", "gd.shantou"
ANCHOR = ROOT_KEYS.fingerprint


@dataclass(frozen=True)
class Federation:
    root: Certificate
    city: Certificate
    county: Certificate
    sibling: Certificate
    city_request: EnrollmentRequest

    @property
    def chain(self) -> list[Certificate]:
        return [self.root, self.city, self.county]


def enroll(parent_keys: NodeKeys, parent: str, child_keys: NodeKeys, *, subject: str, name: str,
           level: Level, division: str | None, serial: int = 1, not_before: int = NOW - DAY,
           not_after: int = NOW + YEAR) -> tuple[EnrollmentRequest, Certificate]:
    """The real enrollment path: request made by the child, carried as bytes, certified."""
    sent = make_enrollment_request(child_keys, subject=subject, name=name, level=level,
                                   requested_at=NOW - DAY, division=division).encode()
    received = decode_enrollment_request(sent)
    cert = certify_request(parent_keys, issuer=parent, request=received, serial=serial,
                           not_before=not_before, not_after=not_after)
    return received, cert


def build_federation() -> Federation:
    root = self_signed_root(ROOT_KEYS, subject=ROOT, name="广东省人民政府办公厅",
                            not_before=NOW - DAY, not_after=NOW + 10 * YEAR, division="440000")
    city_request, city = enroll(ROOT_KEYS, ROOT, CITY_KEYS, subject=CITY, name="潮州市人民政府办公室",
                                level=Level.CITY, division="445100")
    _, county = enroll(CITY_KEYS, CITY, COUNTY_KEYS, subject=COUNTY, name="饶平县人民政府办公室",
                       level=Level.COUNTY, division="445122", not_after=NOW + YEAR // 2)
    _, sibling = enroll(ROOT_KEYS, ROOT, SIBLING_KEYS, subject=SIBLING, name="汕头市人民政府办公室",
                        level=Level.CITY, division="440500")
    return Federation(root, city, county, sibling, city_request)


FED = build_federation()


def expect(error_class: type[ProtocolError], call, *args, **kwargs) -> ProtocolError:
    """Run ``call`` and check it refuses with exactly ``error_class`` and its code."""
    with pytest.raises(ProtocolError) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is error_class, f"{type(caught.value).__name__}: {caught.value}"
    assert caught.value.code == error_class.code
    return caught.value


def validate(chain, *, now: int = NOW, revocations=(), anchor: str = ANCHOR) -> Certificate:
    return validate_chain(chain, trust_anchor=anchor, now_ms=now, revocations=revocations)


# --- forging: signed bytes that bypass the issuing-side checks ----------------------

def cert_wire(*, subject: str, issuer: str, keys: PublicKeys, serial: int = 1,
              not_before: int = NOW - DAY, not_after: int = NOW + YEAR, name: str = "伪造单位",
              level: str = "county", division: str | None = None) -> dict:
    return {"v": 1, "sub": subject, "name": name, "lvl": level, "div": division,
            "sk": keys.verify_key, "bk": keys.box_key, "iss": issuer, "ser": serial,
            "nb": not_before, "na": not_after}


def sign_raw(signer: NodeKeys, domain: Domain, wire: dict) -> bytes:
    payload = pack(wire)
    return encode_envelope(payload, signer.sign(domain, payload))


def forge_cert(signer: NodeKeys, **fields) -> Certificate:
    return decode_certificate(sign_raw(signer, Domain.CERTIFICATE, cert_wire(**fields)))


def request_wire(keys: NodeKeys, **overrides) -> dict:
    wire = {"v": 1, "sub": COUNTY, "name": "饶平县人民政府办公室", "lvl": "county",
            "div": "445122", "sk": keys.public.verify_key, "bk": keys.public.box_key, "at": NOW}
    wire.update(overrides)
    return wire


def flip(data: bytes, position: int, mask: int = 0x01) -> bytes:
    return data[:position] + bytes([data[position] ^ mask]) + data[position + 1:]


def with_payload(cert: Certificate, payload: bytes) -> bytes:
    return encode_envelope(payload, cert.signature)


# --- the happy path --------------------------------------------------------------

def test_enrolled_three_level_chain_validates_to_the_county():
    leaf = validate(FED.chain)
    assert leaf is FED.county
    assert (leaf.subject, leaf.issuer, leaf.level, leaf.division) == (
        COUNTY, CITY, Level.COUNTY, "445122")
    assert leaf.name == "饶平县人民政府办公室"
    assert leaf.keys == COUNTY_KEYS.public
    assert leaf.fingerprint == COUNTY_KEYS.fingerprint


def test_root_is_self_issued_province_and_validates_alone():
    assert FED.root.is_self_issued and FED.root.level is Level.PROVINCE
    assert FED.root.fingerprint == ANCHOR
    assert validate([FED.root]) is FED.root
    assert validate(FED.chain[:2]) is FED.city
    assert not FED.city.is_self_issued


def test_certified_request_carries_the_requested_identity():
    request = FED.city_request
    assert request.parent == ROOT
    assert request.fingerprint == CITY_KEYS.fingerprint
    assert (FED.city.subject, FED.city.name, FED.city.level, FED.city.division, FED.city.keys) == (
        request.subject, request.name, request.level, request.division, request.keys)
    assert FED.city.issuer == ROOT and FED.city.serial == 1


@pytest.mark.parametrize("which", ["root", "city", "county", "sibling"])
def test_certificate_round_trips_through_bytes(which):
    cert = getattr(FED, which)
    again = decode_certificate(cert.encode())
    assert again == cert
    assert again.encode() == cert.encode()


def test_validity_window_is_inclusive_start_exclusive_end():
    county = FED.county
    assert validate(FED.chain, now=county.not_before) is county
    assert validate(FED.chain, now=county.not_after - 1) is county
    expect(ExpiredCert, validate, FED.chain, now=county.not_after)
    expect(NotYetValid, validate, FED.chain, now=county.not_before - 1)


def test_signatures_are_domain_separated():
    # The root's signature over a genuine certificate payload, but made under the
    # enrollment domain: a signature for one kind of object is never another kind.
    wire = cert_wire(subject=CITY, issuer=ROOT, keys=CITY_KEYS.public, level="city")
    wrong_domain = decode_certificate(sign_raw(ROOT_KEYS, Domain.ENROLLMENT, wire))
    expect(BadSignature, validate, [FED.root, wrong_domain])
    right_domain = decode_certificate(sign_raw(ROOT_KEYS, Domain.CERTIFICATE, wire))
    assert validate([FED.root, right_domain]).subject == CITY


# --- wrong issuer ----------------------------------------------------------------

def test_link_skipping_a_level_is_wrong_issuer():
    error = expect(WrongIssuer, validate, [FED.root, FED.county])
    assert COUNTY in error.detail


def test_link_naming_another_issuer_is_wrong_issuer():
    # Signed by the city's key, but its issuer field says gd.shantou.
    forged = forge_cert(CITY_KEYS, subject=COUNTY, issuer=SIBLING, keys=COUNTY_KEYS.public)
    expect(WrongIssuer, validate, [FED.root, FED.city, forged])


def test_wrong_issuer_is_reported_before_the_signature():
    forged = forge_cert(SIBLING_KEYS, subject=COUNTY, issuer=SIBLING, keys=COUNTY_KEYS.public)
    expect(WrongIssuer, validate, [FED.root, FED.city, forged])


def test_chain_whose_root_is_not_self_issued_is_wrong_issuer():
    # The city pinned as the anchor: its key matches, but it is not self-issued.
    expect(WrongIssuer, validate, [FED.city, FED.county], anchor=CITY_KEYS.fingerprint)


def test_chain_out_of_order_is_refused():
    expect(WrongIssuer, validate, [FED.root, FED.county, FED.city])
    expect(UnknownRoot, validate, [FED.county, FED.city, FED.root])


# --- name constraint -------------------------------------------------------------

def test_root_signing_a_grandchild_directly_violates_the_name_constraint():
    forged = forge_cert(ROOT_KEYS, subject=COUNTY, issuer=ROOT, keys=COUNTY_KEYS.public)
    error = expect(NameConstraint, validate, [FED.root, forged])
    assert ROOT in error.detail and COUNTY in error.detail


def test_issuing_side_refuses_what_the_verifier_would():
    expect(NameConstraint, issue_certificate, ROOT_KEYS, issuer=ROOT, subject=COUNTY,
           name="饶平县人民政府办公室", level=Level.COUNTY, subject_keys=COUNTY_KEYS.public,
           serial=1, not_before=NOW, not_after=NOW + YEAR)
    expect(NameConstraint, issue_certificate, CITY_KEYS, issuer=CITY, subject=SIBLING,
           name="汕头市人民政府办公室", level=Level.CITY, subject_keys=SIBLING_KEYS.public,
           serial=1, not_before=NOW, not_after=NOW + YEAR)


@pytest.mark.parametrize("subject", [
    "gd.shantou",  # a sibling of the issuer
    "gd",  # the issuer's own parent
    "gd.chaozhou-x",  # shares a string prefix, not a segment
    "gd.chaozhoux.raoping",  # shares a string prefix, one level down
    "gd.chaozhou.raoping.huanggang",  # a grandchild
    "zj.chaozhou",  # another province
])
def test_city_may_certify_only_its_direct_children(subject):
    expect(NameConstraint, issue_certificate, CITY_KEYS, issuer=CITY, subject=subject,
           name="某单位", level=Level.COUNTY, subject_keys=COUNTY_KEYS.public, serial=1,
           not_before=NOW, not_after=NOW + YEAR)
    forged = forge_cert(CITY_KEYS, subject=subject, issuer=CITY, keys=COUNTY_KEYS.public)
    expect(NameConstraint, validate, [FED.root, FED.city, forged])


def test_only_a_root_id_may_be_self_certified():
    expect(NameConstraint, issue_certificate, CITY_KEYS, issuer=CITY, subject=CITY,
           name="潮州市人民政府办公室", level=Level.CITY, subject_keys=CITY_KEYS.public,
           serial=1, not_before=NOW, not_after=NOW + YEAR)


def test_self_issued_non_root_id_is_refused_as_a_chain_root():
    # Even signed by the anchor's own key: only a root id is self-issued (SPEC §7).
    forged = forge_cert(ROOT_KEYS, subject=CITY, issuer=CITY, keys=ROOT_KEYS.public, level="city")
    assert forged.fingerprint == ANCHOR
    expect(NameConstraint, validate, [forged])


@pytest.mark.parametrize("same_object", [True, False])
def test_root_repeated_inside_the_chain_is_refused(same_object):
    # The second gd link claims gd issued gd: only the chain root may be self-issued.
    # The outcome must not depend on whether the repeated link is the same object.
    again = FED.root if same_object else decode_certificate(FED.root.encode())
    expect(NameConstraint, validate, [FED.root, again])
    expect(NameConstraint, validate, [FED.root, again, FED.city, FED.county])


def test_name_constraint_is_reported_before_the_signature():
    forged = forge_cert(SIBLING_KEYS, subject=COUNTY, issuer=ROOT, keys=COUNTY_KEYS.public)
    expect(NameConstraint, validate, [FED.root, forged])


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

def revocation_by(keys: NodeKeys, signer: str, subject: str = COUNTY, up_to: int = 1) -> Revocation:
    return revoke(keys, signer=signer, subject=subject, up_to_serial=up_to, reason="密钥泄露",
                  revoked_at=NOW)


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


# --- tampering -----------------------------------------------------------------------

@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipped_signature_byte_is_bad_signature(index):
    chain = list(FED.chain)
    original = chain[index]
    chain[index] = decode_certificate(encode_envelope(original.payload, flip(original.signature, 33)))
    error = expect(BadSignature, validate, chain)
    assert original.subject in error.detail


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipped_payload_byte_is_bad_signature(index):
    # The last payload byte is the low byte of "na": the payload still parses.
    chain = list(FED.chain)
    original = chain[index]
    tampered = decode_certificate(with_payload(original, flip(original.payload, len(original.payload) - 1)))
    assert tampered.not_after == original.not_after ^ 1
    chain[index] = tampered
    expect(BadSignature, validate, chain)


def test_swapped_subject_key_is_bad_signature():
    wire = cert_wire(subject=COUNTY, issuer=CITY, keys=COUNTY_KEYS_2.public, level="county",
                     division="445122", name="饶平县人民政府办公室", not_after=FED.county.not_after)
    swapped = decode_certificate(with_payload(FED.county, pack(wire)))
    expect(BadSignature, validate, [FED.root, FED.city, swapped])


# Any of these is a typed refusal of a damaged certificate; which one depends on the
# field the flipped byte lands in (the signature, the key that the anchor pins, the
# issuer or subject ids, or the msgpack framing itself).
TAMPER_CODES = {"bad_signature", "malformed", "bad_node_id", "unknown_root", "wrong_issuer",
                "name_constraint"}


def validate_with_flipped_byte(index: int, position: int, mask: int) -> None:
    chain = list(FED.chain)
    chain[index] = decode_certificate(flip(chain[index].encode(), position, mask))
    validate(chain)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flipping_any_byte_of_any_certificate_fails_with_a_typed_error(data):
    index = data.draw(st.integers(0, 2), label="link")
    position = data.draw(st.integers(0, len(FED.chain[index].encode()) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    with pytest.raises(ProtocolError) as caught:
        validate_with_flipped_byte(index, position, mask)
    assert caught.value.code in TAMPER_CODES


def test_flipping_each_byte_of_each_certificate_fails_exhaustively():
    # The property above samples; this sweeps every position once (low bit and all bits).
    for index in range(3):
        for position in range(len(FED.chain[index].encode())):
            for mask in (0x01, 0xFF):
                with pytest.raises(ProtocolError) as caught:
                    validate_with_flipped_byte(index, position, mask)
                assert caught.value.code in TAMPER_CODES, (index, position, mask)


@pytest.mark.parametrize("data", [
    b"", b"\xc1", b"\x92", pack([b"x", b"y"]), pack({"a": 1}), pack([b"", b"\x00" * 64]),
    pack([pack([1, 2]), b"\x00" * 64]), pack([pack("text"), b"\x00" * 64]),
])
def test_garbage_certificate_bytes_are_malformed(data):
    expect(Malformed, decode_certificate, data)


@pytest.mark.parametrize("change", [
    {"v": 2}, {"ser": 0}, {"ser": -1}, {"nb": -5}, {"name": ""}, {"name": "x" * 201},
    {"lvl": "village"}, {"div": "44512"}, {"div": 445122}, {"sk": b"\x00" * 31}, {"ser": 1.0},
    {"ser": True}, {"extra": 1},
])
def test_certificate_fields_are_read_strictly(change):
    wire = cert_wire(subject=COUNTY, issuer=CITY, keys=COUNTY_KEYS.public)
    wire.update(change)
    expect(Malformed, decode_certificate, sign_raw(CITY_KEYS, Domain.CERTIFICATE, wire))


def test_certificate_with_a_missing_field_is_malformed():
    wire = cert_wire(subject=COUNTY, issuer=CITY, keys=COUNTY_KEYS.public)
    del wire["iss"]
    expect(Malformed, decode_certificate, sign_raw(CITY_KEYS, Domain.CERTIFICATE, wire))


def test_certificate_with_a_bad_node_id_is_bad_node_id():
    wire = cert_wire(subject="GD.Chaozhou", issuer=ROOT, keys=CITY_KEYS.public)
    expect(BadNodeId, decode_certificate, sign_raw(ROOT_KEYS, Domain.CERTIFICATE, wire))


# --- unknown root ----------------------------------------------------------------------

def test_impostor_root_with_the_same_id_is_unknown_root():
    impostor = self_signed_root(OTHER_ROOT_KEYS, subject=ROOT, name="广东省人民政府办公厅",
                                not_before=NOW - DAY, not_after=NOW + YEAR)
    # A whole parallel chain under the impostor validates only against its own anchor.
    _, city = enroll(OTHER_ROOT_KEYS, ROOT, CITY_KEYS, subject=CITY, name="潮州市人民政府办公室",
                     level=Level.CITY, division="445100")
    error = expect(UnknownRoot, validate, [impostor, city])
    assert "gd" in error.detail
    assert validate([impostor, city], anchor=OTHER_ROOT_KEYS.fingerprint) is city


def test_genuine_chain_under_another_anchor_is_unknown_root():
    expect(UnknownRoot, validate, FED.chain, anchor=OTHER_ROOT_KEYS.fingerprint)
    zj = self_signed_root(OTHER_ROOT_KEYS, subject="zj", name="浙江省人民政府办公厅",
                          not_before=NOW - DAY, not_after=NOW + YEAR)
    expect(UnknownRoot, validate, [zj])


def test_empty_chain_is_unknown_root():
    expect(UnknownRoot, validate, [])
    expect(UnknownRoot, validate, ())


def test_unknown_root_is_reported_before_anything_else():
    # Expired, revoked and not self-issued: the anchor mismatch still comes first.
    revocation = revocation_by(ROOT_KEYS, ROOT, subject=CITY)
    expect(UnknownRoot, validate, [FED.city, FED.county], now=FED.root.not_after,
           revocations=[revocation])


# --- check order -------------------------------------------------------------------------

def test_signature_then_validity_then_revocation_order():
    revocation = revocation_by(CITY_KEYS, CITY)
    late = FED.county.not_after
    expect(ExpiredCert, validate, FED.chain, now=late, revocations=[revocation])
    bad_sig = decode_certificate(encode_envelope(FED.county.payload, flip(FED.county.signature, 0)))
    expect(BadSignature, validate, [FED.root, FED.city, bad_sig], now=late, revocations=[revocation])


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


def test_a_remembered_signature_never_vouches_for_a_tampered_payload():
    """validate_chain's `verified` cache: a payload altered under a signature seen before
    is still refused, and the cache never grows from a refused chain."""
    from dataclasses import replace as _replace

    root_keys, city_keys = NodeKeys.from_seed(b"cache-root"), NodeKeys.from_seed(b"cache-city")
    root = self_signed_root(root_keys, subject="gd", name="广东", not_before=0, not_after=10**13)
    city = issue_certificate(root_keys, issuer="gd", subject="gd.chaozhou", name="潮州",
                                   level=Level.CITY, subject_keys=city_keys.public, serial=1,
                                   not_before=0, not_after=10**13)
    verified: set = set()
    validate_chain([root, city], trust_anchor=root_keys.fingerprint, now_ms=1, verified=verified)
    assert len(verified) == 2
    forged = _replace(city, payload=city.payload.replace("潮州".encode(), "汕头".encode()))
    with pytest.raises(BadSignature):
        validate_chain([root, forged], trust_anchor=root_keys.fingerprint, now_ms=1,
                             verified=verified)
    assert len(verified) == 2
