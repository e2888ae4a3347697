"""``govnode demo``: a whole federation on loopback, with documents flowing through it.

Theory of operation: ``LocalFederation`` builds the topology (``mini`` by default:
a province, two cities, four counties) as real nodes in this process, each enrolled
by its parent through the operator's code path, and waits until every directory
holds every member. Then the scenario runs, all of it through the node's own
functions (``send_document``, ``actions.act``):

1. the province sends a 通知 (加急, 粤府办〔2026〕1号) to every city;
2. a county sends a 请示 to its city, which signs for it, assigns it, gets a leader's
   批示, completes it and answers with a 批复 (``in_reply_to``) that the county signs for;
3. the same county sends a 函 to a county under another city (four hops);
4. every recipient signs for (签收) what it received, with a person's name.

The senders' views are built only from the signed receipts that came back, so the
demo waits until every expected receipt has arrived at its sender (a deadline, never
a fixed sleep), prints each document's timeline and a summary, and succeeds only if
nothing is missing. With ``serve`` the nodes keep running until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn)

from protocol.documents import Document
from protocol.workflow import Action

from node import actions, demo_report, doc_views
from node.app import Node
from node.clock import new_document_id
from node.local_federation import FederationTimeout, LocalFederation, wait_for
from node.operations import OperationError
from node.sending import send_document
from node.topology import Topology, load_topology

BUILD_TIMEOUT_S = 30.0
EXCHANGE_TIMEOUT_S = 30.0
ISSUER_ABBREVIATIONS = {"gd": "粤府办", "gd.chaozhou": "潮府办", "gd.shantou": "汕府办",
                        "gd.chaozhou.raoping": "饶府办", "gd.shantou.nanao": "南府办"}
CLERKS = {"gd.chaozhou": "李明", "gd.shantou": "林晓燕", "gd.chaozhou.raoping": "黄丽",
          "gd.shantou.nanao": "张璐"}
LEADER, HANDLER, SIGNER = "陈建华", "赵敏", "王强"
SIGNED_FOR = ("delivered", "signed_for")  # the receipts a recipient that signs for sends back


@dataclass(frozen=True)
class Cast:
    """Who plays which part, chosen from the topology."""

    province: str
    cities: tuple[str, ...]
    county: str  # sends the 请示 and the 函
    city: str  # the county's city: answers the 请示
    other_county: str  # under another city: receives the 函


@dataclass
class Sent:
    label: str  # e.g. "通知 粤府办〔2026〕1号"
    sender: str
    doc_id: bytes
    expected: dict[str, tuple[str, ...]]  # recipient -> receipt steps the sender must see
    answers: str = ""  # label of the document this one answers


@dataclass
class DemoResult:
    ok: bool
    documents: list[tuple[Sent, dict]] = field(default_factory=list)  # with the sender's view
    missing: list[str] = field(default_factory=list)
    error: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def cast_of(topology: Topology) -> Cast:
    cities = tuple(node.id for node in topology.children(topology.root.id))
    counties = [(city, node.id) for city in cities for node in topology.children(city)]
    if not counties:
        raise OperationError(f"topology {topology.name}: the demo needs a county under a city")
    city, county = counties[0]
    others = [c for parent, c in counties if parent != city] or [c for _, c in counties[1:]]
    if not others:
        raise OperationError(f"topology {topology.name}: the demo needs a second county")
    return Cast(topology.root.id, cities, county, city, others[0])


def number(node: Node, serial: int, letter: bool = False) -> str:
    """A 发文字号 such as 饶府办函〔2026〕4号 (other topologies: from the unit's name)."""
    abbreviation = ISSUER_ABBREVIATIONS.get(node.id) or f"{node.config.name[:2]}办"
    return f"{abbreviation}{'函' if letter else ''}〔2026〕{serial}号"


async def send(node: Node, kind: str, to: tuple[str, ...], title: str, body: str,
               **fields) -> tuple[bytes, str]:
    draft = Document(doc_id=new_document_id(), title=title, kind=kind, issuer=node.config.name,
                     issuer_id=node.id, main_recipients=to, body=body, **fields)
    sent = await send_document(node.context, draft)
    return sent.document.doc_id, f"{kind} {sent.document.doc_number}"


async def arrived(node: Node, doc_id: bytes) -> None:
    await wait_for(lambda: node.context.documents.inbound_by_doc(doc_id),
                   timeout=EXCHANGE_TIMEOUT_S, what=f"document {doc_id.hex()[:8]} to arrive at {node.id}")


async def sign_for(node: Node, doc_id: bytes) -> None:
    await arrived(node, doc_id)
    await actions.act(node.context, doc_id, Action.SIGN_FOR, actor=CLERKS.get(node.id, "值班员"))


async def run_scenario(federation: LocalFederation, cast: Cast, sent: list[Sent]) -> None:
    """Send, act and answer; each document sent is appended to ``sent`` at once."""
    nodes = federation.nodes

    doc_id, label = await send(
        nodes[cast.province], "通知", cast.cities, "关于做好2026年春节期间值班和安全工作的通知",
        "各地级以上市人民政府：春节将至，请切实做好值班值守、安全生产和应急处置工作。",
        urgency="加急", doc_number=number(nodes[cast.province], 1), signer="刘建国")
    sent.append(Sent(label, cast.province, doc_id, {c: SIGNED_FOR for c in cast.cities}))
    request_id, request_label = await send(
        nodes[cast.county], "请示", (cast.city,), "关于申请2026年防汛专项资金的请示",
        "市人民政府：我县汛期将至，堤围加固尚缺资金三百万元，恳请市财政予以支持。妥否，请批示。",
        doc_number=number(nodes[cast.county], 3), signer=SIGNER)
    handled = ("delivered", "signed_for", "assigned", "instructed", "completed")
    sent.append(Sent(request_label, cast.county, request_id, {cast.city: handled}))
    letter_id, label = await send(
        nodes[cast.county], "函", (cast.other_county,), "关于商请协助开展跨市渔业联合执法的函",
        "贵县：为做好伏季休渔管理，拟于下月开展联合执法，商请派员协助，盼复。",
        doc_number=number(nodes[cast.county], 4, letter=True), signer=SIGNER)
    sent.append(Sent(label, cast.county, letter_id, {cast.other_county: SIGNED_FOR}))

    async def handle_request() -> None:
        city = nodes[cast.city]
        await sign_for(city, request_id)
        for action, actor, detail in ((Action.ASSIGN, CLERKS.get(city.id, "值班员"), "市财政局"),
                                      (Action.INSTRUCT, LEADER, "同意，请市财政局抓紧办理"),
                                      (Action.COMPLETE, HANDLER, "已下达资金计划")):
            await actions.act(city.context, request_id, action, actor=actor, detail=detail)
        reply_id, reply_label = await send(
            city, "批复", (cast.county,), "关于同意拨付2026年防汛专项资金的批复",
            "你县《关于申请2026年防汛专项资金的请示》收悉。经研究，同意拨付。",
            doc_number=number(city, 5), signer=LEADER, in_reply_to=request_id)
        sent.insert(2, Sent(reply_label, cast.city, reply_id,
                            {cast.county: SIGNED_FOR}, answers=request_label))
        await sign_for(nodes[cast.county], reply_id)

    try:
        async with asyncio.TaskGroup() as group:  # one failing cancels the others
            for city in cast.cities:
                group.create_task(sign_for(nodes[city], sent[0].doc_id))
            group.create_task(handle_request())
            group.create_task(sign_for(nodes[cast.other_county], letter_id))
    except* FederationTimeout as timeouts:
        raise timeouts.exceptions[0] from None


async def missing_receipts(federation: LocalFederation, sent: list[Sent]) -> list[str]:
    missing = []
    for item in sent:
        store = federation.nodes[item.sender].context.documents
        deliveries = {d.recipient: d for d in await store.deliveries_of(item.doc_id)}
        for recipient, steps in item.expected.items():
            seen = ([r.step for r in await store.receipts_of(deliveries[recipient].message_id)
                     if r.applied] if recipient in deliveries else [])
            missing += [f"{item.label} → {recipient}: {step}" for step in steps if step not in seen]
    return missing


async def demo(console: Console, topology: Topology, data_dir: Path, *,
               serve: bool = False) -> DemoResult:
    """Build, exchange, report; with ``serve``, keep running until SIGINT/SIGTERM."""
    federation = LocalFederation(topology, data_dir)
    result = DemoResult(ok=False)
    sent: list[Sent] = []
    try:
        try:
            await _build_and_exchange(console, federation, sent, result)
        except (FederationTimeout, OperationError) as error:
            result.error = str(error)
        result.missing = await missing_receipts(federation, sent)
        for item in sent:
            sender = federation.nodes[item.sender]
            view = await doc_views.show_document(sender.context, item.doc_id)
            result.documents.append((item, view))
        result.ok = not result.error and not result.missing and bool(sent)
        demo_report.print_report(console, federation, result)
        if serve and federation.nodes:
            demo_report.print_serving(console, federation)
            await _until_stopped()
    finally:
        await federation.stop()
    return result


async def _build_and_exchange(console: Console, federation: LocalFederation, sent: list[Sent],
                              result: DemoResult) -> None:
    topology = federation.topology
    cast = cast_of(topology)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        started = time.monotonic()
        enrolling = progress.add_task("enrolling nodes", total=len(topology.nodes))
        await federation.build(timeout=BUILD_TIMEOUT_S,
                               on_enrolled=lambda _: progress.advance(enrolling))
        result.timings["build_s"] = time.monotonic() - started
        converging = progress.add_task("directory convergence", total=1)
        result.timings["converge_s"] = await federation.wait_converged(BUILD_TIMEOUT_S)
        progress.advance(converging)
        started = time.monotonic()
        receipts = progress.add_task("documents and receipts", total=9 + 2 * len(cast.cities))
        await run_scenario(federation, cast, sent)

        async def all_back() -> bool:
            total = sum(len(steps) for item in sent for steps in item.expected.values())
            missing = await missing_receipts(federation, sent)
            progress.update(receipts, total=total, completed=total - len(missing))
            return not missing

        await wait_for(all_back, timeout=EXCHANGE_TIMEOUT_S, what="every receipt at its sender")
        result.timings["exchange_s"] = time.monotonic() - started


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_demo(console: Console, *, topology: str | Path = "mini", data_dir: Path | None = None,
             serve: bool = False) -> int:
    """The ``govnode demo`` command: 0 if every expected receipt came back."""
    loaded = load_topology(topology)
    if data_dir is not None and data_dir.exists() and any(data_dir.iterdir()):
        raise OperationError(f"{data_dir} is not empty; give a new directory to --data")
    root = data_dir or Path(tempfile.mkdtemp(prefix="govnode-demo-"))
    try:
        result = asyncio.run(demo(console, loaded, root, serve=serve))
    finally:
        if data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if data_dir is not None:
        console.print(f"data kept in [bold]{escape(str(data_dir))}[/bold] (one directory per node)")
    return 0 if result.ok else 1
