"""Domain-separated Ed25519 signatures over exact bytes, and the signed envelope.

Theory of operation: everything govnode signs (frames, certificates, revocations,
enrollment requests, directory records) travels as an *envelope*: the msgpack array
``[payload, signature]`` where ``payload`` is the msgpack encoding of the signed
content, kept as the exact bytes that were signed. A verifier checks the signature
over those bytes and only then trusts what they decode to; nothing is ever re-encoded
before verifying.

The signature covers ``DOMAIN + payload``. Each kind of signed object has its own
domain string, so a signature made for one kind can never be replayed as another (a
certificate payload that happens to parse as a frame still fails as a frame).
"""

from __future__ import annotations

import functools
from enum import Enum

from nacl.bindings import crypto_sign, crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

from protocol.errors import BadSignature, Malformed
from protocol.wire import DEFAULT_LIMITS, Limits, pack, unpack

SIGNATURE_BYTES = 64
VERIFY_KEY_BYTES = 32


class Domain(bytes, Enum):
    """The prefix each kind of signed object is signed under (see SPEC.md)."""

    FRAME = b"govnode/frame/v1\x00"
    CERTIFICATE = b"govnode/cert/v1\x00"
    REVOCATION = b"govnode/revocation/v1\x00"
    ENROLLMENT = b"govnode/enroll/v1\x00"
    RECORD = b"govnode/record/v1\x00"


def sign_bytes(signing_secret: bytes, domain: Domain, payload: bytes) -> bytes:
    """The 64-byte signature of ``domain + payload`` under a 64-byte libsodium secret."""
    return crypto_sign(domain.value + payload, signing_secret)[:SIGNATURE_BYTES]


def verify_bytes(verify_key: bytes, domain: Domain, payload: bytes, signature: bytes, *,
                 what: str = "signature") -> None:
    """Raise ``BadSignature`` unless ``signature`` signs ``domain + payload``."""
    if len(signature) != SIGNATURE_BYTES or len(verify_key) != VERIFY_KEY_BYTES:
        raise BadSignature(f"{what}: wrong signature or key length")
    try:
        crypto_sign_open(signature + domain.value + payload, verify_key)
    except (BadSignatureError, CryptoError, ValueError, TypeError):
        raise BadSignature(f"{what}: does not verify") from None


def encode_envelope(payload: bytes, signature: bytes) -> bytes:
    return pack([payload, signature])


def decode_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS, *,
                    what: str = "envelope") -> tuple[bytes, bytes]:
    """Split an envelope into (payload bytes, signature) without trusting either."""
    if type(data) is bytes and len(data) <= limits.max_bytes:
        split = _split_packed_envelope(data, limits.max_bin_len)
        if split is not None:
            return split
    outer = unpack(data, _outer_limits(limits), what=what)
    if not (isinstance(outer, tuple) and len(outer) == 2):
        raise Malformed(f"{what}: expected [payload, signature]")
    payload, signature = outer
    if not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise Malformed(f"{what}: payload and signature must be binary")
    if len(signature) != SIGNATURE_BYTES:
        raise Malformed(f"{what}: signature must be {SIGNATURE_BYTES} bytes")
    return payload, signature


_BIN_HEADERS = {0xC4: 1, 0xC5: 2, 0xC6: 4}  # msgpack bin8/16/32: bytes of length that follow
_SIGNATURE_HEADER = bytes((0xC4, SIGNATURE_BYTES))


def _split_packed_envelope(data: bytes, max_bin_len: int) -> tuple[bytes, bytes] | None:
    """Read the envelope as ``pack`` writes it (fixarray of 2, bin, bin8 of 64) by slicing.

    Every frame takes this path, so it avoids a general decode. Anything else -- a
    valid but differently packed envelope, or garbage -- returns None and goes through
    ``unpack``, which accepts exactly the same envelopes and explains the rest.
    """
    if len(data) < 3 + 2 + SIGNATURE_BYTES or data[0] != 0x92:
        return None
    width = _BIN_HEADERS.get(data[1])
    if width is None:
        return None
    start = 2 + width
    size = int.from_bytes(data[2:start], "big")
    end = start + size
    if size > max_bin_len or len(data) != end + 2 + SIGNATURE_BYTES or \
            data[end:end + 2] != _SIGNATURE_HEADER:
        return None
    return data[start:end], data[end + 2:]


@functools.lru_cache(maxsize=16)
def _outer_limits(limits: Limits) -> Limits:
    # The outer array holds exactly two binaries: anything else is refused early.
    return Limits(max_bytes=limits.max_bytes, max_str_len=0, max_bin_len=limits.max_bytes,
                  max_array_len=2, max_map_len=0, max_depth=1)
