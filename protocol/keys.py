"""Node identity: an Ed25519 signing key and an X25519 encryption key.

Theory of operation: a node's secret material is two 32-byte values, the Ed25519
seed and the X25519 secret. ``NodeKeys`` holds them and derives the public halves;
``PublicKeys`` is what certificates carry. The key fingerprint, the SHA-256 of the
Ed25519 public key in hex, is what operators compare and what every config pins for
its trust anchor.

Key files are JSON so an operator can see what they hold. Plain files carry the two
secrets in hex; sealed files carry them encrypted with XSalsa20-Poly1305 (secretbox)
under a key stretched from a passphrase with argon2id, with the cost parameters
stored beside the salt. Files are written atomically with mode 0600 and a file that
group or others can read is refused, as ssh refuses such a key.

Randomness is always handed in (``random_bytes``); the default is the operating
system's, and tests hand in a seeded source.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nacl.pwhash.argon2id as argon2id
import nacl.secret
import nacl.utils
from nacl.bindings import crypto_scalarmult_base, crypto_sign_seed_keypair
from nacl.exceptions import CryptoError

from protocol.errors import BadKeyFile, BadPassphrase
from protocol.signing import Domain, sign_bytes

RandomBytes = Callable[[int], bytes]
KEY_FILE_FORMAT = "govnode-keys"
KEY_FILE_VERSION = 1
SECRET_BYTES = 32


@dataclass(frozen=True)
class PublicKeys:
    verify_key: bytes  # Ed25519, 32 bytes
    box_key: bytes  # X25519, 32 bytes

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.verify_key)


@dataclass(frozen=True)
class NodeKeys:
    sign_seed: bytes = field(repr=False)
    box_secret: bytes = field(repr=False)
    public: PublicKeys = field(init=False)
    _signing_secret: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.sign_seed) != SECRET_BYTES or len(self.box_secret) != SECRET_BYTES:
            raise BadKeyFile("key material must be two 32-byte secrets")
        verify_key, signing_secret = crypto_sign_seed_keypair(self.sign_seed)
        object.__setattr__(self, "_signing_secret", signing_secret)
        object.__setattr__(self, "public", PublicKeys(verify_key, crypto_scalarmult_base(self.box_secret)))

    @classmethod
    def generate(cls, random_bytes: RandomBytes = nacl.utils.random) -> "NodeKeys":
        return cls(random_bytes(SECRET_BYTES), random_bytes(SECRET_BYTES))

    @classmethod
    def from_seed(cls, seed: bytes) -> "NodeKeys":
        """Deterministic keys from one seed: for test vectors and the simulator only."""
        return cls(_derive(seed, b"sign"), _derive(seed, b"box"))

    @property
    def fingerprint(self) -> str:
        return self.public.fingerprint

    def sign(self, domain: Domain, payload: bytes) -> bytes:
        return sign_bytes(self._signing_secret, domain, payload)


def _derive(seed: bytes, purpose: bytes) -> bytes:
    return hashlib.blake2b(seed, digest_size=32, person=b"govnode-" + purpose).digest()


def fingerprint(verify_key: bytes) -> str:
    return hashlib.sha256(verify_key).hexdigest()


def normalise_fingerprint(text: str) -> str:
    """Accept a fingerprint as printed, grouped, or with a ``sha256:`` prefix."""
    cleaned = text.strip().lower().removeprefix("sha256:")
    for separator in (":", " ", "-"):
        cleaned = cleaned.replace(separator, "")
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise BadKeyFile(f"not a key fingerprint (64 hex digits): {text[:80]!r}")
    return cleaned


def format_fingerprint(value: str) -> str:
    """Groups of four for reading aloud over the phone."""
    return ":".join(value[i:i + 4] for i in range(0, len(value), 4))


# --- key files ----------------------------------------------------------------

@dataclass(frozen=True)
class SealingCost:
    """argon2id cost. The default is libsodium's 'moderate' (256 MiB, ~1 s)."""

    opslimit: int = argon2id.OPSLIMIT_MODERATE
    memlimit: int = argon2id.MEMLIMIT_MODERATE


