"""What ``govnode demo`` prints: each document's timeline as its sender sees it (built
from the signed receipts that came back), a summary table, and, when serving, how
to reach the running nodes."""

from __future__ import annotations

import datetime
import shutil
import sys
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from protocol import ids

if TYPE_CHECKING:
    from node.demo import DemoResult, Sent
    from node.local_federation import LocalFederation

STEP_LABELS = {"sent": "发文 sent", "delivered": "送达 delivered", "signed_for": "签收 signed_for",
               "assigned": "分办 assigned", "instructed": "批示 instructed",
               "completed": "办结 completed", "returned": "退文 returned"}


def _clock(ms: int) -> str:
    return datetime.datetime.fromtimestamp(ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _name(federation: LocalFederation, node_id: str) -> str:
    node = federation.nodes.get(node_id)
    return node.config.name if node else node_id


def timeline_table(federation: LocalFederation, item: Sent, view: dict[str, Any]) -> Table:
    sent_at = view["created_at"]
    recipients = "、".join(_name(federation, e["recipient"]) for e in view["recipients"])
    caption = f"{_name(federation, item.sender)} → {recipients}"
    if view["urgency"]:
        caption += f" · {view['urgency']}"
    if item.answers:
        caption += f" · 答复 answers {item.answers}"
    table = Table(title=f"{item.label} 《{view['title']}》", caption=caption, box=box.SIMPLE_HEAD,
                  title_justify="left", caption_justify="left", pad_edge=False, show_edge=False,
                  collapse_padding=True)
    for column in ("time", "+ms", "recipient", "step", "actor", "detail"):
        table.add_column(column, justify="right" if column == "+ms" else "left",
                         no_wrap=column != "detail", overflow="fold")
    table.add_row(_clock(sent_at), "0", "", STEP_LABELS["sent"], view["signer"] or "—",
                  "签发 signed off" if view["signer"] else "", end_section=True)
    for entry in view["recipients"]:
        for index, step in enumerate(entry["timeline"]):
            table.add_row(_clock(step["at"]), str(step["at"] - sent_at),
                          "" if index else entry["recipient"],
                          STEP_LABELS.get(step["step"], step["step"]),
                          "—" if step["step"] == "delivered" else step["actor"], step["detail"])
        table.add_section()
    return table


def _latencies(view: dict[str, Any]) -> list[int]:
    return [step["at"] - view["created_at"] for entry in view["recipients"]
            for step in entry["timeline"] if step["step"] == "delivered"]


def _count(view: dict[str, Any], step_name: str) -> int:
    return sum(any(s["step"] == step_name for s in e["timeline"]) for e in view["recipients"])


def summary_table(result: DemoResult) -> Table:
    table = Table(title="summary", box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
                  show_edge=False, collapse_padding=True)
    table.add_column("document", no_wrap=True)
    for column in ("recipients", "delivered", "signed_for", "delivery\nlatency ms\n(mean)",
                   "route\nhops"):
        table.add_column(column, justify="right", min_width=max(map(len, column.split("\n"))))
    totals = {"recipients": 0, "delivered": 0, "signed_for": 0}
    latencies: list[int] = []
    for item, view in result.documents:
        counts = {"recipients": len(view["recipients"]), "delivered": _count(view, "delivered"),
                  "signed_for": _count(view, "signed_for")}
        for key, value in counts.items():
            totals[key] += value
        latencies += _latencies(view)
        hops = ", ".join(str(len(ids.route(item.sender, entry["recipient"])))
                         for entry in view["recipients"])
        table.add_row(item.label, *(str(v) for v in counts.values()),
                      _mean(_latencies(view)), hops)
    table.add_section()
    table.add_row(f"{len(result.documents)} documents", *(str(v) for v in totals.values()),
                  _mean(latencies), "")
    return table


def _mean(values: list[int]) -> str:
    return f"{mean(values):.1f}" if values else "—"


def print_report(console: Console, federation: LocalFederation, result: DemoResult) -> None:
    for item, view in result.documents:
        console.print(timeline_table(federation, item, view))
        console.print()
    if result.documents:
        console.print(summary_table(result))
    timings = result.timings
    if "build_s" in timings:
        console.print(f"{len(federation.nodes)} nodes built and enrolled in "
                      f"{timings['build_s']:.1f} s"
                      + (f", directory converged in {timings['converge_s']:.2f} s"
                         if "converge_s" in timings else "")
                      + (f", documents and receipts in {timings['exchange_s']:.2f} s"
                         if "exchange_s" in timings else ""))
    if result.error:
        console.print(f"[red]error:[/red] {result.error}")
    for missing in result.missing:
        console.print(f"[red]missing receipt:[/red] {missing}")
    if result.ok:
        console.rule("[green]every expected receipt arrived at its sender[/green]")
    else:
        count = len(result.missing)
        console.rule(f"[red]demo FAILED{f': {count} receipt(s) missing' if count else ''}[/red]")


def print_serving(console: Console, federation: LocalFederation) -> None:
    table = Table(title="the federation keeps running", title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False, collapse_padding=True)
    for column in ("id", "url", "name"):
        table.add_column(column, no_wrap=column != "name")
    for node_id in federation.topology.node_ids:
        node = federation.nodes[node_id]
        table.add_row(node_id, node.urls[0], node.config.name)
    console.print(table)
    console.print(f"data directories: {escape(str(federation.root_dir))}/ID", soft_wrap=True)
    root = federation.topology.root.id
    city = next(iter(federation.topology.children(root)), federation.topology.root).id
    console.print("In another terminal, for example:")
    govnode = _program()
    for hint in (f"{govnode} status --data {federation.data_dir(root)}",
                 f"{govnode} directory list --data {federation.data_dir(root)}",
                 f"{govnode} doc list --inbox --data {federation.data_dir(city)}",
                 f"{govnode} send --data {federation.data_dir(root)} --to {city} --title 测试通知",
                 f"curl {federation.nodes[root].urls[0]}/v1/health"):
        console.print(f"  [bold]{escape(hint)}[/bold]", soft_wrap=True)
    console.print("Press Ctrl-C to stop every node.")


def _program() -> str:
    """How to call govnode from another terminal: by name if it is on PATH."""
    if shutil.which("govnode") or Path(sys.argv[0]).name != "govnode":
        return "govnode"
    return str(Path(sys.argv[0]).resolve())
