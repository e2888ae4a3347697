"""Node keys and fingerprints (protocol.keys): deterministic keys from a seed, their
public halves, domain-separated signing, and fingerprints in every printed form. The
two nodes' keys here are the ones tests/test_keys_files.py seals into key files."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.public import PrivateKey
from nacl.signing import SigningKey, VerifyKey

from protocol.errors import BadKeyFile
from protocol.keys import (NodeKeys, PublicKeys, fingerprint, format_fingerprint,
                           normalise_fingerprint)
from protocol.signing import Domain, verify_bytes

# --- helpers ---------------------------------------------------------------------

KEYS = NodeKeys.from_seed(b"test_keys node")
OTHER = NodeKeys.from_seed(b"test_keys other node")


# --- key material ------------------------------------------------------------------

def test_from_seed_is_deterministic():
    again = NodeKeys.from_seed(b"test_keys node")
    assert again.sign_seed == KEYS.sign_seed
    assert again.box_secret == KEYS.box_secret
    assert again.public == KEYS.public
    assert again.fingerprint == KEYS.fingerprint


def test_from_seed_separates_purposes_and_seeds():
    assert KEYS.sign_seed != KEYS.box_secret
    assert len(KEYS.sign_seed) == len(KEYS.box_secret) == 32
    assert OTHER.public.verify_key != KEYS.public.verify_key
    assert OTHER.public.box_key != KEYS.public.box_key


@settings(max_examples=30, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_from_seed_distinct_seeds_give_distinct_keys(a, b):
    if a == b:
        assert NodeKeys.from_seed(a).public == NodeKeys.from_seed(b).public
    else:
        assert NodeKeys.from_seed(a).public != NodeKeys.from_seed(b).public


def test_public_halves_match_libsodium():
    assert KEYS.public.verify_key == bytes(SigningKey(KEYS.sign_seed).verify_key)
    assert KEYS.public.box_key == bytes(PrivateKey(KEYS.box_secret).public_key)
    assert len(KEYS.public.verify_key) == len(KEYS.public.box_key) == 32


def test_fingerprint_is_sha256_hex_of_the_verify_key():
    expected = hashlib.sha256(KEYS.public.verify_key).hexdigest()
    assert KEYS.fingerprint == expected
    assert KEYS.public.fingerprint == expected
    assert fingerprint(KEYS.public.verify_key) == expected
    assert PublicKeys(KEYS.public.verify_key, b"\x00" * 32).fingerprint == expected
    assert len(expected) == 64 and expected == expected.lower()


def test_secrets_are_not_in_the_repr():
    text = repr(KEYS)
    assert KEYS.sign_seed.hex() not in text and KEYS.box_secret.hex() not in text
    assert repr(KEYS.sign_seed) not in text


@pytest.mark.parametrize(("seed", "box"), [(b"", b"\x00" * 32), (b"\x00" * 32, b"\x00" * 31),
                                           (b"\x00" * 33, b"\x00" * 32)])
def test_wrong_length_secrets_are_refused(seed, box):
    with pytest.raises(BadKeyFile):
        NodeKeys(seed, box)


def test_generate_uses_the_handed_randomness():
    calls = []

    def random_bytes(size):
        calls.append(size)
        return bytes([len(calls)]) * size

    generated = NodeKeys.generate(random_bytes)
    assert calls == [32, 32]
    assert generated.sign_seed == b"\x01" * 32 and generated.box_secret == b"\x02" * 32
    assert NodeKeys.generate().public != NodeKeys.generate().public


def test_sign_is_domain_separated_ed25519():
    signature = KEYS.sign(Domain.FRAME, b"payload")
    VerifyKey(KEYS.public.verify_key).verify(Domain.FRAME.value + b"payload", signature)
    verify_bytes(KEYS.public.verify_key, Domain.FRAME, b"payload", signature)
    assert signature != KEYS.sign(Domain.RECORD, b"payload")
    assert signature == KEYS.sign(Domain.FRAME, b"payload")  # Ed25519 is deterministic


# --- fingerprints --------------------------------------------------------------------

FP = KEYS.fingerprint


@pytest.mark.parametrize("text", [
    FP, FP.upper(), f"  {FP}\n", f"sha256:{FP}", f"SHA256:{FP}", f"sha256:{FP.upper()}",
    format_fingerprint(FP), format_fingerprint(FP).upper(),
    " ".join(FP[i:i + 4] for i in range(0, 64, 4)),
    "-".join(FP[i:i + 8] for i in range(0, 64, 8)),
    ":".join(FP[i:i + 2] for i in range(0, 64, 2)),
    f"sha256:{format_fingerprint(FP)}",
])
def test_normalise_fingerprint_accepts_printed_forms(text):
    assert normalise_fingerprint(text) == FP


@pytest.mark.parametrize("text", [
    "", "   ", "sha256:", FP[:-1], FP + "0", FP[:-1] + "g", FP[:-1] + "G", "z" * 64,
    "0x" + FP[2:], FP[:32] + "_" + FP[32:], FP[:32] + "." + FP[32:], "md5:" + FP,
    "٠" * 64, "０" * 64, FP[:-1] + "\u00e9", "sha256:sha256:" + FP, FP + "\x00",
])
def test_normalise_fingerprint_refuses_junk(text):
    with pytest.raises(BadKeyFile, match="not a key fingerprint"):
        normalise_fingerprint(text)


def test_format_fingerprint_groups_by_four():
    formatted = format_fingerprint(FP)
    groups = formatted.split(":")
    assert len(groups) == 16 and all(len(g) == 4 for g in groups)
    assert "".join(groups) == FP


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32),
       st.lists(st.sampled_from([":", " ", "-", ""]), min_size=63, max_size=63),
       st.booleans(), st.booleans())
def test_normalise_fingerprint_property(key, separators, upper, prefix):
    value = fingerprint(key)
    text = value[0] + "".join(sep + char for sep, char in zip(separators, value[1:]))
    text = ("sha256:" if prefix else "") + (text.upper() if upper else text)
    assert normalise_fingerprint(text) == value


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=90))
def test_normalise_fingerprint_never_raises_anything_else(text):
    try:
        result = normalise_fingerprint(text)
    except BadKeyFile:
        return
    assert len(result) == 64 and set(result) <= set("0123456789abcdef")
