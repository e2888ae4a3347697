"""What the operator's commands do to a data directory (the CLI is a thin shell on this).

Each operation opens the node's database itself, so it works whether or not the node
is running: a running node picks up what an operation committed (an approval, a
revocation) within one gossip interval.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import aiohttp

from protocol import certs, ids
from protocol.certs import Certificate, Level
from protocol.directory import Record
from protocol.errors import ProtocolError
from protocol.keys import NodeKeys, dump_key_file, normalise_fingerprint, write_key_file
from protocol.wire import unpack

from node.clock import now_ms
from node.config import NodeConfig, render_config
from node.context import NodeContext
from node.datadir import DataDir
from node.enrollment import (ROOT_CERT_DAYS, DAY_MS, EnrollmentAnswer, EnrollmentError,
                             answer_for, approve, install_answer, make_request, reject)
from node.member_directory import MemberDirectory
from node.store.connection import Database
from node.store.db import open_database
from node.store.directory_store import DirectoryStore
from node.store.enrollment_store import EnrollmentStore, StoredRequest
from node.store.state_store import StateStore


class OperationError(Exception):
    """An operation that cannot be done; the message tells the operator why and what to do."""


@dataclass
class OpenNode:
    data: DataDir
    config: NodeConfig
    directory: MemberDirectory
    enrollments: EnrollmentStore
    state: StateStore
    db: Database

    def context(self, passphrase: str | None = None) -> NodeContext:
        """What document commands need; frames they queue go out when the node runs."""
        keys = self.data.load_keys(self.config, passphrase)
        return NodeContext(self.config.node_id, keys, self.config, self.directory, self.db)


@asynccontextmanager
async def open_node(data_dir: Path) -> AsyncIterator[OpenNode]:
    data = DataDir(Path(data_dir))
    config = data.load_config()
    db = await open_database(data.database_file, secure_delete=config.secure_delete)
    try:
        directory = MemberDirectory(DirectoryStore(db), trust_anchor=config.trust_anchor)
        await directory.load()
        yield OpenNode(data, config, directory, EnrollmentStore(db), StateStore(db), db)
    finally:
        await db.close()


# --- init -----------------------------------------------------------------------

@dataclass(frozen=True)
class NewNode:
    node_id: str
    name: str
    level: Level | None = None
    division: str | None = None
    host: str = "127.0.0.1"
    port: int = 8440
    public_urls: tuple[str, ...] = ()
    parent_url: str = ""
    trust_anchor: str = ""
    passphrase: str | None = None  # seal the key file with it
    passphrase_env: str = "GOVNODE_PASSPHRASE"
    discovery: bool = True
    discovery_interfaces: tuple[str, ...] = ()
    gossip_interval_ms: int | None = None
    status_interval_ms: int | None = None
    gossip_fanout: int | None = None
    crypto_threads: bool | None = None  # [delivery] crypto_threads; None: the default

    @property
    def resolved_level(self) -> Level:
        if self.level is not None:
            return self.level
        return {1: Level.PROVINCE, 2: Level.CITY}.get(ids.depth(self.node_id), Level.COUNTY)


def _prepare_directory(data: DataDir, new: NewNode, trust_anchor: str, keys: NodeKeys) -> None:
    if data.config_file.exists() or data.keys_file.exists():
        raise OperationError(f"{data.path} already holds a node; choose an empty directory")
    data.path.mkdir(parents=True, exist_ok=True)
    data.path.chmod(0o700)
    write_key_file(data.keys_file, dump_key_file(keys, new.passphrase))
    gossip = {k: v for k, v in (("interval_ms", new.gossip_interval_ms),
                                ("status_interval_ms", new.status_interval_ms),
                                ("fanout", new.gossip_fanout)) if v is not None}
    data.config_file.write_text(render_config({
        "node": {"id": new.node_id, "name": new.name, "level": new.resolved_level.value,
                 "division": new.division or "", "trust_anchor": trust_anchor},
        "server": {"host": new.host, "port": new.port, "public_urls": list(new.public_urls)},
        "parent": {"url": new.parent_url},
        "keys": {"passphrase_env": new.passphrase_env},
        "gossip": gossip,
        "delivery": {} if new.crypto_threads is None else {"crypto_threads": new.crypto_threads},
        "discovery": {"enabled": new.discovery, "interfaces": list(new.discovery_interfaces)},
    }), encoding="utf-8")


def _validate_identity(new: NewNode) -> None:
    try:
        ids.validate_node_id(new.node_id)
    except ProtocolError as error:
        raise OperationError(error.detail) from None
    if not new.name.strip():
        raise OperationError("a display name is required (--name)")


async def init_root(data_dir: Path, new: NewNode) -> Certificate:
    """Create a province root: keys, self-signed certificate, config pinning itself."""
    _validate_identity(new)
    if ids.parent(new.node_id) is not None:
        raise OperationError(f"{new.node_id} is not a root id; a root has one segment (e.g. gd)")
    keys = NodeKeys.generate()
    data = DataDir(Path(data_dir))
    _prepare_directory(data, new, keys.fingerprint, keys)
    now = now_ms()
    root = certs.self_signed_root(keys, subject=new.node_id, name=new.name, division=new.division,
                                  not_before=now - 60_000, not_after=now + ROOT_CERT_DAYS * DAY_MS)
    async with open_node(data.path) as node:
        await node.directory.accept([Record.of(root)], now)
    return root


async def init_child(data_dir: Path, new: NewNode, *, send: bool = True) -> EnrollmentAnswer | None:
    """Create a child node and (unless air-gapped) send its request to the parent."""
    _validate_identity(new)
    if ids.parent(new.node_id) is None:
        raise OperationError(f"{new.node_id} is a root id; use --root to create a province")
    if send and not new.parent_url:
        raise OperationError("--parent-url is needed to send the enrollment request")
    try:
        normalise_fingerprint(new.trust_anchor)
    except ProtocolError as error:
        raise OperationError(f"--trust-anchor: {error.detail}") from None
    keys = NodeKeys.generate()
    data = DataDir(Path(data_dir))
    _prepare_directory(data, new, new.trust_anchor, keys)
    async with open_node(data.path):
        pass  # creates and migrates the database
    if not send:
        return None
    return await send_request(data.path, keys)


async def build_request(data_dir: Path, keys: NodeKeys) -> certs.EnrollmentRequest:
    config = DataDir(Path(data_dir)).load_config()
    return make_request(keys, node_id=config.node_id, name=config.name, level=config.level,
                        division=config.division, now_ms=now_ms())


async def send_request(data_dir: Path, keys: NodeKeys) -> EnrollmentAnswer:
    config = DataDir(Path(data_dir)).load_config()
    request = await build_request(data_dir, keys)
    url = f"{config.parent_url}/v1/enroll"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async with session.post(url, data=request.encode(),
                                    headers={"Content-Type": "application/msgpack",
                                             "Accept": "application/msgpack"}) as response:
                body = await response.read()
                if response.status >= 400:
                    raise OperationError(f"{url} refused the request: {_error_text(body)}")
    except aiohttp.ClientError as error:
        raise OperationError(f"cannot reach the parent at {url}: {error}. The request can be "
                             f"sent again later: the node re-sends it when it runs.") from None
    return EnrollmentAnswer.decode(body)


def _error_text(body: bytes) -> str:
    try:
        document = unpack(body)
        return f"{document['error']}: {document['detail']}"
    except (ProtocolError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


# --- the parent's side of enrollment ------------------------------------------------

async def list_requests(data_dir: Path, state: str | None = "pending") -> list[StoredRequest]:
    async with open_node(data_dir) as node:
        return await node.enrollments.list(state)


async def _find_pending(node: OpenNode, subject: str, fingerprint: str | None) -> StoredRequest:
    pending = [r for r in await node.enrollments.pending_for(subject)
               if fingerprint is None or r.request.fingerprint.startswith(fingerprint)]
    if not pending:
        raise OperationError(f"no pending enrollment request from {subject} "
                             f"(see `govnode enroll list`)")
    if len(pending) > 1:
        raise OperationError(f"{len(pending)} pending requests from {subject} with different "
                             f"keys; choose one with --fingerprint")
    return pending[0]


async def approve_request(data_dir: Path, subject: str, *, fingerprint: str | None = None,
                          passphrase: str | None = None) -> Certificate:
    async with open_node(data_dir) as node:
        keys = node.data.load_keys(node.config, passphrase)
        stored = await _find_pending(node, subject, fingerprint)
        try:
            return await approve(stored, keys=keys, own_id=node.config.node_id,
                                 directory=node.directory, store=node.enrollments,
                                 now_ms=now_ms(), cert_days=node.config.cert_days)
        except EnrollmentError as error:
            raise OperationError(str(error)) from None


async def reject_request(data_dir: Path, subject: str, reason: str, *,
                         fingerprint: str | None = None) -> None:
    async with open_node(data_dir) as node:
        stored = await _find_pending(node, subject, fingerprint)
        await reject(stored, reason=reason, store=node.enrollments, now_ms=now_ms())


async def approve_request_file(data_dir: Path, request_data: bytes, *,
                               passphrase: str | None = None) -> bytes:
    """Air-gapped approval: a request file in, an answer file (certificate chain) out."""
    async with open_node(data_dir) as node:
        keys = node.data.load_keys(node.config, passphrase)
        request = certs.decode_enrollment_request(request_data)
        if request.parent != node.config.node_id:
            raise OperationError(f"{request.subject} must enroll with {request.parent}, "
                                 f"not with {node.config.node_id}")
        stored = await node.enrollments.add(request, now_ms())
        if stored.state == "pending":
            await approve(stored, keys=keys, own_id=node.config.node_id, directory=node.directory,
                          store=node.enrollments, now_ms=now_ms(), cert_days=node.config.cert_days)
            stored = await node.enrollments.get(request.subject, request.fingerprint)
        return answer_for(stored, node.directory, request.subject).encode()


async def install_answer_file(data_dir: Path, answer_data: bytes, *,
                              passphrase: str | None = None) -> Certificate:
    async with open_node(data_dir) as node:
        keys = _keys_awaiting_certificate(node, passphrase)
        try:
            return await install_answer(EnrollmentAnswer.decode(answer_data), keys=keys,
                                        own_id=node.config.node_id, directory=node.directory,
                                        now_ms=now_ms())
        except EnrollmentError as error:
            raise OperationError(str(error)) from None


def _keys_awaiting_certificate(node: OpenNode, passphrase: str | None) -> NodeKeys:
    """The keys a pending (re-)enrollment is for: the re-key's new keys if there are any."""
    if node.data.next_keys_file.exists():
        return node.data.load_keys(node.config, passphrase, next_keys=True)
    return node.data.load_keys(node.config, passphrase)


