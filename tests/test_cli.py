"""The operator's commands, run through click's runner against real nodes.

Each test builds what it needs with ``tests/federation.py`` (real servers on the
test's loop, real SQLite, real keys) and then drives ``govnode`` as an operator
would: refusals exit non-zero with a message that says what is wrong and leave no
half-made node behind; the enrollment, air-gap, re-key and revocation flows end with
the nodes in the state the commands promise.
"""

from __future__ import annotations

import logging
import sqlite3
import stat
from pathlib import Path

import aiohttp
import pytest
from click.testing import Result

from federation import Federation, govnode, last_json, wait_until
from node.app import Node
from node.clock import now_ms
from node.datadir import DataDir
from node.enrollment import EnrollmentAnswer
from protocol.keys import format_fingerprint
from protocol.wire import unpack

ROOT, CITY, OTHER_CITY = "gd", "gd.chaozhou", "gd.shantou"


@pytest.fixture
async def federation(tmp_path):
    federation = Federation(tmp_path)
    await federation.create_root(ROOT)
    yield federation
    await federation.stop_all()


# --- helpers -----------------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def refused(result: Result, *fragments: str) -> str:
    """The command failed and its message says (case-insensitively) each fragment."""
    assert result.exit_code != 0, result.output
    message = result.output.lower()
    for fragment in fragments:
        assert fragment.lower() in message, f"{fragment!r} not in:\n{result.output}"
    assert "traceback" not in message, result.output
    return result.output


def child_args(federation: Federation, node_id: str, *extra: str) -> list[str]:
    return ["init", "--data", str(federation.data_dir(node_id)), "--id", node_id,
            "--name", f"{node_id} 人民政府办公室", "--listen", "127.0.0.1:0",
            *federation._timing(), *extra]


def directory_rows(data_dir: Path) -> list[tuple]:
    connection = sqlite3.connect(f"file:{data_dir / 'node.db'}?mode=ro", uri=True)
    try:
        return connection.execute(
            "SELECT kind, subject, seq, hash FROM directory_records ORDER BY 1, 2").fetchall()
    finally:
        connection.close()


def keys_of(data_dir: Path, *, next_keys: bool = False):
    data = DataDir(data_dir)
    return data.load_keys(data.load_config(), next_keys=next_keys)


async def enrollment_state(parent: Node, node_id: str, fingerprint: str) -> dict:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{parent.urls[0]}/v1/enroll/{node_id}/{fingerprint}") as response:
            assert response.status == 200
            return unpack(await response.read())


# --- init ----------------------------------------------------------------------------------


async def test_init_writes_a_private_key_file_and_refuses_an_existing_node(tmp_path):
    root_dir = tmp_path / "gd"
    result = await govnode("init", "--data", str(root_dir), "--id", "gd", "--name", "广东省",
                           "--root", "--listen", "127.0.0.1:0", "--no-discovery", "--json")
    anchor = last_json(result)["trust_anchor"]
    assert last_json(result) == {"id": "gd", "root": True, "trust_anchor": anchor}
    assert format_fingerprint(anchor) in result.output  # printed for reading aloud
    assert mode_of(root_dir / "keys.json") == 0o600
    assert mode_of(root_dir) == 0o700
    assert keys_of(root_dir).fingerprint == anchor

    before = {p.name: p.read_bytes() for p in root_dir.iterdir() if p.name.startswith(("keys", "node.toml"))}
    refused(await govnode("init", "--data", str(root_dir), "--id", "gd", "--name", "又一个",
                          "--root", "--no-discovery", expect_ok=False), "already holds a node")
    refused(await govnode("init", "--data", str(root_dir), "--id", "gd.x", "--name", "x",
                          "--trust-anchor", anchor, "--no-send", "--no-discovery",
                          expect_ok=False), "already holds a node")
    after = {p.name: p.read_bytes() for p in root_dir.iterdir() if p.name.startswith(("keys", "node.toml"))}
    assert after == before, "a refused init touched the existing node"

    child_dir = tmp_path / "gd.x"
    result = await govnode("init", "--data", str(child_dir), "--id", "gd.x", "--name", "x",
                           "--trust-anchor", anchor, "--no-send", "--no-discovery", "--json")
    assert last_json(result) == {"id": "gd.x", "root": False, "enrollment": None}
    assert mode_of(child_dir / "keys.json") == 0o600


