"""Small simulations with every fault kind: nothing lost, nothing twice, every receipt back.

Each runs the real simulator (worker processes, real nodes on loopback, the same
code as ``govnode run``) on the mini topology and judges it from the nodes' SQLite
files, as ``govnode sim`` does.
"""

from __future__ import annotations

import pytest
from rich.console import Console

from node.sim.faults import FaultSpecError, parse_faults
from node.sim.run import Coordinator, SimOptions


async def simulate(tmp_path, faults: str, seed: int) -> dict:
    options = SimOptions(topology="mini", duration_s=8, rate=4, faults=faults, workers=2,
                         seed=seed, data_dir=tmp_path / "sim", gossip_interval_ms=200,
                         status_interval_ms=3000, settle_timeout_s=60)
    return await Coordinator(options, Console(quiet=True)).run()


def assert_nothing_lost(report: dict) -> None:
    documents, receipts = report["documents"], report["receipts"]
    assert documents["sent"] > 0
    assert (documents["lost"], documents["duplicated"], documents["unexpected"]) == (0, 0, 0), report
    assert receipts["received"] == receipts["expected"], report
    assert report["problems"] == []


async def test_kills_and_dropped_transfers(tmp_path):
    report = await simulate(tmp_path, "kill:gd.chaozhou@1+3,kill:gd.shantou.nanao@4+2,drop:10%@0+8", 11)
    assert_nothing_lost(report)
    assert {f["kind"] for f in report["faults"]} == {"kill", "drop"}
    assert report["links"]["dropped_requests"] > 0  # the drop fault really dropped


async def test_partition_delay_and_a_timed_rekey(tmp_path):
    report = await simulate(tmp_path, "partition:gd.shantou@1+4,delay:30@0+8,rekey:gd.chaozhou@3", 12)
    assert_nothing_lost(report)
    convergence = report["convergence_s"]
    assert convergence["changes"] == 1 and convergence["incomplete"] == []
    assert 0 <= convergence["p50"] <= convergence["max"]


@pytest.mark.parametrize("spec, message", [
    ("explode:gd@1+1", "KIND"),
    ("kill:gd.nowhere@1+1", "not a node"),
    ("kill:gd.chaozhou@1", "needs a duration"),
    ("drop:150%@0+5", "bad drop amount"),
    ("rekey:gd@3", "root cannot re-key"),
])
def test_fault_specs_are_refused_with_a_clear_message(spec, message):
    import random
    with pytest.raises(FaultSpecError, match=message):
        parse_faults(spec, ["gd", "gd.chaozhou"], random.Random(1))
