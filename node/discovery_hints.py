"""LAN discovery results, admitted as gossip peers only when the directory vouches.

zeroconf (``node.discovery``) reports nodes announcing ``_govnode._tcp.local.``. Such
an announcement is only a hint: ``urls_for`` returns its addresses only while the
directory holds a valid certificate for that id *with the announced fingerprint*.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from node import __version__
from node.clock import now_ms
from node.member_directory import MemberDirectory

if TYPE_CHECKING:
    from node.app import Node
    from node.discovery import DiscoveredNode, Discovery

log = logging.getLogger("govnode.discovery")


class DiscoveryHints:
    def __init__(self, directory: MemberDirectory) -> None:
        self.directory = directory
        # By id, then fingerprint: an impostor announcing our peer's id with another
        # key must not hide the real one.
        self.seen: dict[str, dict[str, "DiscoveredNode"]] = {}
        self._discovery: "Discovery | None" = None

    async def start(self, node: "Node") -> None:
        from node.discovery import Discovery  # zeroconf is only loaded when enabled

        interfaces = list(node.config.discovery_interfaces) or None
        self._discovery = Discovery(node_id=node.id, fingerprint=node.keys.fingerprint,
                                    version=__version__, port=node.port, addresses=interfaces,
                                    interfaces=interfaces, on_found=self._found)
        try:
            await self._discovery.start()
        except Exception as error:  # noqa: BLE001 -- no multicast, a name clash, ...:
            # discovery is only a hint; the node works without it.
            log.warning("LAN discovery unavailable: %s: %s", type(error).__name__, error)
            self._discovery = None

    def _found(self, found: "DiscoveredNode") -> None:
        self.seen.setdefault(found.node_id, {})[found.fingerprint] = found
        log.info("discovered %s at %s", found.node_id, ", ".join(found.urls))

    def urls_for(self, peer: str) -> tuple[str, ...]:
        certificate = self.directory.certificate(peer)
        if certificate is None or not self.directory.is_valid_member(peer, now_ms()):
            return ()
        found = self.seen.get(peer, {}).get(certificate.fingerprint)
        return found.urls if found else ()

    async def stop(self) -> None:
        if self._discovery is not None:
            await self._discovery.stop()
