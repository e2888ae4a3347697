"""The ``govnode`` command: one entry point, one subcommand per job (DESIGN §9)."""

from __future__ import annotations

from pathlib import Path

import click

from node import __version__
from node.cli_docs import register as register_document_commands
from node.cli_node import register as register_node_commands
from node.cli_sim import register as register_sim_commands
from node.cli_tokens import register as register_token_commands
from rich.table import Table

from node.output import comparisons_table, console, print_json


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="govnode")
def main() -> None:
    """govnode: federated peer node for government document exchange."""


register_node_commands(main)
register_document_commands(main)
register_token_commands(main)
register_sim_commands(main)


@main.group()
def bench() -> None:
    """Speed figures, each beside the physical limit measured in the same run."""


@bench.command("wire")
@click.option("--rounds", default=9, show_default=True, help="Interleaved measuring rounds.")
@click.option("--round-seconds", default=0.25, show_default=True, type=float)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def bench_wire(rounds: int, round_seconds: float, as_json: bool) -> None:
    """Signed-frame encode+sign and decode+verify (4 KiB body) vs raw PyNaCl."""
    from node.bench.wire import run_wire_bench

    with console.status("measuring the frame layer against raw PyNaCl…"):
        result = run_wire_bench(rounds=rounds, round_seconds=round_seconds)
    comparisons = result.pop("comparisons")
    console.print(comparisons_table(
        f"govnode bench wire — {result['body_bytes']} B body, {result['frame_bytes']} B frame",
        comparisons))
    if as_json:
        print_json(result)


@bench.command("delivery")
@click.option("--docs", default=6000, show_default=True, type=click.IntRange(1),
              help="Documents sent end to end in each throughput round.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Throughput rounds, each on a new pair of nodes; documents/s is their "
                   "median.")
@click.option("--samples", default=50, show_default=True, type=click.IntRange(2),
              help="County-to-county documents timed one at a time.")
@click.option("--crypto-threads/--no-crypto-threads", default=False, show_default=True,
              help="The nodes' [delivery] crypto_threads. Off by default: the bench's nodes "
                   "share this machine's cores.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def bench_delivery(docs: int, rounds: int, samples: int, crypto_threads: bool,
                   as_json: bool) -> None:
    """Documents/s between two nodes and county-to-county latency, beside the limits."""
    from node.bench.delivery import (BenchError, comparisons, run_delivery_bench,
                                     summary_table)

    with console.status("starting…") as status:
        try:
            result = run_delivery_bench(docs=docs, rounds=rounds, samples=samples,
                                        crypto_threads=crypto_threads, progress=status.update)
        except BenchError as error:
            raise click.ClickException(str(error)) from None
    console.print(comparisons_table(
        f"govnode bench delivery — {result['docs']} documents a round, "
        f"{result['body_bytes']} B body, "
        f"sealed, signed, durable, receipted; bulk crypto "
        f"{'in worker threads' if result['crypto_threads'] else 'on the event loop'}",
        comparisons(result)))
    console.print(summary_table(result))
    if as_json:
        print_json(result)


@bench.command("gossip")
@click.option("--nodes", default=100, show_default=True, type=click.IntRange(3, 2000),
              help="Real nodes to run (the first N units of Guangdong, then made-up counties).")
@click.option("--interval-ms", default=200, show_default=True, type=click.IntRange(10),
              help="Gossip round interval of every node.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1),
              help="Processes to spread the nodes over.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line.")
def bench_gossip(nodes: int, interval_ms: int, workers: int, as_json: bool) -> None:
    """Seconds and rounds for one directory change to reach all N nodes."""
    from node.bench.gossip import run_gossip_bench
    from node.topology import TopologyError

    try:
        result = run_gossip_bench(nodes=nodes, interval_ms=interval_ms, workers=workers,
                                  console=console)
    except TopologyError as error:
        raise click.ClickException(str(error)) from None
    table = Table(title=f"govnode bench gossip — {result['nodes']} nodes, "
                        f"{result['interval_ms']} ms interval")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in (
            ("a re-key reaches every node (s)", result["convergence_s"]),
            ("… the median node (s)", result["convergence_p50_s"]),
            ("… in gossip intervals", result["rounds"]),
            ("bytes of an in-sync exchange", result["bytes_per_insync_round"]),
            ("peak RSS, all nodes (MB)", result["rss_mb"]),
            ("first full directory sync (s)", result["directory_sync_s"])):
        table.add_row(label, str(value))
    console.print(table)
    if not result["complete"]:
        console.print("[red]the change did not reach every node[/red]")
    if as_json:
        print_json(result)
    if not result["complete"]:
        raise SystemExit(1)


@main.command()
@click.option("--serve", is_flag=True, help="Keep the nodes running after the demo, until Ctrl-C.")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Build the federation here and keep it (default: a temporary directory).")
@click.option("--topology", default="mini", show_default=True,
              help="Topology file, or the name of one in configs/topologies/.")
@click.option("--walkthrough", is_flag=True,
              help="Instead: the protocol walk-through (keys, a signed frame, refused forgeries).")
def demo(serve: bool, data_dir: Path | None, topology: str, walkthrough: bool) -> None:
    """Run a federation on loopback: documents sent, signed for, answered; their timelines."""
    if walkthrough:
        from node.walkthrough import run_walkthrough

        raise SystemExit(run_walkthrough(console))
    from node.demo import run_demo
    from node.operations import OperationError
    from node.topology import TopologyError

    try:
        raise SystemExit(run_demo(console, topology=topology, data_dir=data_dir, serve=serve))
    except (TopologyError, OperationError) as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    main()
