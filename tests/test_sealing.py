"""End-to-end sealing to a recipient's X25519 key (protocol.sealing)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_scalarmult_base
from nacl.public import PrivateKey, PublicKey, SealedBox

from protocol.errors import CannotDecrypt
from protocol.keys import NodeKeys
from protocol.sealing import SEAL_OVERHEAD, open_sealed, seal

RECIPIENT = NodeKeys.from_seed(b"test_sealing recipient")
STRANGER = NodeKeys.from_seed(b"test_sealing stranger")
PLAINTEXT = "关于做好防汛工作的通知 / notice on flood prevention".encode()

# Points of small order on Curve25519 (libsodium's blocklist): no usable shared secret.
LOW_ORDER_POINTS = [
    bytes(32),
    (1).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
]


def fixed_random(label: bytes):
    def random_bytes(size: int) -> bytes:
        return hashlib.blake2b(label, digest_size=size).digest()

    return random_bytes


def seal_to(recipient: NodeKeys, plaintext: bytes = PLAINTEXT, label: bytes = b"eph") -> bytes:
    return seal(plaintext, recipient.public.box_key, random_bytes=fixed_random(label))


def open_as(recipient: NodeKeys, ciphertext: bytes) -> bytes:
    return open_sealed(ciphertext, recipient.public.box_key, recipient.box_secret)


SEALED = seal_to(RECIPIENT)


# --- round trips and compatibility ------------------------------------------------

def test_seal_then_open():
    assert open_as(RECIPIENT, SEALED) == PLAINTEXT
    assert len(SEALED) == len(PLAINTEXT) + SEAL_OVERHEAD
    assert PLAINTEXT not in SEALED


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2048), st.binary(min_size=1, max_size=16))
def test_seal_open_round_trip(plaintext, label):
    sealed = seal_to(RECIPIENT, plaintext, label)
    assert len(sealed) == len(plaintext) + SEAL_OVERHEAD
    assert open_as(RECIPIENT, sealed) == plaintext


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=1024))
def test_libsodium_sealed_box_opens_what_seal_produced(plaintext):
    sealed = seal(plaintext, RECIPIENT.public.box_key)  # default, OS randomness
    assert SealedBox(PrivateKey(RECIPIENT.box_secret)).decrypt(sealed) == plaintext


def test_libsodium_opens_the_fixed_vector():
    assert SealedBox(PrivateKey(RECIPIENT.box_secret)).decrypt(SEALED) == PLAINTEXT


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=1024))
def test_open_sealed_opens_what_libsodium_sealed(plaintext):
    sealed = SealedBox(PublicKey(RECIPIENT.public.box_key)).encrypt(plaintext)
    assert open_as(RECIPIENT, sealed) == plaintext


def test_empty_plaintext():
    sealed = seal_to(RECIPIENT, b"")
    assert len(sealed) == SEAL_OVERHEAD
    assert open_as(RECIPIENT, sealed) == b""


# --- determinism -------------------------------------------------------------------

def test_output_is_deterministic_for_handed_randomness():
    assert seal_to(RECIPIENT, label=b"a") == seal_to(RECIPIENT, label=b"a")
    assert seal_to(RECIPIENT, label=b"a") != seal_to(RECIPIENT, label=b"b")
    assert seal(PLAINTEXT, RECIPIENT.public.box_key) != seal(PLAINTEXT, RECIPIENT.public.box_key)


def test_the_handed_randomness_is_the_ephemeral_secret():
    calls = []

    def random_bytes(size):
        calls.append(size)
        return b"\x42" * size

    sealed = seal(PLAINTEXT, RECIPIENT.public.box_key, random_bytes=random_bytes)
    assert calls == [32]
    assert sealed[:32] == crypto_scalarmult_base(b"\x42" * 32)


def test_the_same_ephemeral_for_two_recipients_gives_different_boxes():
    to_recipient, to_stranger = seal_to(RECIPIENT), seal_to(STRANGER)
    assert to_recipient[:32] == to_stranger[:32]
    assert to_recipient[32:] != to_stranger[32:]
    assert open_as(STRANGER, to_stranger) == PLAINTEXT


# --- refusals ----------------------------------------------------------------------

def test_another_recipient_cannot_open():
    with pytest.raises(CannotDecrypt) as info:
        open_as(STRANGER, SEALED)
    assert info.value.code == "cannot_decrypt"


def test_right_secret_with_wrong_public_key_cannot_open():
    # The public key enters the nonce; a mismatched pair fails.
    with pytest.raises(CannotDecrypt):
        open_sealed(SEALED, STRANGER.public.box_key, RECIPIENT.box_secret)


def test_flipping_every_byte_of_a_small_box_fails():
    sealed = seal_to(RECIPIENT, b"short message")
    for position in range(len(sealed)):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(sealed)
            tampered[position] ^= mask
            with pytest.raises(CannotDecrypt):
                open_as(RECIPIENT, bytes(tampered))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.data())
def test_flipping_any_byte_fails(plaintext, data):
    sealed = seal_to(RECIPIENT, plaintext)
    position = data.draw(st.integers(0, len(sealed) - 1), "position")
    mask = data.draw(st.integers(1, 255), "mask")
    tampered = bytearray(sealed)
    tampered[position] ^= mask
    with pytest.raises(CannotDecrypt):
        open_as(RECIPIENT, bytes(tampered))


def test_truncated_or_extended_boxes_fail():
    for size in range(len(SEALED)):
        with pytest.raises(CannotDecrypt):
            open_as(RECIPIENT, SEALED[:size])
    with pytest.raises(CannotDecrypt):
        open_as(RECIPIENT, SEALED + b"\x00")


@pytest.mark.parametrize("size", range(SEAL_OVERHEAD + 1))
def test_short_input_cannot_decrypt(size):
    with pytest.raises(CannotDecrypt):
        open_as(RECIPIENT, b"\x00" * size)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_cannot_decrypt(data):
    with pytest.raises(CannotDecrypt):
        open_as(RECIPIENT, data)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p[:4].hex())
def test_low_order_ephemeral_key_cannot_decrypt(point):
    forged = point + SEALED[32:]
    with pytest.raises(CannotDecrypt):
        open_as(RECIPIENT, forged)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS, ids=lambda p: p[:4].hex())
def test_sealing_to_a_low_order_key_is_refused(point):
    """Regression: libsodium's error used to escape as nacl RuntimeError."""
    with pytest.raises(CannotDecrypt, match="not usable"):
        seal(PLAINTEXT, point, random_bytes=fixed_random(b"eph"))


@pytest.mark.parametrize("key", [b"", b"\x01" * 31, b"\x01" * 33])
def test_sealing_to_a_wrong_length_key_is_refused(key):
    with pytest.raises(CannotDecrypt):
        seal(PLAINTEXT, key)


@pytest.mark.parametrize(("public", "secret"), [
    (RECIPIENT.public.box_key[:31], RECIPIENT.box_secret),
    (RECIPIENT.public.box_key, RECIPIENT.box_secret[:31]),
    (b"", b""),
    (RECIPIENT.public.box_key + b"\x00", RECIPIENT.box_secret),
])
def test_wrong_length_recipient_keys_cannot_decrypt(public, secret):
    with pytest.raises(CannotDecrypt):
        open_sealed(SEALED, public, secret)
