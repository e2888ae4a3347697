"""Tests for node.discovery over real mDNS, kept on this machine's loopback interface.

Every zeroconf instance here is bound to 127.0.0.1 (``interfaces=[LOOPBACK]``), so its
multicast leaves through ``lo`` and loops back to the other instances in this process;
nothing reaches a real network. Linux delivers looped-back multicast on ``lo`` even
without the MULTICAST link flag; the session fixture ``loopback_multicast`` (conftest.py)
proves that with a plain socket first and, where it does not hold, sets the flag
(root and iproute2 needed) and clears it again afterwards. Under CI the fixture
fails loudly instead of skipping.

Node ids carry a random token so that concurrent runs on one host cannot confuse
each other. Every wait is on a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from zeroconf import IPVersion, NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from node.discovery import SERVICE_TYPE, DiscoveredNode, Discovery, instance_name
from protocol.errors import BadNodeId

LOOPBACK = "127.0.0.1"
DEADLINE = 10.0  # seconds; discovery normally takes about one second
MDNS_GROUP = "224.0.0.251"
UNASSIGNED_IP = "203.0.113.77"  # TEST-NET-3: on no interface of this machine


# --- helpers -----------------------------------------------------------------------

def _fingerprint() -> str:
    return secrets.token_hex(32)


@pytest.fixture
def token() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
async def discoveries(loopback_multicast: str) -> AsyncIterator[Callable[..., Discovery]]:
    """Makes loopback-bound Discovery instances and stops them all afterwards."""
    made: list[Discovery] = []

    def make(**kwargs: object) -> Discovery:
        kwargs.setdefault("interfaces", [loopback_multicast])
        made.append(Discovery(**kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    await asyncio.gather(*(d.stop() for d in made))


async def _eventually(condition: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)  # poll until the deadline below
    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except TimeoutError:
        pytest.fail(f"not within {DEADLINE}s: {what}")


async def _wait(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), DEADLINE)
    except TimeoutError:
        pytest.fail(f"not within {DEADLINE}s: {what}")


def _raw_info(name: str, properties: dict[str, str], port: int = 9000) -> AsyncServiceInfo:
    return AsyncServiceInfo(SERVICE_TYPE, f"{name}.{SERVICE_TYPE}", server=f"{name}.local.",
                            port=port, addresses=[socket.inet_aton(LOOPBACK)],
                            properties=properties)


# --- tests -------------------------------------------------------------------------

async def test_two_nodes_find_each_other_and_notice_a_goodbye(discoveries, token):
    a_id, b_id = f"gd.{token}.alpha", f"gd.{token}.beta"
    a_fpr, b_fpr = _fingerprint(), _fingerprint()
    a_calls: list[DiscoveredNode] = []
    b_calls: list[DiscoveredNode] = []
    a_saw_b, b_saw_a = asyncio.Event(), asyncio.Event()

    async def a_found(node: DiscoveredNode) -> None:  # async callback
        a_calls.append(node)
        if node.node_id == b_id:
            a_saw_b.set()

    def b_found(node: DiscoveredNode) -> None:  # sync callback
        b_calls.append(node)
        if node.node_id == a_id:
            b_saw_a.set()

    a = discoveries(node_id=a_id, fingerprint=a_fpr, version="0.1.0", port=18441,
                    addresses=[LOOPBACK], on_found=a_found)
    b = discoveries(node_id=b_id, fingerprint=b_fpr, version="0.2.0", port=18442,
                    addresses=["127.0.0.2", LOOPBACK], on_found=b_found)
    await asyncio.gather(a.start(), b.start())
    await _wait(a_saw_b, "alpha discovers beta")
    await _wait(b_saw_a, "beta discovers alpha")

    expect_a = DiscoveredNode(a_id, a_fpr, "0.1.0", ("http://127.0.0.1:18441",))
    expect_b = DiscoveredNode(b_id, b_fpr, "0.2.0",
                              ("http://127.0.0.1:18442", "http://127.0.0.2:18442"))
    assert a.found[b_id] == expect_b and b.found[a_id] == expect_a
    assert a_id not in a.found and b_id not in b.found  # never ourselves
    assert [n for n in a_calls if token in n.node_id] == [expect_b]
    assert [n for n in b_calls if token in n.node_id] == [expect_a]

    await b.stop()  # sends goodbyes
    await _eventually(lambda: b_id not in a.found, "alpha forgets beta after its goodbye")


async def test_malformed_announcements_are_ignored_and_updates_reported(discoveries, token, caplog):
    good_id, good_fpr = f"gd.{token}.good", _fingerprint()
    bad = {
        f"{token}-badfpr": {"id": f"gd.{token}.badfpr", "fpr": "nothex", "ver": "1"},
        f"{token}-nofpr": {"id": f"gd.{token}.nofpr", "ver": "1"},
        f"{token}-upperfpr": {"id": f"gd.{token}.upper", "fpr": _fingerprint().upper(), "ver": "1"},
        f"{token}-badid": {"id": f"GD.{token}_Bad", "fpr": _fingerprint(), "ver": "1"},
        f"{token}-noid": {"fpr": _fingerprint(), "ver": "1"},
        f"{token}-nover": {"id": f"gd.{token}.nover", "fpr": _fingerprint()},
    }
    bad_names = {f"{label}.{SERVICE_TYPE}".lower() for label in bad}
    rejected: set[str] = set()
    all_rejected = asyncio.Event()

    class Rejections(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            args = record.args if isinstance(record.args, tuple) else ()
            if record.msg.startswith("ignoring ") and len(args) == 2 and "TXT" in str(args[1]):
                rejected.add(str(args[0]).lower())
                if bad_names <= rejected:
                    all_rejected.set()

    calls: list[DiscoveredNode] = []
    new_call = asyncio.Event()

    def on_found(node: DiscoveredNode) -> None:
        if token in node.node_id:  # other runs on this host may be announcing too
            calls.append(node)
            new_call.set()
        raise RuntimeError("a broken callback must not break discovery")

    caplog.set_level(logging.DEBUG, logger="govnode.discovery")
    handler = Rejections()
    logging.getLogger("govnode.discovery").addHandler(handler)
    raw = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    try:
        watcher = discoveries(node_id=f"gd.{token}.watcher", fingerprint=_fingerprint(),
                              version="0.1.0", port=18443, addresses=[LOOPBACK], on_found=on_found)
        good = _raw_info(f"{token}-good", {"id": good_id, "fpr": good_fpr, "ver": "1.0"})
        infos = [*(_raw_info(label, txt) for label, txt in bad.items()), good]
        *announcing, _ = await asyncio.gather(*map(raw.async_register_service, infos),
                                              watcher.start())
        await _wait(new_call, "the good announcement is found")
        await _wait(all_rejected, f"all malformed announcements rejected (got {sorted(rejected)})")

        assert watcher.found[good_id] == DiscoveredNode(good_id, good_fpr, "1.0",
                                                        ("http://127.0.0.1:9000",))
        assert not {n for n in watcher.found if token in n} - {good_id}
        assert [n.node_id for n in calls] == [good_id]
        assert "on_found callback failed" in caplog.text

        new_call.clear()
        updated = _raw_info(f"{token}-good", {"id": good_id, "fpr": good_fpr, "ver": "1.1"})
        await (await raw.async_update_service(updated))
        await _wait(new_call, "the changed version is reported")
        assert watcher.found[good_id].version == "1.1"
        assert [n.version for n in calls] == ["1.0", "1.1"]
        await asyncio.gather(*announcing)
    finally:
        logging.getLogger("govnode.discovery").removeHandler(handler)
        await raw.async_close()


async def test_stop_is_idempotent_and_safe_before_start_and_after_a_failed_start(
        loopback_multicast, token):
    fpr = _fingerprint()
    kwargs = dict(fingerprint=fpr, version="0.1.0", port=18444, addresses=[LOOPBACK])
    node = Discovery(node_id=f"gd.{token}.stopper", interfaces=[loopback_multicast], **kwargs)
    await node.stop()  # never started
    await node.start()
    await node.stop()
    await node.stop()

    no_such_interface = Discovery(node_id=f"gd.{token}.broken", interfaces=[UNASSIGNED_IP],
                                  **kwargs)
    with pytest.raises(OSError, match=UNASSIGNED_IP):
        await no_such_interface.start()
    await no_such_interface.stop()

    # someone on the LAN already holds our instance name: mDNS probing refuses it
    squatter = AsyncZeroconf(interfaces=[LOOPBACK], ip_version=IPVersion.V4Only)
    clash_id = f"gd.{token}.clash"
    label = instance_name(clash_id, fpr).removesuffix("." + SERVICE_TYPE)
    try:
        await squatter.async_register_service(_raw_info(label, {"id": clash_id}))
        clash = Discovery(node_id=clash_id, interfaces=[loopback_multicast], **kwargs)
        with pytest.raises(NonUniqueNameException):
            await clash.start()
        await clash.stop()
        await clash.stop()
    finally:
        await squatter.async_close()


def test_constructor_refuses_bad_identity_and_instance_labels_fit_dns():
    with pytest.raises(BadNodeId):
        Discovery(node_id="Not.Valid", fingerprint=_fingerprint(), version="1", port=1,
                  addresses=[LOOPBACK])
    with pytest.raises(ValueError):
        Discovery(node_id="gd.ok", fingerprint="ab" * 16, version="1", port=1, addresses=[LOOPBACK])
    long_id = ".".join(["a" * 32] * 7)
    label = instance_name(long_id, "f" * 64).removesuffix("." + SERVICE_TYPE)
    assert "." not in label and len(label.encode()) <= 63 and label.endswith("-ffffffff")
