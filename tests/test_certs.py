"""Tests for protocol.certs: certificates and chain validation.

Every refusal is checked by its exact error class *and* its stable ``code`` (the codes
are part of the wire contract, SPEC §10). The federation used throughout is built the
way a real one is: the province self-signs, the city enrolls with the province
(request -> bytes -> decode -> certify), the county enrolls with the city. This file
holds that federation and the helpers the other certificate tests import, and covers
the happy path, wrong issuers, the name constraint, tampered and garbage bytes and
unknown roots; validity windows and revocations are in tests/test_certs_lifetime.py,
enrollment requests in tests/test_certs_enrollment.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import (Certificate, EnrollmentRequest, Level, Revocation, certify_request,
                            decode_certificate, decode_enrollment_request,
                            issue_certificate, make_enrollment_request, revoke,
                            self_signed_root, validate_chain)
from protocol.errors import (BadNodeId, BadSignature, ExpiredCert, Malformed, NameConstraint,
                             NotYetValid, ProtocolError, UnknownRoot, WrongIssuer)
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


def revocation_by(keys: NodeKeys, signer: str, subject: str = COUNTY, up_to: int = 1) -> Revocation:
    return revoke(keys, signer=signer, subject=subject, up_to_serial=up_to, reason="密钥泄露",
                  revoked_at=NOW)


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
