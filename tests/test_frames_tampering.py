"""Signed frames that were tampered with, or never were (protocol.frames,
protocol.signing): flipping any byte, truncating, appending or mutating a field fails
with a typed error; hostile envelopes (wrong shapes, 4 GiB headers, deep nesting,
trailing data) are malformed and parse without allocating beyond the limits; and a
signature made in another domain, or a malleated one, never verifies as a frame's.
The keys, fixed frames, strategies and helpers are those of tests/test_frames.py.
"""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from protocol.errors import BadSignature, Malformed, ProtocolError, TooLarge
from protocol.frames import encode_frame, parse_frame
from protocol.signing import Domain, decode_envelope, encode_envelope, sign_bytes, verify_bytes
from protocol.wire import DEFAULT_LIMITS, Limits, pack
from test_frames import (FIXED_FRAMES, ORIGIN_KEYS, VERIFY_KEY, document_frame, envelope_for,
                         parse_and_verify, ping_frame, receipt_frame, valid_frames,
                         with_body_field)

MiB = 1024 * 1024
MSGPACK_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False) | st.binary(max_size=20) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=12,
)


# --- tampering ------------------------------------------------------------------

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames(), st.data())
def test_flipping_any_byte_fails_with_a_typed_error(frame, data):
    encoded = encode_frame(frame, ORIGIN_KEYS)
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1), "position")
    mask = data.draw(st.integers(min_value=1, max_value=255), "mask")
    tampered = bytearray(encoded)
    tampered[position] ^= mask
    with pytest.raises(ProtocolError):
        parse_and_verify(bytes(tampered))


@pytest.mark.parametrize("make", list(FIXED_FRAMES.values()), ids=list(FIXED_FRAMES))
def test_flipping_every_byte_of_a_fixed_frame_fails(make):
    encoded = encode_frame(make(), ORIGIN_KEYS)
    codes = set()
    for position in range(len(encoded)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(encoded)
            tampered[position] ^= mask
            with pytest.raises(ProtocolError) as info:
                parse_and_verify(bytes(tampered))
            codes.add(info.value.code)
    # Both kinds of failure occur: structure breaks, or the signature no longer covers it.
    assert {"malformed", "bad_signature"} <= codes


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames())
def test_every_prefix_of_a_frame_is_malformed(frame):
    encoded = encode_frame(frame, ORIGIN_KEYS)
    for size in range(len(encoded)):
        with pytest.raises(Malformed):
            parse_frame(encoded[:size])


@settings(max_examples=50, deadline=None)
@given(valid_frames(), st.binary(min_size=1, max_size=8))
def test_trailing_bytes_after_a_frame_are_malformed(frame, extra):
    with pytest.raises(Malformed):
        parse_frame(encode_frame(frame, ORIGIN_KEYS) + extra)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_are_refused_with_a_typed_error(data):
    with pytest.raises(ProtocolError):
        parse_and_verify(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_random_payload_bytes_in_a_signed_envelope_are_refused(payload):
    data = encode_envelope(payload, ORIGIN_KEYS.sign(Domain.FRAME, payload))
    with pytest.raises(ProtocolError):
        parse_frame(data)


@settings(max_examples=150, deadline=None)
@given(MSGPACK_JUNK)
def test_random_msgpack_payloads_are_refused(value):
    with pytest.raises(ProtocolError):
        parse_frame(envelope_for(value))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_frames(), st.data())
def test_structural_mutations_are_refused_or_still_exact(frame, data):
    """Delete, add or replace one envelope or body field with arbitrary msgpack."""
    value = frame.to_wire()
    target = data.draw(st.sampled_from(["envelope", "body"]), "target")
    container = value if target == "envelope" else dict(value["b"])
    action = data.draw(st.sampled_from(["delete", "add", "replace"]), "action")
    if action == "delete":
        del container[data.draw(st.sampled_from(sorted(container)), "key")]
    elif action == "add":
        key = data.draw(st.text(max_size=5).filter(lambda k: k not in container), "key")
        container[key] = data.draw(MSGPACK_JUNK, "value")
    else:
        key = data.draw(st.sampled_from(sorted(container)), "key")
        replacement = data.draw(MSGPACK_JUNK, "value")
        assume(pack(replacement) != pack(container[key]))
        container[key] = replacement
    if target == "body":
        value["b"] = container
    encoded = envelope_for(value)
    try:
        parsed = parse_frame(encoded).verify(VERIFY_KEY)
    except ProtocolError:
        return
    # The only acceptable success: a replacement that is itself valid (e.g. another
    # valid timestamp); then the frame must decode to exactly what was signed.
    assert action == "replace"
    assert pack(parsed.to_wire()) == pack(value)


# --- hostile envelopes -----------------------------------------------------------

