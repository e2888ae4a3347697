"""End-to-end encryption of document content to one recipient's X25519 key.

Theory of operation: the format is libsodium's sealed box (``crypto_box_seal``):
``ephemeral_public (32) || crypto_box(plaintext, nonce, ephemeral_secret,
recipient_public)`` with ``nonce = BLAKE2b-192(ephemeral_public || recipient_public)``.
Anyone with libsodium can open what we seal and vice versa. We build it from
``crypto_box`` rather than calling ``crypto_box_seal`` so that the ephemeral key is
handed in: the protocol draws no randomness of its own, and the SPEC's test vector
is reproducible. Relays see only the ciphertext; only the recipient's secret opens it.
"""

from __future__ import annotations

import hashlib

import nacl.utils
from nacl.bindings import (crypto_box, crypto_box_seal_open, crypto_scalarmult_base)
from nacl.exceptions import CryptoError

from protocol.errors import CannotDecrypt
from protocol.keys import RandomBytes

PUBLIC_KEY_BYTES = 32
SEAL_OVERHEAD = 32 + 16  # ephemeral public key + Poly1305 tag


def seal(plaintext: bytes, recipient_box_key: bytes, *,
         random_bytes: RandomBytes = nacl.utils.random) -> bytes:
    """Encrypt ``plaintext`` so only the holder of ``recipient_box_key``'s secret reads it."""
    if len(recipient_box_key) != PUBLIC_KEY_BYTES:
        raise CannotDecrypt("recipient encryption key must be 32 bytes")
    ephemeral_secret = random_bytes(32)
    ephemeral_public = crypto_scalarmult_base(ephemeral_secret)
    nonce = hashlib.blake2b(ephemeral_public + recipient_box_key, digest_size=24).digest()
    try:
        boxed = crypto_box(plaintext, nonce, recipient_box_key, ephemeral_secret)
    except CryptoError:  # e.g. a low-order recipient key: no usable shared secret
        raise CannotDecrypt("recipient encryption key is not usable") from None
    return ephemeral_public + boxed


def open_sealed(ciphertext: bytes, box_public: bytes, box_secret: bytes) -> bytes:
    """Decrypt a sealed box; ``CannotDecrypt`` when it is not for us or was altered."""
    if len(ciphertext) < SEAL_OVERHEAD:
        raise CannotDecrypt("sealed content shorter than its overhead")
    try:
        return crypto_box_seal_open(ciphertext, box_public, box_secret)
    except (CryptoError, ValueError, TypeError):
        raise CannotDecrypt("sealed content does not open with this node's key") from None
