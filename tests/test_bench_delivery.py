"""``govnode bench delivery`` runs end to end at toy sizes and reports what it documents.

No timing is asserted (the machine is shared): only that every figure is there and
positive, so the command cannot silently stop measuring something.
"""

from __future__ import annotations

import json
import statistics

from click.testing import CliRunner

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
    assert report["rounds"] == len(rounds) == 3 and all(rate > 0 for rate in rounds)
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