U32 = struct.pack(">I", 2**32 - 1)
GOOD_PAYLOAD = pack(ping_frame().to_wire())
GOOD_SIGNATURE = ORIGIN_KEYS.sign(Domain.FRAME, GOOD_PAYLOAD)

HOSTILE_ENVELOPES = {
    "empty": b"",
    "nil": b"\xc0",
    "map instead of array": pack({"p": GOOD_PAYLOAD, "s": GOOD_SIGNATURE}),
    "array of one": pack([GOOD_PAYLOAD]),
    "array of three": pack([GOOD_PAYLOAD, GOOD_SIGNATURE, b""]),
    "payload as str": pack(["x", GOOD_SIGNATURE]),
    "payload as map": pack([{"v": 1}, GOOD_SIGNATURE]),
    "signature as str": pack([GOOD_PAYLOAD, "s" * 64]),
    "signature as int": pack([GOOD_PAYLOAD, 7]),
    "signature 63 bytes": pack([GOOD_PAYLOAD, GOOD_SIGNATURE[:63]]),
    "signature 65 bytes": pack([GOOD_PAYLOAD, GOOD_SIGNATURE + b"\x00"]),
    "empty payload": pack([b"", GOOD_SIGNATURE]),
    "bin32 4 GiB payload": b"\x92\xc6" + U32 + b"tiny",
    "str32 4 GiB payload": b"\x92\xdb" + U32 + b"tiny",
    "array32 envelope": b"\xdd" + U32 + b"\xc0",
    "map32 envelope": b"\xdf" + U32 + b"\xa1k\xc0",
    "array32 payload": b"\x92\xdd" + U32,
    "ext envelope": b"\xd4\x05\x00",
    "ext payload": b"\x92\xd4\x05\x00" + pack(GOOD_SIGNATURE),
    "deep nesting": b"\x91" * 100_000 + b"\xc0",
    "trailing data": encode_envelope(GOOD_PAYLOAD, GOOD_SIGNATURE) + b"\xc0",
    "payload: array32 2**32-1": encode_envelope(b"\xdd" + U32, GOOD_SIGNATURE),
    "payload: map32 2**32-1": encode_envelope(b"\xdf" + U32, GOOD_SIGNATURE),
    "payload: bin32 4 GiB": encode_envelope(b"\xc6" + U32 + b"abc", GOOD_SIGNATURE),
    "payload: str32 4 GiB": encode_envelope(b"\xdb" + U32 + b"abc", GOOD_SIGNATURE),
    "payload: deep nesting": encode_envelope(b"\x91" * 100_000 + b"\xc0", GOOD_SIGNATURE),
    "payload: trailing data": encode_envelope(GOOD_PAYLOAD + b"\xc0", GOOD_SIGNATURE),
    "payload: truncated": encode_envelope(GOOD_PAYLOAD[:-1], GOOD_SIGNATURE),
    "payload: invalid utf-8": encode_envelope(
        GOOD_PAYLOAD.replace(b"\xa4ping", b"\xa4p\xffng"), GOOD_SIGNATURE),
    "payload: ext value": encode_envelope(
        GOOD_PAYLOAD.replace(b"\xa2at\xcf", b"\xa2at\xd7\x05"), GOOD_SIGNATURE),
    "payload: timestamp value": encode_envelope(
        GOOD_PAYLOAD.replace(b"\xa2at\xcf", b"\xa2at\xd7\xff"), GOOD_SIGNATURE),
    "payload: array": envelope_for([1, "ping"]),
    "payload: nil": envelope_for(None),
}


@pytest.mark.parametrize("data", list(HOSTILE_ENVELOPES.values()), ids=list(HOSTILE_ENVELOPES))
def test_hostile_envelopes_are_malformed(data):
    with pytest.raises(Malformed):
        parse_frame(data)


def test_hostile_envelope_table_is_not_vacuous():
    # The string replacements above must actually have changed the payload.
    assert b"\xa4ping" in GOOD_PAYLOAD and b"\xa2at\xcf" in GOOD_PAYLOAD
    assert parse_and_verify(encode_envelope(GOOD_PAYLOAD, GOOD_SIGNATURE)) == ping_frame()


def test_decode_envelope_splits_without_trusting():
    payload, signature = decode_envelope(encode_envelope(b"anything", b"s" * 64))
    assert (payload, signature) == (b"anything", b"s" * 64)


def test_oversize_frame_is_too_large_before_parsing():
    data = encode_frame(document_frame(), ORIGIN_KEYS)
    assert parse_frame(data, Limits(max_bytes=len(data))).frame == document_frame()
    with pytest.raises(TooLarge):
        parse_frame(data, Limits(max_bytes=len(data) - 1))
    with pytest.raises(TooLarge):
        parse_frame(b"\xc1" * (DEFAULT_LIMITS.max_bytes + 1))


