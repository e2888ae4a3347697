"""``govnode init``, ``run``, ``enroll``, ``rekey``, ``revoke``, ``status``, ``directory``."""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import signal
from pathlib import Path
from typing import Any, Coroutine

import click
from rich.table import Table

from protocol.certs import Level
from protocol.errors import ProtocolError
from protocol.keys import format_fingerprint

from node import operations
from node.config import ConfigError
from node.enrollment import EnrollmentError
from node.logs import setup_logging
from node.operations import NewNode, OperationError
from node.output import console, print_json

DATA_OPTION = click.option("--data", "data_dir", type=click.Path(path_type=Path),
                           default=Path("data"), show_default=True, envvar="GOVNODE_DATA",
                           help="The node's data directory.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON object as the last line.")
PASSPHRASE_OPTION = click.option("--passphrase-env", default="GOVNODE_PASSPHRASE", show_default=True,
                                 help="Environment variable holding the key file passphrase.")


def run_operation(coroutine: Coroutine) -> Any:
    """Run an async operation, turning expected failures into a clean exit 1."""
    try:
        return asyncio.run(coroutine)
    except (OperationError, EnrollmentError, ConfigError) as error:
        raise click.ClickException(str(error)) from None
    except ProtocolError as refusal:
        raise click.ClickException(f"{refusal.code}: {refusal.detail}") from None


def _passphrase(env_name: str) -> str | None:
    return os.environ.get(env_name) or None


def _when(ms: int | None) -> str:
    if not ms:
        return "—"
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def register(main: click.Group) -> None:
    for command in (init, run, enroll, rekey, revoke, status, directory):
        main.add_command(command)


@click.command()
@DATA_OPTION
@click.option("--id", "node_id", required=True, help="Node id, e.g. gd.chaozhou.raoping.")
@click.option("--name", required=True, help="Display name, e.g. 饶平县人民政府办公室.")
@click.option("--level", type=click.Choice([level.value for level in Level]),
              help="Default: province for a root, city at depth 2, county below.")
@click.option("--division", default="", help="GB/T 2260 division code (6 digits).")
@click.option("--root", is_flag=True, help="Create the province root (self-signed).")
@click.option("--parent-url", default="", help="The parent node's URL (child nodes).")
@click.option("--trust-anchor", default="", help="The root's key fingerprint (child nodes).")
@click.option("--listen", default="127.0.0.1:8440", show_default=True, help="HOST:PORT to serve on.")
@click.option("--public-url", "public_urls", multiple=True,
              help="URL other nodes use to reach this one (repeatable). Default: http://LISTEN.")
@click.option("--no-send", is_flag=True, help="Air-gapped: do not contact the parent.")
@click.option("--no-discovery", is_flag=True, help="Turn LAN discovery (zeroconf) off.")
@click.option("--discovery-interface", "discovery_interfaces", multiple=True,
              help="IPv4 address of an interface for LAN discovery (repeatable; default all).")
