"""``govnode bench delivery`` runs end to end at toy sizes and reports what it documents.

No timing is asserted (the machine is shared): only that every figure is there and
positive, so the command cannot silently stop measuring something.
"""

from __future__ import annotations

import json
import statistics

from click.testing import CliRunner

from rich.console import Console

from node.bench import bench_nodes
from node.bench.delivery import run_delivery_bench, summary_table
from node.cli import main

RATES = ("docs_per_s", "crypto_ceiling_docs_per_s", "ratio_to_crypto", "sqlite_batched_rows_per_s",
         "ratio_to_sqlite", "aiohttp_post_docs_per_s", "ratio_to_aiohttp")


def test_bench_delivery_prints_every_figure_as_one_json_line():
    result = CliRunner().invoke(main, ["bench", "delivery", "--docs", "20", "--rounds", "3",
                                       "--samples", "3", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for key in RATES:
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["docs"] == 20 and report["body_bytes"] == 4096
    rounds = report["docs_per_s_rounds"]
    assert report["throughput_rounds"] == len(rounds) == 3 and all(rate > 0 for rate in rounds)
    assert report["docs_per_s"] == round(statistics.median(rounds), 1)
    assert report["limit_rounds"] == 8  # before the first round and after each, two apiece
    assert set(report["cpu_ms_per_doc"]) == {"sender", "receiver"}
    assert "(median)" in result.output and "3 rounds" in result.output
    latency = report["latency_ms"]
    assert latency["samples"] == 3
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert set(report["targets"]) == set(report["meets_targets"]) == {
        "docs_per_s", "ratio_to_crypto", "latency_p50_ms"}
    assert "govnode bench delivery" in result.output  # the table for people came first
    assert report["crypto_threads"] is False  # its nodes share this machine's cores
    assert "bulk crypto on the event loop" in result.output


def test_bench_delivery_can_run_its_nodes_with_the_default_crypto_threads():
    result = CliRunner().invoke(main, ["bench", "delivery", "--docs", "40", "--rounds", "1",
                                       "--samples", "2", "--crypto-threads", "--json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["crypto_threads"] is True and report["docs_per_s"] > 0
    assert report["docs_per_s_rounds"] == [report["docs_per_s"]]
    assert "(median)" not in result.output  # one round: nothing to take the median of
    assert "bulk crypto in worker threads" in result.output


def test_bench_delivery_refuses_zero_rounds_before_starting_anything():
    result = CliRunner().invoke(main, ["bench", "delivery", "--rounds", "0", "--json"])
    assert result.exit_code == 2
    assert "Invalid value for '--rounds'" in result.output
    assert "{" not in result.output  # no report


def test_the_rate_reported_is_the_median_of_the_rounds(monkeypatch):
    """Rounds whose median is none of the mean, the first, the middle or the last; CPU
    figures whose median per side is known, one side unreadable in one round."""
    rates = iter([500.0, 100.0, 900.0, 300.0, 200.0])
    cpus = iter([{"sender": 0.5, "receiver": 0.4}, {"sender": 0.1, "receiver": None},
                 {"sender": 0.3, "receiver": 0.6}, {"sender": 0.9, "receiver": 0.2},
                 {"sender": 0.2, "receiver": 0.3}])

    async def measured(self, docs, body):
        return next(rates), next(cpus)

    monkeypatch.setattr(bench_nodes.NodePair, "throughput", measured)
    report = run_delivery_bench(docs=5, rounds=5, samples=2, limit_rounds=1)
    assert report["docs_per_s_rounds"] == [500.0, 100.0, 900.0, 300.0, 200.0]
    assert report["docs_per_s"] == 300.0
    assert report["ratio_to_crypto"] == round(300.0 / report["crypto_ceiling_docs_per_s"], 3)
    assert report["cpu_ms_per_doc"] == {"sender": 0.3, "receiver": None}
    assert report["limit_rounds"] == 6  # one sample before the first round, one after each
    assert report["meets_targets"]["docs_per_s"] is False
    console = Console(width=120, record=True)
    console.print(summary_table(report))
    shown = console.export_text()
    assert "5 rounds" in shown and "500 · 100 · 900 · 300 · 200" in shown
