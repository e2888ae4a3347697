"""A node found on the LAN becomes a gossip peer only once the directory vouches for it."""

from __future__ import annotations

import pytest

from federation import Federation, govnode, wait_until
from node.discovery import Discovery


@pytest.fixture
async def federation(tmp_path, loopback_multicast):
    federation = Federation(tmp_path, discovery_interface=loopback_multicast)
    await federation.create_root()
    yield federation
    await federation.stop_all()


async def test_discovered_node_is_only_a_hint_until_its_certificate_arrives(federation):
    root = federation.nodes["gd"]
    await govnode("init", "--data", str(federation.data_dir("gd.chaozhou")), "--id", "gd.chaozhou",
                  "--name", "潮州市人民政府办公室", "--parent-url", root.urls[0],
                  "--trust-anchor", federation.trust_anchor, "--listen", "127.0.0.1:0",
                  *federation._timing())
    city = await federation.start("gd.chaozhou")  # running, announced, not yet enrolled

    await wait_until(lambda: "gd.chaozhou" in root.hints.seen, what="the root to discover the city")
    assert root.hints.urls_for("gd.chaozhou") == ()
    assert "gd.chaozhou" not in root.gossip.choose_peers(10)

    await govnode("enroll", "approve", "gd.chaozhou", "--data", str(federation.data_dir("gd")))
    await wait_until(lambda: city.enrolled, what="the city to pick up its certificate")
    await wait_until(lambda: root.hints.urls_for("gd.chaozhou") == city.urls,
                     what="the discovery hint to be admitted once the certificate is known")


async def test_an_impostor_announcing_a_members_id_is_never_admitted(federation, loopback_multicast):
    root = federation.nodes["gd"]
    city = await federation.enroll("gd.chaozhou", "潮州市人民政府办公室")
    impostor = Discovery(node_id="gd.chaozhou", fingerprint="ab" * 32, version="0.0",
                         port=9, addresses=[loopback_multicast], interfaces=[loopback_multicast])
    await impostor.start()
    try:
        await wait_until(lambda: "ab" * 32 in root.hints.seen.get("gd.chaozhou", {}),
                         what="the impostor's announcement to arrive")
        await wait_until(lambda: root.hints.urls_for("gd.chaozhou") == city.urls,
                         what="the real city's hint, matched by fingerprint")
        assert "http://127.0.0.1:9" not in root.hints.urls_for("gd.chaozhou")
    finally:
        await impostor.stop()
