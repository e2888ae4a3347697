"""A federation forms through the enrollment commands and its directory converges."""

from __future__ import annotations

import pytest

from federation import Federation, seven_node_federation, wait_until
from protocol import ids
from protocol.directory import RecordKind


@pytest.fixture
async def federation(tmp_path):
    federation = await seven_node_federation(tmp_path)
    yield federation
    await federation.stop_all()


async def test_seven_nodes_enroll_and_every_directory_converges(federation: Federation):
    await federation.wait_converged()
    everyone = sorted(federation.nodes)
    for node in federation.nodes.values():
        assert node.directory.members(node_now(node)) == everyone
        assert {r.subject for r in node.directory.records(RecordKind.ENDPOINT)} == set(everyone)
        # Status beacons travel up the tree: each node holds those of its subtree.
        subtree = {m for m in everyone if ids.is_under(m, node.id, strict=False)}
        assert {r.subject for r in node.directory.records(RecordKind.STATUS)} == subtree


async def test_a_new_record_reaches_every_node(federation: Federation):
    await federation.wait_converged()
    county = federation.nodes["gd.shantou.nanao"]
    await county.publish_endpoint()
    seq = county.directory.endpoint(county.id).seq
    took = await wait_until(lambda: all(
        n.directory.endpoint(county.id).seq == seq for n in federation.nodes.values()),
        what="the new endpoint record everywhere")
    assert took < 10


def node_now(node) -> int:
    from node.clock import now_ms
    return now_ms()


async def test_a_quiet_federation_skips_rounds_and_beacons_still_reach_the_root(federation):
    await federation.wait_converged()
    province, county = federation.nodes["gd"], federation.nodes["gd.shantou.nanao"]
    await wait_until(lambda: all(n.gossip.skipped_rounds > 0 for n in federation.nodes.values()),
                     what="every node skipping rounds once in sync")
    await county.publish_status()
    seq = county.directory.status(county.id).seq
    await wait_until(lambda: province.directory.status(county.id).seq == seq,
                     what="the new beacon at the province")
    assert federation.nodes["gd.shantou"].directory.status(county.id).seq == seq  # on the way
    assert federation.nodes["gd.chaozhou"].directory.status(county.id) is None  # not its subtree
