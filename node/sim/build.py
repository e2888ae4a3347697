"""Make every node of a topology on disk, enrolled, before any of them runs.

Each node is created with ``operations.init_root`` / ``init_child`` (what ``govnode
init`` does) and enrolled through the air-gapped path of ``govnode enroll``: the
child writes its signed request (``request_file``), the parent approves it
(``approve_request_file``), the child installs the answer (``install_answer_file``).
No server runs during the build, so a whole province builds in seconds; every node
gets a fixed loopback port so that workers in other processes can reach it.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from node.operations import (NewNode, approve_request_file, init_child, init_root,
                             install_answer_file, request_file)
from node.topology import Topology, TopologyNode


@dataclass(frozen=True)
class BuiltNode:
    id: str
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_ports(count: int) -> list[int]:
    """Ports the OS calls free now (all held open together so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


async def build_topology(topology: Topology, root_dir: Path, *, gossip_interval_ms: int,
                         status_interval_ms: int, fanout: int,
                         progress: Callable[[str], None] = lambda node_id: None
                         ) -> dict[str, BuiltNode]:
    ports = dict(zip(topology.node_ids, free_ports(len(topology.nodes))))
    built: dict[str, BuiltNode] = {}
    anchor = ""
    for spec in topology.nodes:  # parents first
        node = BuiltNode(spec.id, root_dir / spec.id, ports[spec.id])
        new = _new_node(spec, node, built, anchor, gossip_interval_ms, status_interval_ms, fanout)
        if spec.parent is None:
            anchor = (await init_root(node.data_dir, new)).fingerprint
        else:
            await init_child(node.data_dir, new, send=False)
            request = await request_file(node.data_dir)
            answer = await approve_request_file(built[spec.parent].data_dir, request)
            await install_answer_file(node.data_dir, answer)
        built[spec.id] = node
        progress(spec.id)
    return built


def _new_node(spec: TopologyNode, node: BuiltNode, built: dict[str, BuiltNode], anchor: str,
              gossip_interval_ms: int, status_interval_ms: int, fanout: int) -> NewNode:
    return NewNode(node_id=spec.id, name=spec.name, level=spec.level, division=spec.division,
                   port=node.port, parent_url=built[spec.parent].url if spec.parent else "",
                   trust_anchor=anchor, discovery=False, gossip_interval_ms=gossip_interval_ms,
                   status_interval_ms=status_interval_ms, gossip_fanout=fanout)

