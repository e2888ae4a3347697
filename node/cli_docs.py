"""``govnode send`` and ``govnode doc``: official documents from the command line.

The commands work on the node's database directly; frames they queue are delivered
by the running node (it notices the commit within a gossip interval).
"""

from __future__ import annotations

import datetime
import mimetypes
import os
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from protocol.documents import KINDS, URGENCIES, Document
from protocol.workflow import Action, Role

from node import actions, doc_views, operations
from node.actions import DocumentNotFound
from node.cli_node import DATA_OPTION, JSON_OPTION, PASSPHRASE_OPTION, _when, run_operation
from node.clock import new_document_id
from node.output import console, print_json
from node.sending import AttachmentFile, send_document


def register(main: click.Group) -> None:
    main.add_command(send)
    main.add_command(doc)


def _ids(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _deadline(text: str | None) -> int | None:
    if not text:
        return None
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("expected YYYY-MM-DD", param_hint="--deadline") from None
    end_of_day = datetime.datetime.combine(day, datetime.time(23, 59, 59)).astimezone()
    return int(end_of_day.timestamp() * 1000)


@click.command()
@DATA_OPTION
@click.option("--to", "main", multiple=True, required=True, help="主送 recipients: ID[,ID…] (repeatable).")
@click.option("--cc", multiple=True, help="抄送 copy recipients: ID[,ID…].")
@click.option("--title", required=True, help="标题.")
@click.option("--doc-number", default="", help="发文字号, e.g. 粤府办〔2025〕12号.")
@click.option("--kind", type=click.Choice(KINDS), default="通知", show_default=True, help="文种.")
@click.option("--urgency", type=click.Choice(("",) + URGENCIES), default="", help="紧急程度.")
@click.option("--deadline", help="办理时限, YYYY-MM-DD.")
@click.option("--signer", default="", help="签发人.")
@click.option("--issuer", default="", help="发文机关; default: this node's name.")
@click.option("--body-file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--body", "body_text", default="", help="正文 text (or --body-file).")
@click.option("--attach", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="附件 file (repeatable).")
@click.option("--reply-to", help="Id of the document this answers (a 批复 answers a 请示).")
@PASSPHRASE_OPTION
@JSON_OPTION
def send(data_dir: Path, main: tuple[str, ...], cc: tuple[str, ...], title: str, doc_number: str,
         kind: str, urgency: str, deadline: str | None, signer: str, issuer: str,
         body_file: Path | None, body_text: str, attach: tuple[Path, ...], reply_to: str | None,
         passphrase_env: str, as_json: bool) -> None:
    """Send an official document to one or more units."""
    body = body_file.read_text(encoding="utf-8") if body_file else body_text
    files = [AttachmentFile(p.name, mimetypes.guess_type(p.name)[0] or "application/octet-stream",
                            p.read_bytes()) for p in attach]

    async def go() -> Any:
        async with operations.open_node(data_dir) as node:
            context = node.context(os.environ.get(passphrase_env) or None)
            in_reply_to = await actions.resolve_document_id(context, reply_to) if reply_to else None
            draft = Document(doc_id=new_document_id(), title=title, kind=kind,
                             issuer=issuer or node.config.name, issuer_id=node.config.node_id,
                             main_recipients=_ids(main), cc_recipients=_ids(cc),
                             doc_number=doc_number, urgency=urgency, signer=signer, body=body,
                             deadline=_deadline(deadline), in_reply_to=in_reply_to)
            return await send_document(context, draft, files, max_attachment_bytes=node.config.delivery["max_attachment_bytes"])

    sent = run_document_operation(go())
    console.print(f"queued document [bold]{sent.document.doc_id.hex()}[/bold] "
                  f"to {', '.join(r for r, _ in sent.deliveries)}")
    if as_json:
        print_json({"id": sent.document.doc_id.hex(),
                    "deliveries": [{"recipient": r, "message_id": m.hex()} for r, m in sent.deliveries]})


def run_document_operation(coroutine) -> Any:
    try:
        return run_operation(coroutine)
    except DocumentNotFound as error:
        raise click.ClickException(str(error)) from None


@click.group()
def doc() -> None:
    """Documents: list, show, and the receiving side's actions (签收, 分办, 批示, 办结, 退文)."""


@doc.command("list")
@DATA_OPTION
@click.option("--inbox", "box", flag_value="inbox", help="Received documents only.")
@click.option("--outbox", "box", flag_value="outbox", help="Sent documents only.")
@JSON_OPTION
def doc_list(data_dir: Path, box: str | None, as_json: bool) -> None:
    """Documents, newest first."""
    async def go():
        async with operations.open_node(data_dir) as node:
            return await doc_views.list_documents(node.context(), box)

    documents = run_document_operation(go())
    table = Table(title=f"documents ({box or 'all'})")
    for column in ("id", "", "kind", "title", "number", "from", "state", "stored"):
        table.add_column(column)
    for d in documents:
        table.add_row(d["id"][:12], "收" if d["direction"] == "received" else "发", d["kind"],
                      d["title"], d["doc_number"], d["origin"], d["state"], _when(d["stored_at"]))
    console.print(table)
    if as_json:
        print_json({"documents": documents})


@doc.command("show")
@DATA_OPTION
@click.argument("doc_id")
@JSON_OPTION
def doc_show(data_dir: Path, doc_id: str, as_json: bool) -> None:
    """A document: metadata, attachments, and its timeline (per recipient when sent)."""
    async def go():
        async with operations.open_node(data_dir) as node:
            context = node.context()
            return await doc_views.show_document(context, await actions.resolve_document_id(context, doc_id))

    view = run_document_operation(go())
    console.print(f"[bold]{view['title']}[/bold] {view['doc_number']} ({view['kind']}"
                  f"{', ' + view['urgency'] if view['urgency'] else ''}) from {view['issuer']}")
    for attachment in view["attachments"]:
        console.print(f"  附件 {attachment['name']} ({attachment['size']} bytes)")
    timelines = view.get("recipients") or [{"recipient": "this node", "timeline": view["timeline"],
                                             "state": view["state"]}]
    for entry in timelines:
        console.print(f"— {entry['recipient']}: {entry['state']}")
        for step in entry["timeline"]:
            console.print(f"    {_when(step['at'])}  {step['step']:<11} {step['actor']}"
                          f"{'  ' + step['detail'] if step['detail'] else ''}")
    if as_json:
        print_json(view)


def _action_command(name: str, action: Action, help_text: str, detail_option: str | None) -> click.Command:
    @click.command(name, help=help_text)
    @DATA_OPTION
    @click.argument("doc_id")
    @click.option("--by", "actor", required=True, help="The person acting (shown to the sender).")
    @click.option("--as", "role", type=click.Choice([r.value for r in Role if r is not Role.SYSTEM]),
                  help=f"Role (default {actions.DEFAULT_ROLE[action].value}).")
    @PASSPHRASE_OPTION
    @JSON_OPTION
    def command(data_dir: Path, doc_id: str, actor: str, role: str | None, passphrase_env: str,
                as_json: bool, **detail: str) -> None:
        async def go():
            async with operations.open_node(data_dir) as node:
                context = node.context(os.environ.get(passphrase_env) or None)
                resolved = await actions.resolve_document_id(context, doc_id)
                text = next(iter(detail.values()), "") or ""
                return resolved, await actions.act(context, resolved, action, actor=actor,
                                                   role=Role(role) if role else None, detail=text)

        resolved, state = run_document_operation(go())
        console.print(f"{resolved.hex()[:12]}: {action.value} by {actor} → {state.value}")
        if as_json:
            print_json({"id": resolved.hex(), "action": action.value, "state": state.value})

    if detail_option:
        command = click.option(f"--{detail_option}", detail_option, required=detail_option == "reason",
                               default="")(command)
    return command


for _name, _action, _help, _detail in (
        ("sign-for", Action.SIGN_FOR, "签收: acknowledge receipt of a document.", None),
        ("assign", Action.ASSIGN, "分办: assign a document to a handler.", "to"),
        ("instruct", Action.INSTRUCT, "批示: a leader's instruction.", "text"),
        ("complete", Action.COMPLETE, "办结: handling finished.", "note"),
        ("return", Action.RETURN, "退文: send the document back with a reason.", "reason")):
    doc.add_command(_action_command(_name, _action, _help, _detail))