FAST_TEST_COST = SealingCost(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


def dump_key_file(keys: NodeKeys, passphrase: str | None = None, *,
                  cost: SealingCost = SealingCost(),
                  random_bytes: RandomBytes = nacl.utils.random) -> bytes:
    secrets = keys.sign_seed + keys.box_secret
    document: dict[str, object] = {"format": KEY_FILE_FORMAT, "version": KEY_FILE_VERSION,
                                   "fingerprint": keys.fingerprint}
    if passphrase is None:
        document.update(sealed=False, secrets=secrets.hex())
    else:
        salt = random_bytes(argon2id.SALTBYTES)
        box = nacl.secret.SecretBox(_stretch(passphrase, salt, cost))
        nonce = random_bytes(nacl.secret.SecretBox.NONCE_SIZE)
        document.update(sealed=True, kdf="argon2id", opslimit=cost.opslimit,
                        memlimit=cost.memlimit, salt=salt.hex(), nonce=nonce.hex(),
                        ciphertext=box.encrypt(secrets, nonce).ciphertext.hex())
    return (json.dumps(document, indent=2) + "\n").encode()


def load_key_file(data: bytes, passphrase: str | None = None) -> NodeKeys:
    try:
        document = json.loads(data)
        if document.get("format") != KEY_FILE_FORMAT or document.get("version") != KEY_FILE_VERSION:
            raise BadKeyFile("not a govnode key file (format/version)")
        if document.get("sealed"):
            secrets = _unseal(document, passphrase)
        else:
            secrets = bytes.fromhex(document["secrets"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise BadKeyFile(f"unreadable key file: {exc}") from None
    keys = NodeKeys(secrets[:SECRET_BYTES], secrets[SECRET_BYTES:])
    if document.get("fingerprint") not in (None, keys.fingerprint):
        raise BadKeyFile("key file fingerprint does not match its keys")
    return keys


def key_file_is_sealed(data: bytes) -> bool:
    try:
        return bool(json.loads(data).get("sealed"))
    except (ValueError, AttributeError, RecursionError):
        raise BadKeyFile("unreadable key file") from None


def _unseal(document: dict, passphrase: str | None) -> bytes:
    if passphrase is None:
        raise BadPassphrase("this key file is sealed: a passphrase is needed")
    if document.get("kdf") != "argon2id":
        raise BadKeyFile(f"unknown key derivation {document.get('kdf')!r}")
    cost = SealingCost(int(document["opslimit"]), int(document["memlimit"]))
    # An altered file must not make loading take minutes or gigabytes.
    if not (argon2id.OPSLIMIT_MIN <= cost.opslimit <= argon2id.OPSLIMIT_SENSITIVE
            and argon2id.MEMLIMIT_MIN <= cost.memlimit <= argon2id.MEMLIMIT_SENSITIVE):
        raise BadKeyFile("key file argon2id cost is outside libsodium's min..sensitive range")
    box = nacl.secret.SecretBox(_stretch(passphrase, bytes.fromhex(document["salt"]), cost))
    try:
        return box.decrypt(bytes.fromhex(document["ciphertext"]), bytes.fromhex(document["nonce"]))
    except CryptoError:
        raise BadPassphrase("wrong passphrase (or the key file was altered)") from None


def _stretch(passphrase: str, salt: bytes, cost: SealingCost) -> bytes:
    return argon2id.kdf(nacl.secret.SecretBox.KEY_SIZE, passphrase.encode(), salt,
                        opslimit=cost.opslimit, memlimit=cost.memlimit)


def write_key_file(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600: the secret never exists with wider permissions."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    if temporary.exists():
        temporary.unlink()
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def read_key_file(path: Path) -> bytes:
    """Read a key file, refusing one that group or others may read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise BadKeyFile(f"no key file at {path}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise BadKeyFile(f"{path} is readable by others (mode {stat.S_IMODE(mode):04o}); "
                         f"run: chmod 600 {path}")
    return path.read_bytes()