@pytest.mark.parametrize("args, fragments", [
    (("--id", "GD", "--root"), ("uppercase",)),
    (("--id", "gd..x", "--trust-anchor", "ab" * 32, "--no-send"), ("empty segment",)),
    (("--id", "gd.潮州", "--trust-anchor", "ab" * 32, "--no-send"), ("contains",)),
    (("--id", "gd", "--trust-anchor", "ab" * 32, "--no-send"), ("root id", "--root")),
    (("--id", "gd.x", "--root"), ("not a root id",)),
    (("--id", "gd.x", "--no-send"), ("--trust-anchor",)),
    (("--id", "gd.x", "--trust-anchor", "ab" * 32), ("--parent-url",)),
    (("--id", "gd.x", "--trust-anchor", "not-a-fingerprint", "--no-send"), ("fingerprint",)),
    (("--id", "gd", "--root", "--listen", "nowhere"), ("--listen",)),
    (("--id", "gd", "--root", "--level", "empire"), ("--level",)),
], ids=["uppercase id", "empty segment", "non-ascii id", "root id without --root",
        "child id with --root", "child without --trust-anchor", "child without --parent-url",
        "bad trust anchor", "bad --listen", "bad --level"])
async def test_init_refusals_leave_no_partial_node(tmp_path, args, fragments):
    data_dir = tmp_path / "node"
    result = await govnode("init", "--data", str(data_dir), "--name", "某单位", "--no-discovery",
                           *args, expect_ok=False)
    refused(result, *fragments)
    assert not data_dir.exists() or not any(data_dir.iterdir()), \
        f"a refused init left {sorted(p.name for p in data_dir.iterdir())} behind"


async def test_init_refuses_an_empty_name(tmp_path):
    data_dir = tmp_path / "node"
    refused(await govnode("init", "--data", str(data_dir), "--id", "gd", "--name", "  ",
                          "--root", "--no-discovery", expect_ok=False), "name")
    assert not data_dir.exists()


# --- enrollment: list, reject, approve ------------------------------------------------------


async def test_enroll_list_shows_the_pending_request_and_reject_ends_it(federation, caplog):
    root = federation.nodes[ROOT]
    root_dir = str(federation.data_dir(ROOT))
    result = await govnode(*child_args(federation, CITY, "--parent-url", root.urls[0],
                                       "--trust-anchor", federation.trust_anchor, "--json"))
    assert last_json(result)["enrollment"] == "pending"
    fingerprint = keys_of(federation.data_dir(CITY)).fingerprint

    listed = last_json(await govnode("enroll", "list", "--data", root_dir, "--json"))
    assert [(r["id"], r["fingerprint"], r["state"]) for r in listed["requests"]] == \
        [(CITY, fingerprint, "pending")]
    assert listed["requests"][0]["level"] == "city" and listed["requests"][0]["received_at"] > 0

    await govnode("enroll", "reject", CITY, "--reason", "不是本省单位", "--data", root_dir)
    state = await enrollment_state(root, CITY, fingerprint)
    assert (state["status"], state["reason"], state["chain"]) == ("rejected", "不是本省单位", ())
    assert last_json(await govnode("enroll", "list", "--data", root_dir, "--json")) == {"requests": []}
    every = last_json(await govnode("enroll", "list", "--all", "--data", root_dir, "--json"))
    assert [(r["id"], r["state"], r["reason"]) for r in every["requests"]] == \
        [(CITY, "rejected", "不是本省单位")]

    # A rejected request cannot be approved (or rejected again) afterwards.
    refused(await govnode("enroll", "approve", CITY, "--data", root_dir, expect_ok=False),
            "no pending enrollment request", CITY)
    refused(await govnode("enroll", "reject", CITY, "--reason", "again", "--data", root_dir,
                          expect_ok=False), "no pending enrollment request")
    assert root.directory.certificate(CITY) is None
    assert CITY not in directory_rows_subjects(federation.data_dir(ROOT))

    # The child, started, learns of the rejection from its poll and stays unenrolled.
    caplog.set_level(logging.INFO, logger="govnode.node")
    child = await federation.start(CITY)
    await wait_until(lambda: any("enrollment rejected" in r.getMessage() and "不是本省单位" in r.getMessage()
                                 for r in caplog.records), what="the child to see the rejection")
    assert not child.enrolled and child.health()["status"] == "not_enrolled"
    assert child.directory.certificate(CITY) is None


