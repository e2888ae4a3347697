"""``govnode bench gossip``: its topologies, and one real run on a few nodes."""

from __future__ import annotations

import tomllib

import pytest
from rich.console import Console

from node.bench.gossip import changed_county, run_gossip_bench, to_toml, topology_of
from node.topology import TopologyError, parse_topology
from protocol import ids


@pytest.mark.parametrize("nodes", [3, 40, 254, 300])
def test_every_size_is_a_federation_parents_first(nodes):
    topology = topology_of(nodes, 200)
    node_ids = [n["id"] for n in topology["node"]]
    assert len(node_ids) == len(set(node_ids)) == nodes
    for position, node_id in enumerate(node_ids[1:], start=1):
        assert ids.parent(node_id) in node_ids[:position]
    parsed = parse_topology(tomllib.loads(to_toml(topology)))  # a valid topology file
    assert sorted(parsed.node_ids) == sorted(node_ids) and parsed.gossip.interval_ms == 200
    assert changed_county(topology).count(".") == 2


def test_too_few_nodes_is_a_clear_error():
    with pytest.raises(TopologyError, match="at least 3 nodes"):
        run_gossip_bench(nodes=2, interval_ms=200, workers=1, console=Console(quiet=True))


def test_a_small_run_reports_every_figure():
    result = run_gossip_bench(nodes=8, interval_ms=100, workers=2, console=Console(quiet=True))
    assert result["complete"] and result["nodes"] == 8 and result["interval_ms"] == 100
    assert 0 < result["convergence_p50_s"] <= result["convergence_s"]
    assert result["rounds"] == round(result["convergence_s"] * 1000 / 100, 1)
    assert 200 < result["bytes_per_insync_round"] < 1000  # one small signed request and reply
    assert result["rss_mb"] > 0
