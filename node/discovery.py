"""LAN discovery of other nodes by zeroconf/mDNS (DESIGN §6).

Theory of operation: each node registers a ``_govnode._tcp.local.`` service whose TXT
record holds its node id (``id``), the SHA-256 fingerprint of its Ed25519 key (``fpr``)
and its version (``ver``), and browses for the same type. Announcements that resolve
to a well-formed TXT land in ``found`` and are handed to ``on_found``; our own and
malformed ones are dropped (logged at debug level), never raised.

A discovered endpoint is only a *hint*: anyone on the LAN can announce anything. The
node makes it a gossip peer only once its directory holds a valid certificate for that
node id with that fingerprint; that check lives in the node, not here.

The instance label is the node id with '.' turned into '-' plus 8 hex digits of the
fingerprint: zeroconf would send the dots as label separators, which other DNS-SD
browsers misread, and a label holds at most 63 bytes. The TXT ``id`` is authoritative.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import ifaddr  # zeroconf's own dependency for listing interfaces
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from protocol import ids

SERVICE_TYPE = "_govnode._tcp.local."
RESOLVE_TIMEOUT_MS = 3000
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")
_MAX_VERSION_LEN = 64

log = logging.getLogger("govnode.discovery")


@dataclass(frozen=True)
class DiscoveredNode:
    node_id: str
    fingerprint: str  # 64 hex chars, SHA-256 of the node's Ed25519 key
    version: str
    urls: tuple[str, ...]  # http://ADDRESS:PORT for each address announced


OnFound = Callable[[DiscoveredNode], Awaitable[None] | None]


def _ignore(node: DiscoveredNode) -> None:
    return None


def instance_name(node_id: str, fingerprint: str) -> str:
    """The fully qualified service instance name a node registers."""
    label = f"{node_id.replace('.', '-')[:54]}-{fingerprint[:8]}"
    return f"{label}.{SERVICE_TYPE}"


def _host_ipv4() -> list[str]:
    return [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips if ip.is_IPv4]


def _default_addresses(interfaces: Sequence[str] | None) -> list[str]:
    if interfaces:
        return list(interfaces)
    found = _host_ipv4()
    return [a for a in found if not ipaddress.ip_address(a).is_loopback] or found


def _check_interfaces(interfaces: Sequence[str]) -> None:
    # zeroconf leaks a socket when asked for an interface that does not exist
    if missing := [i for i in interfaces if i not in _host_ipv4()]:
        raise OSError(f"not an IPv4 address of this machine: {', '.join(missing)}")


def node_from_info(info: AsyncServiceInfo) -> DiscoveredNode:
    """The node an announcement describes; ValueError naming the problem if malformed."""
    txt = info.decoded_properties
    node_id, fpr, version = txt.get("id"), txt.get("fpr"), txt.get("ver")
    if not node_id or not ids.is_valid_node_id(node_id):
        raise ValueError(f"bad or missing TXT id {node_id!r}")
    if not fpr or not _FINGERPRINT.fullmatch(fpr):
        raise ValueError(f"bad or missing TXT fpr {fpr!r}")
    if not version or len(version) > _MAX_VERSION_LEN:
        raise ValueError(f"bad or missing TXT ver {version!r}")
    addresses = sorted(set(info.parsed_addresses(IPVersion.V4Only)), key=ipaddress.ip_address)
    if not info.port or not addresses:
        raise ValueError("no port or no IPv4 address")
    urls = tuple(f"http://{address}:{info.port}" for address in addresses)
    return DiscoveredNode(node_id, fpr, version, urls)


class Discovery:
    """Announce this node on the LAN and collect the nodes other announcements name."""

    def __init__(self, *, node_id: str, fingerprint: str, version: str, port: int,
                 addresses: Sequence[str] | None = None,
                 interfaces: Sequence[str] | None = None,
                 on_found: OnFound = _ignore) -> None:
        ids.validate_node_id(node_id)
        if not _FINGERPRINT.fullmatch(fingerprint):
            raise ValueError("fingerprint must be 64 lowercase hex digits")
        self._node_id, self._on_found = node_id, on_found
        self._interfaces = list(interfaces) if interfaces else None
        name = instance_name(node_id, fingerprint)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE, name, server=name.removesuffix(SERVICE_TYPE) + "local.", port=port,
            addresses=[socket.inet_aton(a) for a in addresses or _default_addresses(interfaces)],
            properties={"id": node_id, "fpr": fingerprint, "ver": version})
        self._found: dict[str, DiscoveredNode] = {}
        self._names: dict[str, str] = {}  # instance name -> node id
        self._resolving: dict[str, asyncio.Task[None]] = {}
        self._callbacks: set[asyncio.Task[None]] = set()
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._announce: asyncio.Future[None] | None = None

    @property
    def found(self) -> Mapping[str, DiscoveredNode]:
        return MappingProxyType(self._found)

    async def start(self) -> None:
        """Register our service (after mDNS probing) and start browsing."""
        try:
            _check_interfaces(self._interfaces or [])
            self._zc = AsyncZeroconf(interfaces=self._interfaces or InterfaceChoice.All,
                                     ip_version=IPVersion.V4Only)
            self._announce = await self._zc.async_register_service(self._info)
            self._browser = AsyncServiceBrowser(self._zc.zeroconf, SERVICE_TYPE,
                                                handlers=[self._on_change])
        except BaseException:
            await self.stop()
            raise
        log.info("discovery started for %s on %s", self._node_id,
                 self._interfaces or "all interfaces")

    async def stop(self) -> None:
        """Send goodbyes and close; idempotent and safe after a failed start."""
        zc, browser, announce = self._zc, self._browser, self._announce
        self._zc = self._browser = self._announce = None
        for task in [*self._resolving.values(), *self._callbacks]:
            task.cancel()
        self._resolving.clear()
        self._callbacks.clear()
        if announce is not None:
            announce.cancel()
        if browser is not None:
            await browser.async_cancel()
        if zc is not None:
            await zc.async_close()  # unregisters our service, sending goodbyes
            log.info("discovery stopped for %s", self._node_id)

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        if self._zc is None or name.lower() == self._info.name.lower():
            return
        if state_change is ServiceStateChange.Removed:
            self._forget(name)
            return
        if (previous := self._resolving.pop(name, None)) is not None:
            previous.cancel()
        self._resolving[name] = asyncio.get_running_loop().create_task(self._resolve(name))

    def _forget(self, name: str) -> None:
        if (pending := self._resolving.pop(name, None)) is not None:
            pending.cancel()
        node_id = self._names.pop(name, None)
        if node_id is not None and node_id not in self._names.values():
            self._found.pop(node_id, None)
            log.info("node %s withdrew its announcement", node_id)

    async def _resolve(self, name: str) -> None:
        try:
            node = await self._lookup(name)
            if node is not None and node.node_id != self._node_id:
                self._record(name, node)
        except Exception:  # a hint must never take discovery down
            log.exception("ignoring %s: unexpected error", name)
        finally:
            if self._resolving.get(name) is asyncio.current_task():
                del self._resolving[name]

    async def _lookup(self, name: str) -> DiscoveredNode | None:
        info = AsyncServiceInfo(SERVICE_TYPE, name)
        zc = self._zc
        if zc is None or not await info.async_request(zc.zeroconf, RESOLVE_TIMEOUT_MS):
            log.debug("ignoring %s: did not resolve", name)
            return None
        try:
            return node_from_info(info)
        except ValueError as exc:
            log.debug("ignoring %s: %s", name, exc)
            return None

    def _record(self, name: str, node: DiscoveredNode) -> None:
        self._names[name] = node.node_id
        if self._found.get(node.node_id) == node:
            return
        self._found[node.node_id] = node
        log.info("discovered %s (%s) at %s", node.node_id, node.fingerprint[:16],
                 ", ".join(node.urls))
        self._notify(node)

    def _notify(self, node: DiscoveredNode) -> None:
        # async callbacks run in their own task: a later re-resolve must not cancel them
        try:
            result = self._on_found(node)
        except Exception:
            log.exception("on_found callback failed for %s", node.node_id)
            return
        if inspect.isawaitable(result):
            task = asyncio.get_running_loop().create_task(self._await_callback(node, result))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    @staticmethod
    async def _await_callback(node: DiscoveredNode, result: Awaitable[None]) -> None:
        try:
            await result
        except Exception:
            log.exception("on_found callback failed for %s", node.node_id)

