"""Topology files: which nodes a local federation has (``configs/topologies/*.toml``).

Read by ``govnode demo`` and the simulator. The format::

    [topology]
    name = "mini"

    [gossip]                   # optional; each key optional
    interval_ms = 250
    fanout = 3
    status_interval_ms = 5000

    [[node]]
    id = "gd.chaozhou.raoping" # parent implied by the id: gd.chaozhou
    name = "饶平县人民政府办公室"
    level = "county"           # optional: province, city, county, department (default by depth)
    division = "445122"        # optional: GB/T 2260 code, 6 digits

Loading refuses, with the file and the node named: unknown sections or keys, wrong
types, bad ids, duplicate ids, a node whose parent is not in the file, more than one
root (or none). Nodes come back parents first (by depth, in file order within a
depth), so building them in order always finds the parent already there.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import ids
from protocol.certs import Level
from protocol.errors import ProtocolError

TOPOLOGIES_DIR = Path(__file__).resolve().parent.parent / "configs" / "topologies"

_SECTIONS = {"topology": {"name"}, "gossip": {"interval_ms", "fanout", "status_interval_ms"},
             "node": {"id", "name", "level", "division"}}


class TopologyError(ValueError):
    """A topology file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class TopologyNode:
    id: str
    name: str
    level: Level
    division: str | None = None

    @property
    def parent(self) -> str | None:
        return ids.parent(self.id)

    @property
    def depth(self) -> int:
        return ids.depth(self.id)


@dataclass(frozen=True)
class GossipTiming:
    """Gossip settings every node of the topology gets (None: the node's default)."""

    interval_ms: int | None = None
    fanout: int | None = None
    status_interval_ms: int | None = None


@dataclass(frozen=True)
class Topology:
    name: str
    nodes: tuple[TopologyNode, ...]  # parents first
    gossip: GossipTiming = GossipTiming()

    @property
    def root(self) -> TopologyNode:
        return self.nodes[0]

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.id for node in self.nodes)

    def node(self, node_id: str) -> TopologyNode:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def children(self, node_id: str) -> tuple[TopologyNode, ...]:
        return tuple(node for node in self.nodes if node.parent == node_id)

    def depths(self) -> list[tuple[TopologyNode, ...]]:
        """The nodes grouped by depth, root first (each group can be built at once)."""
        deepest = max(node.depth for node in self.nodes)
        return [tuple(n for n in self.nodes if n.depth == d) for d in range(1, deepest + 1)]


def resolve(name_or_path: str | Path) -> Path:
    """A path as given, or a shipped topology by name (``mini``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or len(path.parts) > 1:
        return path
    return TOPOLOGIES_DIR / f"{path}.toml"


def load_topology(path: str | Path) -> Topology:
    path = resolve(path)
    try:
        parsed = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TopologyError(f"{path}: not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TopologyError(f"{path}: {error}") from None
    return parse_topology(parsed, source=str(path))


def parse_topology(parsed: dict[str, Any], *, source: str = "topology") -> Topology:
    for section in parsed:
        if section not in _SECTIONS:
            raise TopologyError(f"{source}: unknown section [{section}] "
                                f"(known: {', '.join(sorted(_SECTIONS))})")
    header = _table(parsed.get("topology"), "[topology]", source, required=True)
    name = _text(header, "name", "[topology]", source, required=True)
    gossip_table = _table(parsed.get("gossip", {}), "[gossip]", source)
    gossip = GossipTiming(**{key: _positive(gossip_table, key, source)
                             for key in _SECTIONS["gossip"] if key in gossip_table})
    entries = parsed.get("node")
    if not isinstance(entries, list) or not entries:
        raise TopologyError(f"{source}: no [[node]] entries")
    nodes = [_node(entry, index, source) for index, entry in enumerate(entries, 1)]
    _check_tree(nodes, source)
    ordered = tuple(sorted(nodes, key=lambda node: node.depth))  # stable: file order kept
    return Topology(name=name, nodes=ordered, gossip=gossip)


def _table(value: Any, where: str, source: str, *, required: bool = False,
           keys: str | None = None) -> dict[str, Any]:
    if value is None and required:
        raise TopologyError(f"{source}: {where} is required")
    if not isinstance(value, dict):
        raise TopologyError(f"{source}: {where} must be a table")
    known = _SECTIONS[keys or where.strip("[]")]
    for key in value:
        if key not in known:
            raise TopologyError(f"{source}: unknown key {key!r} in {where} "
                                f"(known: {', '.join(sorted(known))})")
    return value


def _text(table: dict[str, Any], key: str, where: str, source: str, *,
          required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise TopologyError(f"{source}: {where} {key} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise TopologyError(f"{source}: {where} {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _positive(table: dict[str, Any], key: str, source: str) -> int:
    value = table[key]
    if type(value) is not int or value <= 0:
        raise TopologyError(f"{source}: [gossip] {key} must be a positive integer, got {value!r}")
    return value


def _node(entry: Any, index: int, source: str) -> TopologyNode:
    where = f"[[node]] #{index}"
    table = _table(entry, where, source, keys="node")
    node_id = _text(table, "id", where, source, required=True)
    try:
        ids.validate_node_id(node_id)
    except ProtocolError as error:
        raise TopologyError(f"{source}: {where}: {error.detail}") from None
    where = f"[[node]] {node_id}"
    name = _text(table, "name", where, source, required=True)
    level_text = _text(table, "level", where, source)
    try:
        level = Level(level_text) if level_text else _default_level(node_id)
    except ValueError:
        raise TopologyError(f"{source}: {where} level must be one of "
                            f"{', '.join(level.value for level in Level)}, "
                            f"got {level_text!r}") from None
    division = _text(table, "division", where, source)
    if division is not None and not (len(division) == 6 and division.isascii()
                                     and division.isdigit()):
        raise TopologyError(f"{source}: {where} division must be 6 digits (GB/T 2260), "
                            f"got {division!r}")
    return TopologyNode(id=node_id, name=name, level=level, division=division)


def _default_level(node_id: str) -> Level:
    return {1: Level.PROVINCE, 2: Level.CITY}.get(ids.depth(node_id), Level.COUNTY)


def _check_tree(nodes: list[TopologyNode], source: str) -> None:
    seen: set[str] = set()
    for node in nodes:
        if node.id in seen:
            raise TopologyError(f"{source}: duplicate node id {node.id}")
        seen.add(node.id)
    roots = [node.id for node in nodes if node.parent is None]
    if len(roots) > 1:
        raise TopologyError(f"{source}: more than one root ({', '.join(roots)}); "
                            f"a federation has exactly one province root")
    if not roots:
        raise TopologyError(f"{source}: no root (a node with a one-segment id, e.g. gd)")
    for node in nodes:
        if node.parent is not None and node.parent not in seen:
            raise TopologyError(f"{source}: [[node]] {node.id} has no parent: "
                                f"{node.parent} is not in the topology")