def directory_rows_subjects(data_dir: Path) -> set[str]:
    return {row[1] for row in directory_rows(data_dir)}


async def test_enroll_approve_of_an_unknown_node_or_ambiguous_fingerprint_fails(federation):
    root_dir = str(federation.data_dir(ROOT))
    refused(await govnode("enroll", "approve", "gd.nobody", "--data", root_dir, expect_ok=False),
            "no pending enrollment request from gd.nobody")
    refused(await govnode("enroll", "approve", str(Path(root_dir) / "missing.req"), "--data",
                          root_dir, expect_ok=False), "no pending enrollment request")


# --- the air-gapped flow ---------------------------------------------------------------------


async def test_air_gapped_enrollment_by_files(federation, tmp_path):
    root = federation.nodes[ROOT]
    root_dir, child_dir = federation.data_dir(ROOT), federation.data_dir(CITY)
    request_file, cert_file = tmp_path / "chaozhou.req", tmp_path / "chaozhou.cert"
    # No --parent-url: the site cannot reach the parent at all.
    await govnode(*child_args(federation, CITY, "--trust-anchor", federation.trust_anchor,
                              "--no-send"))
    await govnode("enroll", "request", "--data", str(child_dir), "--out", str(request_file))
    assert root.directory.certificate(CITY) is None
    await govnode("enroll", "approve", str(request_file), "--out", str(cert_file),
                  "--data", str(root_dir))
    answer = EnrollmentAnswer.decode(cert_file.read_bytes())
    assert answer.status == "approved" and answer.subject == CITY and len(answer.chain) == 2

    # Tampered answers are refused with a reason, and install nothing.
    genuine = cert_file.read_bytes()
    leaf = bytearray(answer.chain[-1])
    leaf[-1] ^= 0x01  # the last byte of the leaf certificate's signature
    forged = EnrollmentAnswer(answer.status, answer.subject, chain=(answer.chain[0], bytes(leaf)),
                              records=answer.records).encode()
    flipped = bytearray(genuine)
    flipped[genuine.index(answer.chain[-1]) + len(answer.chain[-1]) // 3] ^= 0xFF  # in the leaf
    other = EnrollmentAnswer("approved", "gd.shantou", chain=answer.chain).encode()
    for what, data, fragment in (("forged signature", forged, "bad_signature"),
                                 ("flipped byte", bytes(flipped), ""),
                                 ("truncated", genuine[:-10], "malformed"),
                                 ("for another node", other, "gd.shantou"),
                                 ("not approved", EnrollmentAnswer("pending", CITY).encode(),
                                  "pending")):
        tampered = tmp_path / f"tampered-{what.replace(' ', '-')}.cert"
        tampered.write_bytes(data)
        rows_before = directory_rows(child_dir)
        result = await govnode("enroll", "install", str(tampered), "--data", str(child_dir),
                               expect_ok=False)
        refused(result, fragment)
        assert directory_rows(child_dir) == rows_before == [], f"{what} installed something"

    result = await govnode("enroll", "install", str(cert_file), "--data", str(child_dir))
    assert f"installed certificate 1 for {CITY}" in result.output
    child = await federation.start(CITY)
    assert child.enrolled
    await federation.wait_converged()
    assert child.directory.members(now_ms()) == root.directory.members(now_ms()) == [ROOT, CITY]
    assert root.directory.endpoint(CITY).urls == child.urls

    # Installing the same answer again is harmless: the same certificate, nothing new.
    rows = directory_rows(child_dir)
    await govnode("enroll", "install", str(cert_file), "--data", str(child_dir))
    assert {r[:3] for r in directory_rows(child_dir) if r[0] == "cert"} == \
        {r[:3] for r in rows if r[0] == "cert"}


# --- rekey --------------------------------------------------------------------------------------


async def test_rekey_of_a_running_node(federation):
    root = federation.nodes[ROOT]
    city = await federation.enroll(CITY, "潮州市人民政府办公室")
    await federation.wait_converged()
    city_dir = federation.data_dir(CITY)
    old_fingerprint = city.keys.fingerprint

    result = await govnode("rekey", "--data", str(city_dir))
    assert "request sent to the parent: pending" in result.output
    next_file = DataDir(city_dir).next_keys_file
    assert next_file.exists() and mode_of(next_file) == 0o600
    new_fingerprint = keys_of(city_dir, next_keys=True).fingerprint
    assert new_fingerprint != old_fingerprint
    assert city.keys.fingerprint == old_fingerprint  # nothing changes until approved

    listed = last_json(await govnode("enroll", "list", "--data", str(federation.data_dir(ROOT)),
                                     "--json"))
    assert [(r["id"], r["fingerprint"]) for r in listed["requests"]] == [(CITY, new_fingerprint)]
    result = await govnode("enroll", "approve", CITY, "--fingerprint", new_fingerprint[:12],
                           "--data", str(federation.data_dir(ROOT)))
    assert "serial 2" in result.output

    await wait_until(lambda: city.keys.fingerprint == new_fingerprint and not next_file.exists(),
                     what="the running city to adopt its new keys")
    assert keys_of(city_dir).fingerprint == new_fingerprint
    assert mode_of(DataDir(city_dir).keys_file) == 0o600
    assert city.directory.certificate(CITY).serial == 2
    assert city.health()["certificate"]["serial"] == 2 and city.enrolled

    shown = last_json(await govnode("directory", "show", CITY, "--json",
                                    "--data", str(federation.data_dir(ROOT))))
    assert (shown["serial"], shown["fingerprint"], shown["state"]) == (2, new_fingerprint, "valid")
    # The city still takes part in gossip, now signing with its new key.
    await city.publish_endpoint()
    seq = city.directory.endpoint(CITY).seq
    await wait_until(lambda: root.directory.endpoint(CITY).seq == seq,
                     what="a record signed with the new key to reach the root")
    await federation.wait_converged()


async def test_the_root_cannot_rekey(federation):
    refused(await govnode("rekey", "--data", str(federation.data_dir(ROOT)), expect_ok=False),
            "root cannot re-key")
    assert not DataDir(federation.data_dir(ROOT)).next_keys_file.exists()


# --- revoke ----------------------------------------------------------------------------------


async def test_revoke_a_child_but_not_a_sibling(federation):
    root = federation.nodes[ROOT]
    city = await federation.enroll(CITY, "潮州市人民政府办公室")
    other = await federation.enroll(OTHER_CITY, "汕头市人民政府办公室")
    await federation.wait_converged()
    root_dir, city_dir = federation.data_dir(ROOT), federation.data_dir(CITY)

    rows = directory_rows(city_dir)
    refused(await govnode("revoke", OTHER_CITY, "--reason", "不喜欢", "--data", str(city_dir),
                          expect_ok=False), f"{CITY} cannot revoke {OTHER_CITY}")
    assert directory_rows(city_dir) == rows
    refused(await govnode("revoke", "gd.nobody", "--reason", "x", "--data", str(root_dir),
                          expect_ok=False), "gd.nobody has no certificate")
    shown = last_json(await govnode("directory", "show", OTHER_CITY, "--json",
                                    "--data", str(city_dir)))
    assert shown["state"] == "valid" and shown["revocation"] is None

    result = await govnode("revoke", OTHER_CITY, "--reason", "密钥泄露", "--data", str(root_dir))
    assert "up to serial 1" in result.output
    shown = last_json(await govnode("directory", "show", OTHER_CITY, "--json",
                                    "--data", str(root_dir)))
    assert shown["state"] == "revoked"
    assert shown["revocation"]["reason"] == "密钥泄露" and shown["revocation"]["by"] == ROOT
    assert shown["revocation"]["up_to_serial"] == 1
    # The revocation spreads by gossip to the running members, and the root refuses
    # the revoked node's gossip from then on.
    await wait_until(lambda: all(not n.directory.is_valid_member(OTHER_CITY, now_ms())
                                 for n in (root, city)),
                     what="the revocation to reach the other city")
    await wait_until(lambda: "revoked" in other.contacts.last_failure.get(ROOT, (0, ""))[1],
                     what="the root to refuse the revoked city's gossip")
    members = last_json(await govnode("directory", "list", "--json", "--data", str(city_dir)))
    assert {m["id"]: m["state"] for m in members["members"]} == \
        {ROOT: "valid", CITY: "valid", OTHER_CITY: "revoked"}


# --- status and directory output ----------------------------------------------------------------


async def test_status_and_directory_json(federation):
    root = federation.nodes[ROOT]
    city = await federation.enroll(CITY, "潮州市人民政府办公室")
    await federation.wait_converged()
    await wait_until(lambda: ROOT in city.contacts.last_success, what="a gossip contact")
    city_dir = str(federation.data_dir(CITY))

    report = last_json(await govnode("status", "--json", "--data", city_dir))
    assert {"id", "name", "level", "trust_anchor", "certificate", "running", "uptime_s",
            "directory", "peers", "pending_enrollments"} <= set(report)
    assert (report["id"], report["level"], report["trust_anchor"]) == \
        (CITY, "city", federation.trust_anchor)
    certificate = report["certificate"]
    assert (certificate["serial"], certificate["issuer"], certificate["state"],
            certificate["fingerprint"]) == (1, ROOT, "valid", city.keys.fingerprint)
    assert 364 <= certificate["expires_in_days"] <= 365
    assert report["directory"]["records"] == len(city.directory)
    assert report["directory"]["members"] == 2
    assert report["directory"]["version"] == city.directory.digest.root.hex()
    assert report["directory"]["equivocations"] == 0
    assert report["pending_enrollments"] == []
    assert report["running"] is True and isinstance(report["uptime_s"], int)

    root_report = last_json(await govnode("status", "--json", "--data",
                                          str(federation.data_dir(ROOT))))
    assert root_report["certificate"]["issuer"] == ROOT and root_report["level"] == "province"

    listed = last_json(await govnode("directory", "list", "--json", "--data", city_dir))
    assert [m["id"] for m in listed["members"]] == [ROOT, CITY]
    for member in listed["members"]:
        assert {"id", "name", "level", "division", "serial", "issuer", "not_after",
                "fingerprint", "state", "urls", "last_status_at", "version"} <= set(member)
        assert member["state"] == "valid" and member["urls"]
    by_id = {m["id"]: m for m in listed["members"]}
    assert by_id[CITY]["urls"] == list(city.urls) and by_id[ROOT]["urls"] == list(root.urls)
    assert by_id[CITY]["name"] == "潮州市人民政府办公室"

    shown = last_json(await govnode("directory", "show", ROOT, "--json", "--data", city_dir))
    assert shown["id"] == ROOT and shown["issuer"] == ROOT and shown["revocation"] is None
    assert shown["status"] is None  # status beacons travel up the tree, not down
    shown = last_json(await govnode("directory", "show", CITY, "--json", "--data",
                                    str(federation.data_dir(ROOT))))
    assert shown["status"]["seq"] >= 1 and shown["status"]["version"]
    refused(await govnode("directory", "show", "gd.nobody", "--json", "--data", city_dir,
                          expect_ok=False), "gd.nobody is not in this node's directory")


async def test_commands_on_a_missing_data_directory_fail_clearly(tmp_path):
    missing = str(tmp_path / "nowhere")
    for command in (("status", "--json"), ("directory", "list"), ("enroll", "list"),
                    ("rekey",), ("revoke", "gd.x", "--reason", "r")):
        refused(await govnode(*command, "--data", missing, expect_ok=False), "not found")
    assert not (tmp_path / "nowhere").exists()