async def request_file(data_dir: Path, *, passphrase: str | None = None) -> bytes:
    async with open_node(data_dir) as node:
        keys = _keys_awaiting_certificate(node, passphrase)
    return (await build_request(data_dir, keys)).encode()


# --- re-key and revoke ---------------------------------------------------------------

async def rekey(data_dir: Path, *, passphrase: str | None = None,
                send: bool = True) -> EnrollmentAnswer | None:
    """New keys for this node; they take over once the parent certifies them."""
    data = DataDir(Path(data_dir))
    config = data.load_config()
    if config.is_root:
        raise OperationError("the root cannot re-key in place: its key is every node's trust "
                             "anchor. Create a new root and distribute its fingerprint.")
    keys = NodeKeys.generate()
    write_key_file(data.next_keys_file, dump_key_file(keys, passphrase))
    return await send_request(data.path, keys) if send else None


async def revoke(data_dir: Path, subject: str, reason: str, *,
                 passphrase: str | None = None) -> certs.Revocation:
    async with open_node(data_dir) as node:
        own_id = node.config.node_id
        keys = node.data.load_keys(node.config, passphrase)
        target = node.directory.certificate(subject)
        if target is None:
            raise OperationError(f"{subject} has no certificate in this node's directory")
        try:
            revocation = certs.revoke(keys, signer=own_id, subject=subject,
                                      up_to_serial=target.serial, reason=reason,
                                      revoked_at=now_ms())
        except ProtocolError as error:
            raise OperationError(f"{own_id} cannot revoke {subject}: {error.detail}") from None
        result = await node.directory.accept([Record.of(revocation)], now_ms())
        if result.rejected:
            _, refusal = result.rejected[0]
            raise OperationError(f"revocation refused: {refusal.code}: {refusal.detail}")
        return revocation