def test_body_bin_limit_applies():
    data = encode_frame(document_frame(), ORIGIN_KEYS)  # 80-byte sealed body
    with pytest.raises(Malformed):
        parse_frame(data, Limits(max_bin_len=79))
    assert parse_frame(data, Limits(max_bin_len=MiB)).frame == document_frame()


def _nested(depth: int):
    value = b"leaf"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_just_over_max_depth_inside_a_valid_envelope():
    # payload map (1) > body map (2) > "dir" value: arrays from level 3 on.
    limit = DEFAULT_LIMITS.max_depth
    over = with_body_field(ping_frame().to_wire(), "dir", _nested(limit - 1))
    with pytest.raises(Malformed, match="nested deeper than 8"):
        parse_frame(envelope_for(over))
    at_limit = with_body_field(ping_frame().to_wire(), "dir", _nested(limit - 2))
    with pytest.raises(Malformed) as info:
        parse_frame(envelope_for(at_limit))
    assert "nested" not in info.value.detail  # refused for its type, not its depth
    assert "'dir' must be binary" in info.value.detail


def test_hostile_frames_do_not_allocate_beyond_limits():
    cases = [HOSTILE_ENVELOPES[name] for name in (
        "bin32 4 GiB payload", "array32 envelope", "map32 envelope", "array32 payload",
        "payload: array32 2**32-1", "payload: map32 2**32-1", "payload: bin32 4 GiB")]
    for data in cases:
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            baseline, _ = tracemalloc.get_traced_memory()
            with pytest.raises(Malformed):
                parse_frame(data)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak - baseline < len(data) + MiB, (data[:8], peak - baseline)


# --- domain separation ----------------------------------------------------------------

def test_domains_are_distinct_and_prefix_free():
    values = [domain.value for domain in Domain]
    assert len(set(values)) == len(values)
    for a in values:
        assert a.endswith(b"\x00") and a.count(b"\x00") == 1
        for b in values:
            assert a == b or not b.startswith(a)


@pytest.mark.parametrize("domain", [d for d in Domain if d is not Domain.FRAME],
                         ids=lambda d: d.name)
def test_other_domain_signatures_do_not_verify_as_frames(domain):
    payload = pack(ping_frame().to_wire())
    signature = ORIGIN_KEYS.sign(domain, payload)
    signed = parse_frame(encode_envelope(payload, signature))  # parses fine ...
    assert signed.frame == ping_frame()
    with pytest.raises(BadSignature):  # ... but is not a frame signature
        signed.verify(VERIFY_KEY)
    verify_bytes(VERIFY_KEY, domain, payload, signature)  # valid in its own domain


def test_certificate_domain_signature_via_signing_module():
    payload = pack(receipt_frame().to_wire())
    secret = ORIGIN_KEYS._signing_secret
    certificate_signature = sign_bytes(secret, Domain.CERTIFICATE, payload)
    assert certificate_signature != sign_bytes(secret, Domain.FRAME, payload)
    with pytest.raises(BadSignature):
        verify_bytes(VERIFY_KEY, Domain.FRAME, payload, certificate_signature)
    with pytest.raises(BadSignature):
        parse_and_verify(encode_envelope(payload, certificate_signature))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(list(Domain)), st.sampled_from(list(Domain)))
def test_signatures_verify_only_in_their_own_domain(payload, signed_in, checked_in):
    signature = ORIGIN_KEYS.sign(signed_in, payload)
    if signed_in is checked_in:
        verify_bytes(VERIFY_KEY, checked_in, payload, signature)
    else:
        with pytest.raises(BadSignature):
            verify_bytes(VERIFY_KEY, checked_in, payload, signature)


def test_the_signature_covers_domain_then_payload():
    from nacl.signing import VerifyKey

    payload = b"payload"
    signature = ORIGIN_KEYS.sign(Domain.FRAME, payload)
    VerifyKey(VERIFY_KEY).verify(Domain.FRAME.value + payload, signature)


@pytest.mark.parametrize("signature", [b"", b"s" * 63, b"s" * 65, b"s" * 64])
def test_verify_bytes_refuses_malformed_signatures(signature):
    with pytest.raises(BadSignature):
        verify_bytes(VERIFY_KEY, Domain.FRAME, b"payload", signature)


def test_ed25519_malleated_signature_is_refused():
    """S + L (the group order) is the same signature to a lax verifier; libsodium refuses it."""
    order = 2**252 + 27742317777372353535851937790883648493
    payload = pack(ping_frame().to_wire())
    signature = ORIGIN_KEYS.sign(Domain.FRAME, payload)
    s = int.from_bytes(signature[32:], "little") + order
    assert s < 2**256
    malleated = signature[:32] + s.to_bytes(32, "little")
    with pytest.raises(BadSignature):
        parse_and_verify(encode_envelope(payload, malleated))
