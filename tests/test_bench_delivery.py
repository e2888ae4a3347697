"""``govnode bench delivery`` runs end to end at toy sizes and reports what it documents.

No timing is asserted (the machine is shared): only that every figure is there and
positive, so the command cannot silently stop measuring something.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from node.cli import main

RATES = ("docs_per_s", "crypto_ceiling_docs_per_s", "ratio_to_crypto", "sqlite_batched_rows_per_s",
         "ratio_to_sqlite", "aiohttp_post_docs_per_s", "ratio_to_aiohttp")


def test_bench_delivery_prints_every_figure_as_one_json_line():
    result = CliRunner().invoke(main, ["bench", "delivery", "--docs", "20", "--samples", "3",
                                       "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    for key in RATES:
        assert isinstance(report[key], (int, float)) and report[key] > 0, key
    assert report["docs"] == 20 and report["body_bytes"] == 4096
    latency = report["latency_ms"]
    assert latency["samples"] == 3
    assert 0 < latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"]
    assert set(report["targets"]) == set(report["meets_targets"]) == {
        "docs_per_s", "ratio_to_crypto", "latency_p50_ms"}
    assert "govnode bench delivery" in result.output  # the table for people came first
    assert report["crypto_threads"] is False  # its nodes share this machine's cores
    assert "bulk crypto on the event loop" in result.output


def test_bench_delivery_can_run_its_nodes_with_the_default_crypto_threads():
    result = CliRunner().invoke(main, ["bench", "delivery", "--docs", "40", "--samples", "2",
                                       "--crypto-threads", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["crypto_threads"] is True and report["docs_per_s"] > 0
    assert "bulk crypto in worker threads" in result.output
