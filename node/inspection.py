"""Read-only views of a node for the operator: ``status`` and ``directory``.

They read the node's database directly (the node need not run) and ask the running
node's ``/v1/health`` for what only it knows (uptime), when it answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from protocol.directory import RecordKind
from protocol.errors import ProtocolError

from node.clock import now_ms
from node.operations import open_node


async def node_status(data_dir: Path) -> dict[str, Any]:
    async with open_node(data_dir) as node:
        config, directory, now = node.config, node.directory, now_ms()
        certificate = directory.certificate(config.node_id)
        try:
            directory.valid_certificate(config.node_id, now)
            certificate_state = "valid"
        except ProtocolError as refusal:
            certificate_state = refusal.code
        contacts = await node.state.contacts()
        pending = await node.enrollments.list("pending")
        evidence = await node.directory.equivocation_evidence()
        members = directory.members(now)
        own_endpoint = directory.endpoint(config.node_id)  # the real port, also for --listen :0
    live = await _live_health(config.public_urls or (own_endpoint.urls if own_endpoint else ())
                              or (f"http://{config.host}:{config.port}",))
    if live is not None and live.get("id") != config.node_id:
        live = None  # another node now answers at that address
    return {
        "id": config.node_id, "name": config.name, "level": config.level.value,
        "trust_anchor": config.trust_anchor,
        "certificate": None if certificate is None else {
            "serial": certificate.serial, "issuer": certificate.issuer,
            "not_after": certificate.not_after, "fingerprint": certificate.fingerprint,
            "state": certificate_state,
            "expires_in_days": round((certificate.not_after - now) / 86_400_000, 1)},
        "running": live is not None,
        "uptime_s": live.get("uptime_s") if live else None,
        "directory": {"records": len(directory), "members": len(members),
                      "version": directory.digest.root.hex(), "equivocations": len(evidence)},
        "peers": [{"peer": c.peer, "last_success": c.last_success, "last_failure": c.last_failure,
                   "failures": c.failures, "last_error": c.last_error} for c in contacts],
        "pending_enrollments": [r.subject for r in pending],
    }


async def _live_health(urls: tuple[str, ...]) -> dict | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(urls[0] + "/v1/health") as response:
                return await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, OSError, ValueError, TimeoutError):
        return None


async def directory_members(data_dir: Path) -> list[dict[str, Any]]:
    async with open_node(data_dir) as node:
        directory, now = node.directory, now_ms()
        return [_member_view(directory, record.subject, now)
                for record in sorted(directory.records(RecordKind.CERT), key=lambda r: r.subject)]


async def directory_entry(data_dir: Path, subject: str) -> dict[str, Any] | None:
    async with open_node(data_dir) as node:
        if node.directory.certificate(subject) is None:
            return None
        view = _member_view(node.directory, subject, now_ms())
        status = node.directory.status(subject)
        view["status"] = None if status is None else {
            "seq": status.seq, "at": status.at, "version": status.version,
            "uptime_s": status.uptime_s, "queues": status.queue_depths,
            "last_contact": status.last_contact, "directory_version": status.directory_root,
            "disk_free": status.disk_free, "stats": status.stats}
        revocation = next((r for r in node.directory.revocations() if r.subject == subject), None)
        view["revocation"] = None if revocation is None else {
            "up_to_serial": revocation.up_to_serial, "by": revocation.signer,
            "reason": revocation.reason, "at": revocation.revoked_at}
        return view


def _member_view(directory, subject: str, now: int) -> dict[str, Any]:
    certificate = directory.certificate(subject)
    endpoint = directory.endpoint(subject)
    status = directory.status(subject)
    try:
        directory.valid_certificate(subject, now)
        state = "valid"
    except ProtocolError as refusal:
        state = refusal.code
    return {"id": subject, "name": certificate.name, "level": certificate.level.value,
            "division": certificate.division, "serial": certificate.serial,
            "issuer": certificate.issuer, "not_after": certificate.not_after,
            "fingerprint": certificate.fingerprint, "state": state,
            "urls": list(endpoint.urls) if endpoint else [],
            "last_status_at": status.at if status else None,
            "version": status.version if status else None}
