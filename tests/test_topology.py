"""Topology files: the shipped mini topology loads; every kind of bad file is refused clearly."""

from __future__ import annotations

import dataclasses

import pytest

from node.topology import (TOPOLOGIES_DIR, GossipTiming, Topology, TopologyError, load_topology,
                           parse_topology, resolve)
from protocol.certs import Level

MINI_IDS = ("gd", "gd.chaozhou", "gd.shantou", "gd.chaozhou.raoping", "gd.chaozhou.chaoan",
            "gd.shantou.nanao", "gd.shantou.chaoyang")


def test_the_mini_topology_is_a_province_two_cities_and_four_counties():
    topology = load_topology(TOPOLOGIES_DIR / "mini.toml")
    assert topology.name == "mini"
    assert topology.node_ids == MINI_IDS
    assert topology.root.name == "广东省人民政府办公厅"
    assert [len(group) for group in topology.depths()] == [1, 2, 4]
    raoping = topology.node("gd.chaozhou.raoping")
    assert (raoping.name, raoping.division, raoping.level) == ("饶平县人民政府办公室", "445122",
                                                               Level.COUNTY)
    assert raoping.parent == "gd.chaozhou"
    assert [n.id for n in topology.children("gd.shantou")] == ["gd.shantou.nanao",
                                                              "gd.shantou.chaoyang"]
    assert topology.gossip == GossipTiming(interval_ms=250, fanout=3, status_interval_ms=5000)


def test_a_shipped_topology_is_found_by_name_and_the_model_is_frozen():
    assert resolve("mini") == TOPOLOGIES_DIR / "mini.toml"
    topology = load_topology("mini")
    with pytest.raises(dataclasses.FrozenInstanceError):
        topology.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        topology.root.name = "other"  # type: ignore[misc]


def nodes(*entries: tuple[str, str], **extra) -> dict:
    return {"topology": {"name": "t"}, **extra,
            "node": [{"id": node_id, "name": name} for node_id, name in entries]}


def test_children_may_come_before_their_parents_and_levels_default_by_depth():
    topology = parse_topology(nodes(("gd.a.b", "县"), ("gd.a", "市"), ("gd", "省")))
    assert topology.node_ids == ("gd", "gd.a", "gd.a.b")
    assert [n.level for n in topology.nodes] == [Level.PROVINCE, Level.CITY, Level.COUNTY]
    assert topology.gossip == GossipTiming()
    assert isinstance(topology, Topology)


def test_an_explicit_level_is_kept():
    parsed = nodes(("gd", "省"))
    parsed["node"].append({"id": "gd.finance", "name": "省财政厅", "level": "department"})
    assert parse_topology(parsed).node("gd.finance").level is Level.DEPARTMENT


@pytest.mark.parametrize("parsed, message", [
    ({**nodes(("gd", "省")), "extra": {}}, "unknown section [extra]"),
    ({"topology": {"name": "t", "size": 3}, "node": [{"id": "gd", "name": "省"}]},
     "unknown key 'size' in [topology]"),
    (nodes(("gd", "省"), gossip={"interval_ms": 100, "fanuot": 2}),
     "unknown key 'fanuot' in [gossip]"),
    (nodes(("gd", "省"), gossip={"interval_ms": 0}), "[gossip] interval_ms must be a positive"),
    (nodes(("gd", "省"), gossip={"fanout": "3"}), "[gossip] fanout must be a positive"),
    ({"topology": {"name": "t"}, "node": [{"id": "gd", "name": "省", "parent": "x"}]},
     "unknown key 'parent' in [[node]] #1"),
    ({"node": [{"id": "gd", "name": "省"}]}, "[topology] is required"),
    ({"topology": {}, "node": [{"id": "gd", "name": "省"}]}, "[topology] name is required"),
    ({"topology": {"name": "t"}}, "no [[node]] entries"),
    ({"topology": {"name": "t"}, "node": [{"name": "省"}]}, "[[node]] #1 id is required"),
    ({"topology": {"name": "t"}, "node": [{"id": "gd"}]}, "[[node]] gd name is required"),
    ({"topology": {"name": "t"}, "node": [{"id": "GD", "name": "省"}]}, "[[node]] #1:"),
    ({"topology": {"name": "t"}, "node": [{"id": "gd", "name": "省", "level": "village"}]},
     "level must be one of"),
    ({"topology": {"name": "t"}, "node": [{"id": "gd", "name": "省", "division": "4400"}]},
     "division must be 6 digits"),
    (nodes(("gd", "省"), ("gd.a", "市"), ("gd.a", "市2")), "duplicate node id gd.a"),
    (nodes(("gd", "省"), ("gd.a.b", "县")), "gd.a.b has no parent: gd.a is not in the topology"),
    (nodes(("gd", "省"), ("js", "苏")), "more than one root (gd, js)"),
    (nodes(("gd.a", "市")), "no root"),
])
def test_bad_topologies_are_refused_with_a_clear_message(parsed, message):
    with pytest.raises(TopologyError) as refused:
        parse_topology(parsed, source="bad.toml")
    assert message in str(refused.value)
    assert str(refused.value).startswith("bad.toml: ")


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(TopologyError, match="not found"):
        load_topology(tmp_path / "absent.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[topology\nname = 1", encoding="utf-8")
    with pytest.raises(TopologyError, match="broken.toml"):
        load_topology(broken)
