"""Gossip only between members, only verified records: revocation, non-members, forgeries."""

from __future__ import annotations

from dataclasses import replace

import aiohttp
import pytest

from federation import Federation, govnode, wait_until
from node.clock import now_ms
from protocol import certs, frames
from protocol.directory import EndpointAnnouncement, Record, RecordKind, sign_record
from protocol.keys import NodeKeys
from protocol.messages import GossipBody, GossipReplyBody
from protocol.signing import Domain
from protocol.wire import pack, unpack

DAY_MS = 86_400_000


@pytest.fixture
async def federation(tmp_path):
    federation = Federation(tmp_path)
    await federation.create_root()
    await federation.enroll("gd.chaozhou", "潮州市人民政府办公室")
    await federation.enroll("gd.shantou", "汕头市人民政府办公室")
    await federation.enroll("gd.chaozhou.raoping", "饶平县人民政府办公室")
    await federation.wait_converged()
    yield federation
    await federation.stop_all()


async def post_gossip(target, origin: str, keys: NodeKeys, body: GossipBody) -> tuple[int, object]:
    frame = frames.make_frame(body, origin=origin, destination=target.id, created_at=now_ms(),
                              message_id=frames.new_message_id())
    async with aiohttp.ClientSession() as session:
        async with session.post(target.urls[0] + "/v1/gossip", data=frames.encode_frame(frame, keys),
                                headers={"Accept": "application/msgpack"}) as response:
            data = await response.read()
    if response.status == 200:
        return 200, frames.parse_frame(data).verify(target.keys.public.verify_key).body
    return response.status, unpack(data)


def snapshot(node) -> tuple[bytes, int]:
    return node.directory.digest.root, len(node.directory)


async def test_revocation_spreads_and_every_node_then_refuses_the_revoked_node(federation):
    county = federation.nodes["gd.chaozhou.raoping"]
    await govnode("revoke", "gd.chaozhou.raoping", "--reason", "key compromised",
                  "--data", str(federation.data_dir("gd.chaozhou")))
    others = [n for n in federation.nodes.values() if n is not county]
    await wait_until(lambda: all(not n.directory.is_valid_member(county.id, now_ms()) for n in others),
                     what="the revocation to reach every node")
    for node in others:
        before = snapshot(node)
        status, answer = await post_gossip(node, county.id, county.keys,
                                           GossipBody(root=county.directory.digest.root))
        assert (status, answer["error"]) == (403, "revoked"), node.id
        assert snapshot(node) == before


async def test_gossip_from_a_non_member_is_refused_and_changes_nothing(federation):
    province = federation.nodes["gd"]
    stranger = NodeKeys.from_seed(b"stranger")
    forged_endpoint = sign_record(stranger, EndpointAnnouncement("gd.stranger", 1, ("http://127.0.0.1:9",), now_ms()))
    before = snapshot(province)
    status, answer = await post_gossip(province, "gd.stranger", stranger,
                                       GossipBody(root=bytes(16), push=(forged_endpoint.encode(),)))
    assert (status, answer["error"]) == (401, "unknown_origin")
    assert "gd.stranger" in answer["detail"]
    assert snapshot(province) == before


async def test_a_member_impersonating_another_is_refused(federation):
    province, city = federation.nodes["gd"], federation.nodes["gd.chaozhou"]
    status, answer = await post_gossip(province, "gd.shantou", city.keys, GossipBody(root=bytes(16)))
    assert (status, answer["error"]) == (401, "bad_signature")


async def push_and_expect_refusal(federation, record: Record, code: str) -> None:
    province, city = federation.nodes["gd"], federation.nodes["gd.chaozhou"]
    before = snapshot(province)
    status, reply = await post_gossip(province, city.id, city.keys,
                                      GossipBody(root=city.directory.digest.root, push=(record.encode(),)))
    assert status == 200 and isinstance(reply, GossipReplyBody)
    assert reply.refused == ((record.kind.value, record.subject, code),)
    assert snapshot(province) == before


async def test_a_record_signed_by_someone_else_is_refused(federation):
    city = federation.nodes["gd.chaozhou"]
    forged = sign_record(city.keys, EndpointAnnouncement("gd.shantou", 99, ("http://127.0.0.1:9",), now_ms()))
    await push_and_expect_refusal(federation, forged, "bad_signature")


def forge_certificate(issuer_keys: NodeKeys, **fields) -> certs.Certificate:
    """Sign a certificate the way a rogue issuer would, bypassing issue_certificate's checks."""
    unsigned = certs.Certificate(**fields)
    payload = pack(unsigned.to_wire())
    return replace(unsigned, payload=payload, signature=issuer_keys.sign(Domain.CERTIFICATE, payload))


async def test_a_certificate_outside_its_issuers_name_constraint_is_refused(federation):
    city = federation.nodes["gd.chaozhou"]
    now = now_ms()
    rogue = forge_certificate(city.keys, subject="gd.shantou.nanao", name="冒充南澳县", level=certs.Level.COUNTY,
                              keys=NodeKeys.from_seed(b"rogue").public, issuer="gd.chaozhou", serial=1,
                              not_before=now - 1000, not_after=now + DAY_MS)
    await push_and_expect_refusal(federation, Record.of(rogue), "name_constraint")
    rogue_by_claim = forge_certificate(city.keys, subject="gd.shantou.nanao", name="冒充南澳县",
                                       level=certs.Level.COUNTY, keys=NodeKeys.from_seed(b"rogue").public,
                                       issuer="gd.shantou", serial=1, not_before=now - 1000,
                                       not_after=now + DAY_MS)
    await push_and_expect_refusal(federation, Record.of(rogue_by_claim), "bad_signature")
    sideways = forge_certificate(city.keys, subject="gd.chaozhou.raoping.x", name="越级", level=certs.Level.COUNTY,
                                 keys=NodeKeys.from_seed(b"rogue").public, issuer="gd.chaozhou", serial=1,
                                 not_before=now - 1000, not_after=now + DAY_MS)
    await push_and_expect_refusal(federation, Record.of(sideways), "name_constraint")


async def test_an_expired_certificate_is_refused(federation):
    city = federation.nodes["gd.chaozhou"]
    now = now_ms()
    expired = certs.issue_certificate(city.keys, issuer="gd.chaozhou", subject="gd.chaozhou.chaoan",
                                      name="潮安区", level=certs.Level.COUNTY,
                                      subject_keys=NodeKeys.from_seed(b"old").public, serial=1,
                                      not_before=now - 2 * DAY_MS, not_after=now - DAY_MS)
    await push_and_expect_refusal(federation, Record.of(expired), "expired_cert")


async def test_in_sync_round_is_one_small_request(federation):
    province = federation.nodes["gd"]
    peers = province.gossip.choose_peers(3)
    results = [await province.gossip.exchange(peer) for peer in peers]
    assert len(results) == 3 and all(r.in_sync for r in results)
    assert max(r.bytes for r in results) < 600  # frame overhead + a 16-byte root, both ways
    assert len(province.directory) == 4 * 3  # cert and endpoint per member, every status here


async def test_a_records_kind_is_part_of_its_identity(federation):
    """A status record's key never collides with an endpoint's: both coexist."""
    node = federation.nodes["gd"]
    assert node.directory.get(RecordKind.ENDPOINT, "gd.shantou") is not None
    assert node.directory.get(RecordKind.STATUS, "gd.shantou") is not None
    assert node.directory.get("no-such-kind", "gd.shantou") is None