@click.option("--gossip-interval-ms", type=int, help="Gossip round interval (default 1000).")
@click.option("--status-interval-ms", type=int, help="Status beacon interval (default 10000).")
@PASSPHRASE_OPTION
@JSON_OPTION
def init(data_dir: Path, node_id: str, name: str, level: str | None, division: str, root: bool,
         parent_url: str, trust_anchor: str, listen: str, public_urls: tuple[str, ...],
         no_send: bool, no_discovery: bool, discovery_interfaces: tuple[str, ...],
         gossip_interval_ms: int | None,
         status_interval_ms: int | None, passphrase_env: str, as_json: bool) -> None:
    """Create a node: keys, config, database; a root certificate or an enrollment request."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
    new = NewNode(node_id=node_id, name=name, level=Level(level) if level else None,
                  division=division or None, host=host, port=int(port),
                  public_urls=public_urls, parent_url=parent_url.rstrip("/"),
                  trust_anchor=trust_anchor, passphrase=_passphrase(passphrase_env),
                  passphrase_env=passphrase_env, discovery=not no_discovery,
                  discovery_interfaces=discovery_interfaces,
                  gossip_interval_ms=gossip_interval_ms, status_interval_ms=status_interval_ms)
    if root:
        certificate = run_operation(operations.init_root(data_dir, new))
        console.print(f"created province root [bold]{node_id}[/bold] in {data_dir}")
        console.print(f"trust anchor: [bold]{format_fingerprint(certificate.fingerprint)}[/bold]")
        console.print("give this fingerprint to every node of the province (--trust-anchor)")
        if as_json:
            print_json({"id": node_id, "trust_anchor": certificate.fingerprint, "root": True})
        return
    if not trust_anchor:
        raise click.UsageError("--trust-anchor is required for a child node (or use --root)")
    answer = run_operation(operations.init_child(data_dir, new, send=not no_send))
    console.print(f"created [bold]{node_id}[/bold] in {data_dir}")
    if answer is None:
        console.print("air-gapped: write the request with `govnode enroll request --out FILE`")
    else:
        console.print(f"enrollment request sent to {parent_url}: {answer.status}. Ask the operator "
                      f"of the parent to run `govnode enroll approve {node_id}`.")
    if as_json:
        print_json({"id": node_id, "root": False,
                    "enrollment": None if answer is None else answer.status})


@click.command()
@DATA_OPTION
@click.option("--no-discovery", is_flag=True, help="Turn LAN discovery off for this run.")
@PASSPHRASE_OPTION
def run(data_dir: Path, no_discovery: bool, passphrase_env: str) -> None:
    """Run the node until SIGINT or SIGTERM."""
    from node.app import Node

    async def serve() -> None:
        node = Node(data_dir, passphrase=_passphrase(passphrase_env),
                    discovery=False if no_discovery else None)
        setup_logging(node.config.log_level, node.config.log_format)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await node.start()
        try:
            await stop.wait()
        finally:
            logging.getLogger("govnode.node").info("stopping %s", node.id)
            await node.stop()

    run_operation(serve())


@click.group()
def enroll() -> None:
    """Enrollment requests: list, approve, reject; air-gapped request/approve/install."""


@enroll.command("list")
@DATA_OPTION
@click.option("--all", "show_all", is_flag=True, help="Also approved and rejected requests.")
@JSON_OPTION
def enroll_list(data_dir: Path, show_all: bool, as_json: bool) -> None:
    """Requests waiting for this node's approval."""
    requests = run_operation(operations.list_requests(data_dir, None if show_all else "pending"))
    rows = [{"id": r.subject, "name": r.request.name, "level": r.request.level.value,
             "fingerprint": r.request.fingerprint, "received_at": r.received_at,
             "state": r.state, "reason": r.reason} for r in requests]
    table = Table(title=f"enrollment requests ({'all' if show_all else 'pending'})")
    for column in ("id", "name", "level", "fingerprint", "received", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["id"], row["name"], row["level"], row["fingerprint"][:16] + "…",
                      _when(row["received_at"]), row["state"])
    console.print(table)
    if as_json:
        print_json({"requests": rows})


@enroll.command("approve")
@DATA_OPTION
@click.argument("target")
@click.option("--fingerprint", help="Which request, when one id has several.")
@click.option("--out", type=click.Path(path_type=Path), help="With a request FILE: write the answer here.")
@PASSPHRASE_OPTION
def enroll_approve(data_dir: Path, target: str, fingerprint: str | None, out: Path | None,
                   passphrase_env: str) -> None:
    """Approve the request of node TARGET, or an air-gapped request FILE (with --out)."""
    passphrase = _passphrase(passphrase_env)
    if Path(target).is_file():
        if out is None:
            raise click.UsageError("approving a request file needs --out CERT")
        answer = run_operation(operations.approve_request_file(
            data_dir, Path(target).read_bytes(), passphrase=passphrase))
        out.write_bytes(answer)
        console.print(f"approved; carry {out} to the new node and run `govnode enroll install {out}`")
        return
    certificate = run_operation(operations.approve_request(
        data_dir, target, fingerprint=fingerprint, passphrase=passphrase))
    console.print(f"approved {certificate.subject}: serial {certificate.serial}, valid until "
                  f"{_when(certificate.not_after)}; it picks the certificate up by itself")


@enroll.command("reject")
@DATA_OPTION
@click.argument("node_id")
@click.option("--reason", required=True)
@click.option("--fingerprint")
def enroll_reject(data_dir: Path, node_id: str, reason: str, fingerprint: str | None) -> None:
    """Reject the pending request of NODE_ID."""
    run_operation(operations.reject_request(data_dir, node_id, reason, fingerprint=fingerprint))
    console.print(f"rejected {node_id}: {reason}")


@enroll.command("request")
@DATA_OPTION
@click.option("--out", type=click.Path(path_type=Path), required=True)
@PASSPHRASE_OPTION
def enroll_request(data_dir: Path, out: Path, passphrase_env: str) -> None:
    """Air-gapped: write this node's signed enrollment request to a file."""
    out.write_bytes(run_operation(operations.request_file(data_dir, passphrase=_passphrase(passphrase_env))))
    console.print(f"wrote {out}; the parent runs `govnode enroll approve {out} --out CERT`")


