"""Fixtures shared by several test files."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio

LOOPBACK = "127.0.0.1"
MDNS_GROUP = "224.0.0.251"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _loopback_multicast_works() -> bool:
    """Send one datagram to the mDNS group via lo (on a private port) and receive it."""
    token = secrets.token_bytes(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        try:
            rx.bind(("", 0))
            membership = socket.inet_aton(MDNS_GROUP) + socket.inet_aton(LOOPBACK)
            rx.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(LOOPBACK))
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            tx.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            tx.sendto(token, (MDNS_GROUP, rx.getsockname()[1]))
            rx.settimeout(2.0)
            while rx.recv(64) != token:
                pass
            return True
        except OSError:  # includes socket.timeout
            return False


def _set_lo_multicast(on: bool) -> None:
    subprocess.run(["ip", "link", "set", "lo", "multicast", "on" if on else "off"], check=True)


@pytest.fixture(scope="session")
def loopback_multicast() -> Iterator[str]:
    changed = False
    if not _loopback_multicast_works() and os.geteuid() == 0 and shutil.which("ip"):
        _set_lo_multicast(True)
        changed = True
    try:
        if not _loopback_multicast_works():
            why = "multicast on the loopback interface does not work on this machine"
            if _in_ci():
                pytest.fail(f"{why}; CI must run the zeroconf tests (needs root and iproute2)")
            pytest.skip(why)
        yield LOOPBACK
    finally:
        if changed:
            _set_lo_multicast(False)




@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client for modules whose tests share the module's event loop (as their
    module-scoped federation does)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        yield session


@dataclass
class BulkCrypto:
    in_threads: bool  # the nodes' [delivery] crypto_threads during the test
    handed_to_threads: int = 0  # calls of node.crypto_work that went to a worker thread


@pytest.fixture(params=[True, False], ids=["crypto-in-threads", "crypto-on-the-loop"])
def crypto_threads(request, federation, monkeypatch) -> Iterator[BulkCrypto]:
    """Run the test with every node of the module's ``federation`` doing its bulk crypto
    in worker threads, then again on the event loop in slices ([delivery]
    crypto_threads, ``node.crypto_work``); afterwards, check that the test's bulk crypto
    went where the setting says (the test must have some)."""
    from node import crypto_work

    bulk = BulkCrypto(request.param)
    to_thread = crypto_work._in_a_thread

    async def counting(run):
        bulk.handed_to_threads += 1
        return await to_thread(run)

    monkeypatch.setattr(crypto_work, "_in_a_thread", counting)
    nodes = list(federation.nodes.values())
    before = [node.config.delivery["crypto_threads"] for node in nodes]
    for node in nodes:
        node.config.delivery["crypto_threads"] = request.param
    try:
        yield bulk
    finally:
        for node, value in zip(nodes, before):
            node.config.delivery["crypto_threads"] = value
    assert bool(bulk.handed_to_threads) == bulk.in_threads, \
        "bulk crypto did not go where the setting says"
