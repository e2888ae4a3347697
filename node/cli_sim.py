"""``govnode sim``: run a whole topology as real nodes with faults, and report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click
from rich.table import Table

from node.output import console, print_json
from node.sim.faults import FaultSpecError
from node.sim.run import Coordinator, SimOptions, default_workers
from node.topology import TopologyError


def register(main: click.Group) -> None:
    main.add_command(sim)


@click.command()
@click.argument("topology")
@click.option("--duration", default=30.0, show_default=True, help="Seconds of traffic.")
@click.option("--rate", default=5.0, show_default=True, help="Document exchanges started per second.")
@click.option("--faults", default="", help='e.g. "kill:random@10+5,partition:gd.chaozhou@15+10,'
                                           'drop:5%@0+30,rekey:random@20" (see node/sim/faults.py).')
@click.option("--report", "report_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON report here.")
@click.option("--workers", default=default_workers(), show_default=True,
              help="Processes to spread the nodes over.")
@click.option("--seed", default=1, show_default=True, help="Makes traffic and faults repeatable.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the nodes' data directories here (default: a temporary directory).")
@click.option("--gossip-interval-ms", type=int, help="Override the topology's gossip interval.")
@click.option("--fanout", type=int, help="Override the topology's gossip fanout.")
@click.option("--status-interval-ms", default=10_000, show_default=True,
              help="How often every node publishes its status beacon.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON line at the end.")
def sim(topology: str, duration: float, rate: float, faults: str, report_file: Path | None,
        workers: int, seed: int, data_dir: Path | None, gossip_interval_ms: int | None,
        fanout: int | None, status_interval_ms: int, as_json: bool) -> None:
    """Simulate TOPOLOGY (a file, or a name from configs/topologies) with real nodes.

    Exits 1 when any document copy was lost or duplicated or any receipt is missing.
    """
    options = SimOptions(topology=topology, duration_s=duration, rate=rate, faults=faults,
                         workers=workers, seed=seed, data_dir=data_dir,
                         gossip_interval_ms=gossip_interval_ms, fanout=fanout,
                         status_interval_ms=status_interval_ms)
    try:
        coordinator = Coordinator(options, console)
    except (TopologyError, FaultSpecError) as error:
        raise click.ClickException(str(error)) from None
    report = asyncio.run(coordinator.run())
    console.print(summary_table(report))
    for problem in report["problems"]:
        console.print(f"[red]✗ {problem}[/red]")
    if not report["problems"]:
        console.print("[green]✓ nothing lost, nothing duplicated, every receipt back[/green]")
    if report_file:
        report_file.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    if as_json:
        print_json(report)
    raise SystemExit(1 if report["problems"] else 0)


def summary_table(report: dict) -> Table:
    docs, receipts, latency, convergence = (report["documents"], report["receipts"],
                                            report["latency_ms"], report["convergence_s"])
    table = Table(title=f"govnode sim {report['topology']}: {report['nodes']} nodes, "
                        f"{report['wall_s']} s")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for label, value in (
            ("document copies sent", docs["sent"]), ("delivered", docs["delivered"]),
            ("lost", docs["lost"]), ("duplicated", docs["duplicated"]),
            ("receipts received / expected", f"{receipts['received']} / {receipts['expected']}"),
            ("latency p50 / p95 / p99 ms", f"{latency['p50']} / {latency['p95']} / {latency['p99']}"),
            ("directory change p50 / max s", f"{convergence['p50']} / {convergence['max']}"),
            ("faults injected", len(report["faults"])),
            ("requests dropped by faults", report["links"]["dropped_requests"]),
            ("RSS total / per node MB", f"{report['rss_mb_total']} / {report['rss_mb_per_node']}")):
        table.add_row(label, str(value))
    return table