@enroll.command("install")
@DATA_OPTION
@click.argument("answer_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@PASSPHRASE_OPTION
def enroll_install(data_dir: Path, answer_file: Path, passphrase_env: str) -> None:
    """Air-gapped: install the certificate answer the parent wrote."""
    certificate = run_operation(operations.install_answer_file(
        data_dir, answer_file.read_bytes(), passphrase=_passphrase(passphrase_env)))
    console.print(f"installed certificate {certificate.serial} for {certificate.subject}")


@click.command()
@DATA_OPTION
@click.option("--no-send", is_flag=True, help="Air-gapped: only create the new keys.")
@PASSPHRASE_OPTION
def rekey(data_dir: Path, no_send: bool, passphrase_env: str) -> None:
    """New keys for this node; they take over when the parent approves them."""
    answer = run_operation(operations.rekey(data_dir, passphrase=_passphrase(passphrase_env),
                                            send=not no_send))
    console.print("new keys written to keys.next.json"
                  + ("" if answer is None else f"; request sent to the parent: {answer.status}"))


@click.command()
@DATA_OPTION
@click.argument("node_id")
@click.option("--reason", required=True)
@PASSPHRASE_OPTION
def revoke(data_dir: Path, node_id: str, reason: str, passphrase_env: str) -> None:
    """Revoke NODE_ID (this node itself, or a node below it)."""
    revocation = run_operation(operations.revoke(data_dir, node_id, reason,
                                                 passphrase=_passphrase(passphrase_env)))
    console.print(f"revoked {revocation.subject} up to serial {revocation.up_to_serial}; "
                  f"the revocation spreads by gossip")


@click.command()
@DATA_OPTION
@JSON_OPTION
def status(data_dir: Path, as_json: bool) -> None:
    """This node: certificate, peers and last contacts, directory version and size."""
    from node.inspection import node_status

    report = run_operation(node_status(data_dir))
    cert = report["certificate"]
    console.print(f"[bold]{report['id']}[/bold] {report['name']} ({report['level']}) — "
                  f"{'running' if report['running'] else 'not running'}")
    console.print("certificate: " + ("none (not enrolled yet)" if cert is None else
                  f"serial {cert['serial']} from {cert['issuer']}, {cert['state']}, expires "
                  f"{_when(cert['not_after'])} (in {cert['expires_in_days']} days)"))
    d = report["directory"]
    console.print(f"directory: {d['records']} records, {d['members']} members, version "
                  f"{d['version']}, {d['equivocations']} equivocation(s)")
    table = Table(title="peers")
    for column in ("peer", "last success", "last failure", "failures", "last error"):
        table.add_column(column)
    for peer in report["peers"]:
        table.add_row(peer["peer"], _when(peer["last_success"]), _when(peer["last_failure"]),
                      str(peer["failures"]), peer["last_error"][:60])
    console.print(table)
    if report["pending_enrollments"]:
        console.print(f"pending enrollments: {', '.join(report['pending_enrollments'])}")
    if as_json:
        print_json(report)


@click.group()
def directory() -> None:
    """The member directory as this node holds it."""


@directory.command("list")
@DATA_OPTION
@JSON_OPTION
def directory_list(data_dir: Path, as_json: bool) -> None:
    """Every member: certificate, state, endpoint, last status."""
    from node.inspection import directory_members

    members = run_operation(directory_members(data_dir))
    table = Table(title=f"directory ({len(members)} members)")
    for column in ("id", "name", "level", "serial", "state", "expires", "endpoint", "last status"):
        table.add_column(column)
    for m in members:
        table.add_row(m["id"], m["name"], m["level"], str(m["serial"]), m["state"],
                      _when(m["not_after"])[:10], (m["urls"] or ["—"])[0], _when(m["last_status_at"]))
    console.print(table)
    if as_json:
        print_json({"members": members})


@directory.command("show")
@DATA_OPTION
@click.argument("node_id")
@JSON_OPTION
def directory_show(data_dir: Path, node_id: str, as_json: bool) -> None:
    """One member in full: certificate, endpoint, status beacon, revocation."""
    from node.inspection import directory_entry

    entry = run_operation(directory_entry(data_dir, node_id))
    if entry is None:
        raise click.ClickException(f"{node_id} is not in this node's directory")
    for key, value in entry.items():
        console.print(f"[bold]{key}[/bold]: {value}")
    if as_json:
        print_json(entry)

