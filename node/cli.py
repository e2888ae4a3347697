"""The ``govnode`` command: one entry point, one subcommand per job (DESIGN §9)."""

from __future__ import annotations

import click

from node import __version__
from node.cli_docs import register as register_document_commands
from node.cli_node import register as register_node_commands
from node.output import comparisons_table, console, print_json


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="govnode")
def main() -> None:
    """govnode: federated peer node for government document exchange."""


register_node_commands(main)
register_document_commands(main)


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


@main.command()
def demo() -> None:
    """Walk through the protocol: a chain of trust, a signed frame, a refused forgery."""
    from node.walkthrough import run_walkthrough

    raise SystemExit(run_walkthrough(console))


if __name__ == "__main__":
    main()
