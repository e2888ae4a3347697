"""The node's directory remembers the certificate a re-key replaced, for frames in flight."""

from __future__ import annotations

from protocol import certs
from protocol.directory import Record
from protocol.keys import NodeKeys

from node.member_directory import MemberDirectory
from node.store.db import open_database
from node.store.directory_store import DirectoryStore

NOW = 1_767_225_600_000
DAY = 86_400_000


async def test_a_rekey_keeps_the_replaced_certificate_until_revoked(tmp_path):
    root, old, new = (NodeKeys.from_seed(s) for s in (b"r", b"old", b"new"))
    db = await open_database(tmp_path / "node.db")
    try:
        directory = MemberDirectory(DirectoryStore(db), trust_anchor=root.fingerprint)
        root_cert = certs.self_signed_root(root, subject="gd", name="广东", not_before=NOW - DAY,
                                           not_after=NOW + 365 * DAY)

        def city(keys: NodeKeys, serial: int) -> certs.Certificate:
            return certs.issue_certificate(root, issuer="gd", subject="gd.chaozhou", name="潮州",
                                           level=certs.Level.CITY, subject_keys=keys.public,
                                           serial=serial, not_before=NOW - DAY, not_after=NOW + DAY)

        await directory.accept([Record.of(root_cert), Record.of(city(old, 1))], NOW)
        assert directory.previous_certificate("gd.chaozhou", NOW) is None
        await directory.accept([Record.of(city(new, 2))], NOW)
        assert directory.valid_certificate("gd.chaozhou", NOW).keys == new.public
        assert directory.previous_certificate("gd.chaozhou", NOW).keys == old.public
        revocation = certs.revoke(root, signer="gd", subject="gd.chaozhou", up_to_serial=1,
                                  reason="旧密钥泄露", revoked_at=NOW)
        await directory.accept([Record.of(revocation)], NOW)
        assert directory.previous_certificate("gd.chaozhou", NOW) is None  # compromised: no grace
        assert directory.valid_certificate("gd.chaozhou", NOW).serial == 2
    finally:
        await db.close()
