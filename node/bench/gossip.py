"""``govnode bench gossip``: how fast one directory change reaches every node.

Theory of operation. The first N units of the Guangdong topology (parents before
children, so every subset is a federation; beyond its 254 units, extra counties are
added under the cities) are built and run by the simulator (``node.sim.run``): real
nodes in worker processes, real HTTP on loopback, real SQLite. Once every node knows
every member, one county is re-keyed as an operator would (new keys, its city signs
the new certificate); the workers note when each of their nodes first holds it.
Figures: seconds until the last node holds it (and the median node), the same in
gossip intervals, the bytes of one in-sync exchange (what a quiet federation costs
per round), and the peak resident memory of all worker processes.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import tomllib
from pathlib import Path

from rich.console import Console

from node.sim.run import Coordinator, SimOptions
from node.topology import TopologyError, resolve

SOURCE_TOPOLOGY = "guangdong"
SETTLE_S = 3.0  # quiet time before the change, after every node knows every member


def topology_of(nodes: int, interval_ms: int) -> dict:
    """A topology dict of ``nodes`` units: Guangdong's, parents first, then made-up
    counties under its cities when more are asked for."""
    source = tomllib.loads(resolve(SOURCE_TOPOLOGY).read_text(encoding="utf-8"))
    chosen, ids = [], set()
    for node in source["node"]:
        parent = node["id"].rsplit(".", 1)[0] if "." in node["id"] else None
        if len(chosen) < nodes and (parent is None or parent in ids):
            chosen.append(node)
            ids.add(node["id"])
    cities = sorted({n["id"].rsplit(".", 1)[0] for n in source["node"] if n["id"].count(".") == 2})
    extra = 0
    while len(chosen) < nodes:
        city = cities[extra % len(cities)]
        chosen.append({"id": f"{city}.x{extra}", "name": f"模拟县{extra}", "level": "county"})
        extra += 1
    return {"topology": {"name": f"bench-{nodes}"},
            "gossip": {"interval_ms": interval_ms, "fanout": source["gossip"]["fanout"]},
            "node": chosen}


def changed_county(topology: dict) -> str:
    counties = [n["id"] for n in topology["node"] if n["id"].count(".") == 2]
    if not counties:
        raise TopologyError("bench gossip needs at least one county: ask for more nodes")
    return counties[len(counties) // 2]


def to_toml(topology: dict) -> str:
    lines = ["[topology]", f'name = "{topology["topology"]["name"]}"', "", "[gossip]"]
    lines += [f"{key} = {value}" for key, value in topology["gossip"].items()]
    for node in topology["node"]:
        lines += ["", "[[node]]"] + [f"{key} = {json.dumps(value, ensure_ascii=False)}"
                                     for key, value in node.items()]
    return "\n".join(lines) + "\n"


def run_gossip_bench(*, nodes: int, interval_ms: int, workers: int, console: Console) -> dict:
    if nodes < 3:
        raise TopologyError("bench gossip needs at least 3 nodes (a province, a city, a county)")
    topology = topology_of(nodes, interval_ms)
    county = changed_county(topology)
    with tempfile.TemporaryDirectory(prefix="govnode-bench-gossip-") as base:
        path = Path(base) / "topology.toml"
        path.write_text(to_toml(topology), encoding="utf-8")
        options = SimOptions(topology=str(path), duration_s=SETTLE_S + 5, rate=0.0,
                             faults=f"rekey:{county}@{SETTLE_S}", workers=workers,
                             data_dir=Path(base) / "nodes")
        report = asyncio.run(Coordinator(options, console).run())
    convergence = report["convergence_s"]
    return {"nodes": report["nodes"], "interval_ms": interval_ms,
            "convergence_s": convergence["max"], "convergence_p50_s": convergence["p50"],
            "rounds": round(convergence["max"] * 1000 / interval_ms, 1),
            "complete": not convergence["incomplete"],
            "bytes_per_insync_round": report["gossip"]["bytes_per_insync_round"],
            "rss_mb": report["rss_mb_total"], "rss_mb_per_node": report["rss_mb_per_node"],
            "directory_sync_s": report["directory_sync_s"], "changed": county,
            "workers": report["workers"], "wall_s": report["wall_s"]}
