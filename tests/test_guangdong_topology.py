"""The shipped guangdong topology: the federation of the 2013 report, down to every county."""

from __future__ import annotations

from collections import Counter

import pytest

from node.topology import TOPOLOGIES_DIR, GossipTiming, Topology, load_topology
from protocol import ids
from protocol.certs import Level

# County-level divisions under each city (Foshan without Shunde, which hangs under gd).
COUNTIES_PER_CITY = {
    "gd.guangzhou": 11, "gd.shaoguan": 10, "gd.shenzhen": 9, "gd.zhuhai": 3, "gd.shantou": 7,
    "gd.foshan": 4, "gd.jiangmen": 7, "gd.zhanjiang": 9, "gd.maoming": 5, "gd.zhaoqing": 8,
    "gd.huizhou": 5, "gd.meizhou": 8, "gd.shanwei": 4, "gd.heyuan": 6, "gd.yangjiang": 4,
    "gd.qingyuan": 8, "gd.dongguan": 0, "gd.zhongshan": 0, "gd.chaozhou": 3, "gd.jieyang": 5,
    "gd.yunfu": 5,
}
OFFICE = "人民政府办公室"


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(TOPOLOGIES_DIR / "guangdong.toml")


def of_level(topology: Topology, level: Level) -> list:
    return [node for node in topology.nodes if node.level is level]


def test_it_loads_by_name_with_its_gossip_settings(topology):
    assert load_topology("guangdong") == topology
    assert topology.name == "guangdong"
    assert topology.gossip == GossipTiming(interval_ms=200, fanout=3)
    assert len(topology.nodes) == 1 + 21 + 1 + 110 + 121 == 254


def test_exactly_one_root_the_provincial_general_office(topology):
    roots = [node for node in topology.nodes if node.parent is None]
    assert [node.id for node in roots] == ["gd"]
    assert topology.root.id == "gd"
    assert (topology.root.name, topology.root.level, topology.root.division) == (
        "广东省人民政府办公厅", Level.PROVINCE, "440000")
    assert of_level(topology, Level.PROVINCE) == [topology.root]


def test_ids_are_valid_unique_and_every_parent_exists(topology):
    node_ids = topology.node_ids
    assert len(set(node_ids)) == len(node_ids)
    for node in topology.nodes:
        assert ids.validate_node_id(node.id) == node.id
        assert node.parent is None or node.parent in node_ids
    assert max(node.depth for node in topology.nodes) == 3


def test_21_cities_directly_under_the_province(topology):
    cities = of_level(topology, Level.CITY)
    assert sorted(node.id for node in cities) == sorted(COUNTIES_PER_CITY)
    assert all(node.parent == "gd" for node in cities)
    assert all(node.division and node.division.endswith("00") for node in cities)
    assert topology.node("gd.guangzhou").name == "广州市人民政府办公厅"
    assert topology.node("gd.chaozhou").name == "潮州市人民政府办公室"


def test_shunde_is_attached_directly_to_the_province(topology):
    shunde = topology.node("gd.shunde")
    assert shunde.parent == "gd"
    assert (shunde.name, shunde.level, shunde.division) == (
        "佛山市顺德区人民政府办公室", Level.COUNTY, "440606")
    assert "gd.foshan.shunde" not in topology.node_ids


def test_110_provincial_departments_directly_under_the_province(topology):
    departments = of_level(topology, Level.DEPARTMENT)
    assert len(departments) == 110
    assert all(node.parent == "gd" for node in departments)
    assert all(node.division is None for node in departments)
    assert topology.node("gd.fgw").name == "广东省发展和改革委员会"
    assert topology.node("gd.jyt").name == "广东省教育厅"
    assert topology.node("gd.czt").name == "广东省财政厅"
    # Everything directly under gd is a city, a department, or Shunde.
    assert len(topology.children("gd")) == 21 + 110 + 1


def test_121_county_level_divisions_under_their_cities(topology):
    counties = [node for node in of_level(topology, Level.COUNTY) if node.id != "gd.shunde"]
    assert len(counties) == 121
    assert all(node.depth == 3 for node in counties)
    assert Counter(node.parent for node in counties) == {
        city: count for city, count in COUNTIES_PER_CITY.items() if count}
    for city, count in COUNTIES_PER_CITY.items():
        assert len(topology.children(city)) == count, city


def test_122_county_level_divisions_by_kind(topology):
    """65 市辖区, 20 县级市, 34 县, 3 自治县 (Shunde included), read from the names."""
    kinds = Counter()
    for node in of_level(topology, Level.COUNTY):
        assert node.name.endswith(OFFICE), node.name
        place = node.name.removesuffix(OFFICE)
        kind = next(k for k in ("区", "自治县", "县", "市") if place.endswith(k))
        kinds[kind] += 1
    assert kinds == {"区": 65, "市": 20, "县": 34, "自治县": 3}


def test_division_codes_are_gbt2260_and_follow_the_tree(topology):
    divisions = [node.division for node in topology.nodes if node.division]
    assert len(divisions) == len(set(divisions)) == 1 + 21 + 122
    for node in topology.nodes:
        if node.division is None:
            continue
        assert len(node.division) == 6 and node.division.isdigit(), node.id
        assert node.division.startswith("44"), node.id
        if node.level is Level.COUNTY:
            parent = topology.node(node.parent)
            # Shunde hangs under gd but keeps Foshan's prefix.
            prefix = "4406" if node.id == "gd.shunde" else parent.division[:4]
            assert node.division[:4] == prefix, node.id
            assert node.division[4:] != "00", node.id
            # GB/T 2260: 01-20 districts, 21-80 counties, 81-99 county-level cities.
            suffix = int(node.division[4:])
            place = node.name.removesuffix(OFFICE)
            if place.endswith("区"):
                assert 1 <= suffix <= 20, node.id
            elif place.endswith("县"):
                assert 21 <= suffix <= 80, node.id
            else:
                assert 81 <= suffix <= 99, node.id


def test_names_are_unique(topology):
    names = [node.name for node in topology.nodes]
    assert len(set(names)) == len(names)


def test_the_mini_topology_agrees_with_it(topology):
    mini = load_topology("mini")
    for node in mini.nodes:
        big = topology.node(node.id)
        assert (big.name, big.division, big.level) == (node.name, node.division, node.level)
