"""Key files (protocol.keys): plain and passphrase-sealed files round-trip, every
tampered, truncated or garbage file (and any field value at all) is refused with a
typed error, a hostile sealing cost is refused before any key stretching, and on
disk a key file is written 0600 and read only when no one else can read it. The
node keys and fingerprint are those of tests/test_keys.py."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import nacl.pwhash.argon2id as argon2id
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import keys as keys_module
from protocol.errors import BadKeyFile, BadPassphrase, ProtocolError
from protocol.keys import (FAST_TEST_COST, KEY_FILE_FORMAT, KEY_FILE_VERSION, NodeKeys,
                           SealingCost, dump_key_file, key_file_is_sealed, load_key_file,
                           read_key_file, write_key_file)
from test_keys import FP, KEYS, OTHER

# --- helpers ---------------------------------------------------------------------

PASSPHRASE = "correct horse 电池 staple"


def counter_random(label: str):
    """A handed-in, reproducible 'random' source."""
    state = {"n": 0}

    def random_bytes(size: int) -> bytes:
        state["n"] += 1
        return hashlib.blake2b(f"{label}/{state['n']}".encode(), digest_size=size).digest()

    return random_bytes


def sealed_file(keys: NodeKeys = KEYS, passphrase: str = PASSPHRASE, label: str = "salt") -> bytes:
    return dump_key_file(keys, passphrase, cost=FAST_TEST_COST, random_bytes=counter_random(label))


def edited(data: bytes, **changes) -> bytes:
    document = json.loads(data)
    for key, value in changes.items():
        if value is ...:
            del document[key]
        else:
            document[key] = value
    return json.dumps(document).encode()


PLAIN = dump_key_file(KEYS)
SEALED = sealed_file()

# --- key files: round trips ------------------------------------------------------------

def test_plain_key_file_round_trip():
    document = json.loads(PLAIN)
    assert document["format"] == KEY_FILE_FORMAT and document["version"] == KEY_FILE_VERSION
    assert document["sealed"] is False
    assert document["fingerprint"] == KEYS.fingerprint
    assert key_file_is_sealed(PLAIN) is False
    loaded = load_key_file(PLAIN)
    assert (loaded.sign_seed, loaded.box_secret) == (KEYS.sign_seed, KEYS.box_secret)
    assert loaded.public == KEYS.public


def test_plain_key_file_ignores_a_passphrase():
    assert load_key_file(PLAIN, "unused").public == KEYS.public


def test_sealed_key_file_round_trip():
    document = json.loads(SEALED)
    assert document["sealed"] is True and document["kdf"] == "argon2id"
    assert document["opslimit"] == FAST_TEST_COST.opslimit
    assert document["memlimit"] == FAST_TEST_COST.memlimit
    assert "secrets" not in document
    for secret in (KEYS.sign_seed, KEYS.box_secret):
        assert secret.hex().encode() not in SEALED
    assert key_file_is_sealed(SEALED) is True
    loaded = load_key_file(SEALED, PASSPHRASE)
    assert (loaded.sign_seed, loaded.box_secret) == (KEYS.sign_seed, KEYS.box_secret)


@settings(max_examples=15, deadline=None)
@given(st.text(max_size=30))
def test_sealed_round_trip_any_passphrase(passphrase):
    data = dump_key_file(OTHER, passphrase, cost=FAST_TEST_COST,
                         random_bytes=counter_random("any"))
    assert load_key_file(data, passphrase).public == OTHER.public


def test_sealing_is_deterministic_for_handed_randomness_and_salted():
    assert sealed_file(label="a") == sealed_file(label="a")
    first, second = json.loads(sealed_file(label="a")), json.loads(sealed_file(label="b"))
    assert first["salt"] != second["salt"] and first["nonce"] != second["nonce"]
    assert first["ciphertext"] != second["ciphertext"]
    assert len(bytes.fromhex(first["salt"])) == argon2id.SALTBYTES


def test_default_sealing_cost_is_moderate():
    assert SealingCost() == SealingCost(argon2id.OPSLIMIT_MODERATE, argon2id.MEMLIMIT_MODERATE)
    assert FAST_TEST_COST.memlimit < SealingCost().memlimit


def test_stored_cost_is_used_to_unseal():
    # A file sealed at another cost still opens: the cost is read from the file.
    cost = SealingCost(argon2id.OPSLIMIT_MIN + 1, argon2id.MEMLIMIT_MIN * 2)
    data = dump_key_file(KEYS, "pw", cost=cost, random_bytes=counter_random("cost"))
    assert json.loads(data)["opslimit"] == cost.opslimit
    assert load_key_file(data, "pw").public == KEYS.public
    # ... and changing it changes the key, so the file no longer opens.
    with pytest.raises(BadPassphrase):
        load_key_file(edited(data, opslimit=argon2id.OPSLIMIT_MIN), "pw")


# --- key files: refusals -----------------------------------------------------------------

@pytest.mark.parametrize("wrong", ["", "Correct horse 电池 staple", PASSPHRASE + " ", "x"])
def test_wrong_passphrase(wrong):
    with pytest.raises(BadPassphrase) as info:
        load_key_file(SEALED, wrong)
    assert info.value.code == "bad_passphrase"


def test_missing_passphrase_for_sealed_file():
    with pytest.raises(BadPassphrase, match="passphrase is needed"):
        load_key_file(SEALED)


def test_empty_passphrase_is_a_passphrase():
    data = dump_key_file(KEYS, "", cost=FAST_TEST_COST, random_bytes=counter_random("empty"))
    assert key_file_is_sealed(data)
    assert load_key_file(data, "").public == KEYS.public
    with pytest.raises(BadPassphrase):
        load_key_file(data)


def _flip_hex(text: str, index: int = 0) -> str:
    return text[:index] + ("0" if text[index] != "0" else "1") + text[index + 1:]


TAMPERED_PLAIN = {
    "fingerprint changed": edited(PLAIN, fingerprint=OTHER.fingerprint),
    "secrets changed": edited(PLAIN, secrets=_flip_hex(json.loads(PLAIN)["secrets"])),
    "secrets truncated": edited(PLAIN, secrets=json.loads(PLAIN)["secrets"][:-2]),
    "secrets extended": edited(PLAIN, secrets=json.loads(PLAIN)["secrets"] + "00"),
    "secrets odd length": edited(PLAIN, secrets=json.loads(PLAIN)["secrets"][:-1]),
    "secrets not hex": edited(PLAIN, secrets="zz" * 64),
    "secrets as int": edited(PLAIN, secrets=7),
    "secrets as list": edited(PLAIN, secrets=[1, 2]),
    "secrets missing": edited(PLAIN, secrets=...),
    "wrong format": edited(PLAIN, format="ssh-ed25519"),
    "format missing": edited(PLAIN, format=...),
    "version 2": edited(PLAIN, version=2),
    "version as string": edited(PLAIN, version="1"),
    "not json": b"-----BEGIN OPENSSH PRIVATE KEY-----\n",
    "empty": b"",
    "json list": b"[1, 2]",
    "json string": b'"govnode-keys"',
    "json null": b"null",
    "json number": b"42",
    "truncated": PLAIN[: len(PLAIN) // 2],
    "non utf-8": b"\xff\xfe" + PLAIN,
    "nul bytes": PLAIN.replace(b"{", b"{\x00", 1),
    "deeply nested json": b"[" * 100_000,
    "deeply nested json object": b'{"a":' * 100_000,
}


@pytest.mark.parametrize("data", list(TAMPERED_PLAIN.values()), ids=list(TAMPERED_PLAIN))
def test_tampered_or_garbage_key_file_is_bad_key_file(data):
    with pytest.raises(BadKeyFile) as info:
        load_key_file(data)
    assert info.value.code == "bad_key_file"


TAMPERED_SEALED = {
    "unknown kdf": (edited(SEALED, kdf="scrypt"), BadKeyFile),
    "kdf missing": (edited(SEALED, kdf=...), BadKeyFile),
    "salt not hex": (edited(SEALED, salt="zz"), BadKeyFile),
    "salt too short": (edited(SEALED, salt="00" * 8), BadKeyFile),
    "salt missing": (edited(SEALED, salt=...), BadKeyFile),
    "nonce missing": (edited(SEALED, nonce=...), BadKeyFile),
    "ciphertext missing": (edited(SEALED, ciphertext=...), BadKeyFile),
    "ciphertext not hex": (edited(SEALED, ciphertext="not hex"), BadKeyFile),
    "opslimit not a number": (edited(SEALED, opslimit="fast"), BadKeyFile),
    "opslimit missing": (edited(SEALED, opslimit=...), BadKeyFile),
    "memlimit below minimum": (edited(SEALED, memlimit=1), BadKeyFile),
    "opslimit zero": (edited(SEALED, opslimit=0), BadKeyFile),
    "fingerprint changed": (edited(SEALED, fingerprint=OTHER.fingerprint), BadKeyFile),
    # Secretbox cannot tell a wrong passphrase from altered ciphertext, salt or nonce.
    "ciphertext flipped": (edited(SEALED, ciphertext=_flip_hex(json.loads(SEALED)["ciphertext"])),
                           BadPassphrase),
    "salt flipped": (edited(SEALED, salt=_flip_hex(json.loads(SEALED)["salt"])), BadPassphrase),
    "nonce flipped": (edited(SEALED, nonce=_flip_hex(json.loads(SEALED)["nonce"])),
                      BadPassphrase),
    "ciphertext truncated": (edited(SEALED, ciphertext=json.loads(SEALED)["ciphertext"][:-2]),
                             BadPassphrase),
    # Same salt, nonce and passphrase: it decrypts, but the fingerprint gives it away.
    "another file's ciphertext": (edited(SEALED, ciphertext=json.loads(
        sealed_file(OTHER))["ciphertext"]), BadKeyFile),
}


@pytest.mark.parametrize(("data", "error"), list(TAMPERED_SEALED.values()),
                         ids=list(TAMPERED_SEALED))
def test_tampered_sealed_key_file(data, error):
    with pytest.raises(error):
        load_key_file(data, PASSPHRASE)


def test_sealed_file_with_wrong_length_secrets_inside_is_bad_key_file():
    import nacl.secret

    salt, nonce = b"s" * argon2id.SALTBYTES, b"n" * nacl.secret.SecretBox.NONCE_SIZE
    key = argon2id.kdf(32, b"pw", salt, opslimit=FAST_TEST_COST.opslimit,
                       memlimit=FAST_TEST_COST.memlimit)
    ciphertext = nacl.secret.SecretBox(key).encrypt(b"x" * 63, nonce).ciphertext
    data = edited(sealed_file(passphrase="pw"), salt=salt.hex(), nonce=nonce.hex(),
                  ciphertext=ciphertext.hex(), fingerprint=...)
    with pytest.raises(BadKeyFile):
        load_key_file(data, "pw")


def test_fingerprint_is_optional_but_checked_when_present():
    assert load_key_file(edited(PLAIN, fingerprint=...)).public == KEYS.public
    assert load_key_file(edited(PLAIN, fingerprint=None)).public == KEYS.public
    with pytest.raises(BadKeyFile, match="does not match"):
        load_key_file(edited(PLAIN, fingerprint=FP.upper()))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_bad_key_files(data):
    with pytest.raises(BadKeyFile):
        load_key_file(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["format", "version", "fingerprint", "sealed", "secrets", "extra"]),
       JSON_VALUES)
def test_any_plain_field_value_loads_or_is_refused_with_a_typed_error(key, value):
    # Without a passphrase, sealed=true stops before any key stretching.
    data = edited(PLAIN, **{key: value})
    try:
        loaded = load_key_file(data)
    except (BadKeyFile, BadPassphrase):
        return
    assert loaded.public == KEYS.public


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["kdf", "salt", "nonce", "ciphertext", "fingerprint", "sealed"]),
       JSON_VALUES)
def test_any_sealed_field_value_loads_or_is_refused_with_a_typed_error(key, value):
    # The cost fields are left alone: a hostile cost is a denial of service, not a crash.
    try:
        loaded = load_key_file(edited(SEALED, **{key: value}), PASSPHRASE)
    except ProtocolError as exc:
        assert isinstance(exc, (BadKeyFile, BadPassphrase))
        return
    assert loaded.public == KEYS.public


@pytest.mark.parametrize("data", [b"", b"not json", b"[]", b"\xff", b"[" * 100_000])
def test_key_file_is_sealed_refuses_garbage(data):
    with pytest.raises(BadKeyFile):
        key_file_is_sealed(data)


# --- files on disk --------------------------------------------------------------------------

def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_write_key_file_creates_mode_0600(tmp_path):
    path = tmp_path / "node.key"
    write_key_file(path, SEALED)
    assert _mode(path) == 0o600
    assert path.read_bytes() == SEALED
    assert not (tmp_path / "node.key.tmp").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node.key"]


def test_write_key_file_is_0600_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        write_key_file(tmp_path / "node.key", PLAIN)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "node.key") == 0o600


def test_write_key_file_replaces_a_readable_file_and_a_stale_temporary(tmp_path):
    path = tmp_path / "node.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    stale = tmp_path / "node.key.tmp"
    stale.write_bytes(b"stale")
    stale.chmod(0o644)
    write_key_file(path, PLAIN)
    assert path.read_bytes() == PLAIN
    assert _mode(path) == 0o600
    assert not stale.exists()


def test_write_then_read_then_load(tmp_path):
    path = tmp_path / "node.key"
    write_key_file(str(path), SEALED)  # str paths work too
    assert load_key_file(read_key_file(str(path)), PASSPHRASE).public == KEYS.public


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606, 0o620, 0o610, 0o601, 0o777])
def test_read_key_file_refuses_group_or_other_access(tmp_path, mode):
    path = tmp_path / "node.key"
    path.write_bytes(PLAIN)
    path.chmod(mode)
    with pytest.raises(BadKeyFile, match="chmod 600") as info:
        read_key_file(path)
    assert f"{mode:04o}" in info.value.detail
    assert str(path) in info.value.detail


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_read_key_file_accepts_owner_only(tmp_path, mode):
    path = tmp_path / "node.key"
    path.write_bytes(PLAIN)
    path.chmod(mode)
    assert read_key_file(path) == PLAIN


def test_read_key_file_missing_is_bad_key_file(tmp_path):
    with pytest.raises(BadKeyFile, match="no key file"):
        read_key_file(tmp_path / "absent.key")


def test_module_documents_its_format_constants():
    assert keys_module.SECRET_BYTES == 32
    assert KEY_FILE_FORMAT == "govnode-keys" and KEY_FILE_VERSION == 1


def test_sealed_key_file_with_an_absurd_cost_is_refused_before_stretching():
    import json as _json
    import nacl.pwhash.argon2id as _argon2id
    from protocol.keys import FAST_TEST_COST, BadKeyFile, NodeKeys, dump_key_file, load_key_file
    document = _json.loads(dump_key_file(NodeKeys.from_seed(b"cost"), "pw", cost=FAST_TEST_COST))
    document["memlimit"] = _argon2id.MEMLIMIT_SENSITIVE * 64
    with pytest.raises(BadKeyFile, match="cost"):
        load_key_file(_json.dumps(document).encode(), "pw")
