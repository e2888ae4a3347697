"""Bad input to ``POST /v1/gossip`` answers 4xx with a stable error code and stores
nothing: garbage, wrong types and every truncation of a valid frame are malformed,
frame types, versions, addressing, origins, signatures and replays get their own
codes, the signature covers the exact bytes, a replayed frame is refused the second
time, forged records pushed inside a good frame are refused one by one, oversized
bodies are too large (declared, sent in full or chunked) and other methods are 405.
The federation, observers and builders are those of tests/test_endpoint_input.py."""

from __future__ import annotations

import asyncio
import json
import random
from typing import AsyncIterator

import pytest
import pytest_asyncio

from federation import Federation
from node.app import Node
from node.clock import now_ms
from node.http_api import MAX_GOSSIP_BYTES, REPLAY_WINDOW_MS
from protocol import certs, frames
from protocol.certs import Level
from protocol.directory import EndpointAnnouncement, StatusBeacon, sign_record
from protocol.keys import NodeKeys
from protocol.messages import GossipBody, GossipReplyBody, PingBody
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack, unpack
from test_endpoint_input import (CITY, KNOWN_CODES, MSGPACK_ACCEPT, ROOT, assert_refused, call,
                                 enrollment_request, frame_payload, garbage, gossip_frame,
                                 root_and_city, signed_frame_payload, stores_nothing)

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- the federation ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_and_city(tmp_path_factory.mktemp("endpoint-input-gossip"))
    yield federation
    await federation.stop_all()


@pytest.fixture
def root(federation: Federation) -> Node:
    return federation.nodes[ROOT]


@pytest.fixture
def city(federation: Federation) -> Node:
    return federation.nodes[CITY]


# --- POST /v1/gossip -------------------------------------------------------------------


async def test_gossip_garbage_empty_and_wrong_types_are_malformed(root, city, http):
    rng = random.Random(2)
    keys = city.keys
    bodies = {
        "garbage": garbage(rng, 500),
        "empty": b"",
        "int": pack(12345),
        "nil": pack(None),
        "map instead of an envelope": pack({"frame": b"x"}),
        "ints instead of bin": pack([1, 2]),
        "three items": pack([b"a", b"b" * 64, b"c"]),
        "short signature": pack([pack(frame_payload(root)), b"s" * 63]),
        "payload not msgpack": pack([b"\xc1", b"s" * 64]),
        "payload an array": signed_frame_payload([1, 2, 3], keys),
        "unknown key": signed_frame_payload(frame_payload(root, x=1), keys),
        "missing key": signed_frame_payload(frame_payload(root, at=...), keys),
        "int instead of bin id": signed_frame_payload(frame_payload(root, id=7), keys),
        "short id": signed_frame_payload(frame_payload(root, id=b"\x00" * 15), keys),
        "str instead of int": signed_frame_payload(frame_payload(root, at="now"), keys),
        "negative time": signed_frame_payload(frame_payload(root, at=-1), keys),
        "body an int": signed_frame_payload(frame_payload(root, b=1), keys),
        "body with wrong keys": signed_frame_payload(frame_payload(root, b={"rootx": b"r"}), keys),
        "body root too short": signed_frame_payload(frame_payload(root, b={
            "root": b"r", "push": [], "covered": [], "entries": []}), keys),
        "push of ints": signed_frame_payload(frame_payload(root, b={
            "root": b"r" * 16, "push": [1, 2], "covered": [], "entries": []}), keys),
        "bucket out of range": signed_frame_payload(frame_payload(root, b={
            "root": b"r" * 16, "push": [], "covered": [70000], "entries": []}), keys),
        "bad summary entry": signed_frame_payload(frame_payload(root, b={
            "root": b"r" * 16, "push": [], "covered": [1], "entries": [["cert", "gd", 1]]}), keys),
        "future frame": gossip_frame(root, city, created_at=now_ms() + 10 * 60_000),
        "an enrollment request": enrollment_request(),
    }
    for what, body in bodies.items():
        async with stores_nothing(root, http):
            answer = await call(http, "POST", root.urls[0] + "/v1/gossip", data=body)
            try:
                assert_refused(answer, "malformed")
            except AssertionError as error:
                raise AssertionError(f"{what}: {error}") from None


async def test_gossip_typed_refusals(root, city, http):
    stranger = NodeKeys.generate()
    cases = [
        ("unknown_type", "a ping frame",
         gossip_frame(root, city, body=PingBody(directory_root=b"\x00" * 16))),
        ("unknown_type", "a gossip reply frame",
         gossip_frame(root, city, body=GossipReplyBody(root=b"\x00" * 16))),
        ("unknown_type", "an unknown frame type",
         signed_frame_payload(frame_payload(root, t="teleport"), city.keys)),
        ("unsupported_version", "version 2",
         signed_frame_payload(frame_payload(root, v=2), city.keys)),
        ("not_addressed_here", "a frame for the city",
         gossip_frame(root, city, destination=CITY)),
        ("not_addressed_here", "a frame for another province",
         gossip_frame(root, city, destination="hn")),
        ("unknown_origin", "an unknown signer",
         gossip_frame(root, city, origin="gd.shantou", keys=stranger)),
        ("unknown_origin", "another province's node",
         gossip_frame(root, city, origin="hn.changsha", keys=stranger)),
        ("bad_signature", "the city's id with the wrong key",
         gossip_frame(root, city, keys=stranger)),
        ("bad_signature", "the root's own id with the wrong key",
         gossip_frame(root, city, origin=ROOT, keys=stranger)),
        ("bad_node_id", "an origin that is no node id",
         signed_frame_payload(frame_payload(root, o="Gd.Chaozhou"), city.keys)),
        ("replay", "a frame older than the replay window",
         gossip_frame(root, city, created_at=now_ms() - REPLAY_WINDOW_MS - 60_000)),
    ]
    for code, what, body in cases:
        async with stores_nothing(root, http):
            answer = await call(http, "POST", root.urls[0] + "/v1/gossip", data=body)
            try:
                assert_refused(answer, code)
            except AssertionError as error:
                raise AssertionError(f"{what}: {error}") from None


async def test_gossip_signature_is_checked_over_the_exact_bytes(root, city, http):
    valid = gossip_frame(root, city)
    payload, signature = unpack(valid)
    flipped_signature = signature[:-1] + bytes([signature[-1] ^ 1])
    async with stores_nothing(root, http):
        answer = await call(http, "POST", root.urls[0] + "/v1/gossip",
                            data=pack([payload, flipped_signature]))
        assert_refused(answer, "bad_signature")
        # the same content re-encoded (the same map, keys in another order)
        reordered = pack(dict(reversed(list(unpack(payload).items()))))
        assert reordered != payload
        answer = await call(http, "POST", root.urls[0] + "/v1/gossip",
                            data=pack([reordered, signature]))
        assert_refused(answer, "bad_signature")


async def test_gossip_replayed_frame_is_refused_the_second_time(root, city, http):
    frame = gossip_frame(root, city)
    async with stores_nothing(root, http):
        first = await call(http, "POST", root.urls[0] + "/v1/gossip", data=frame,
                           headers={"Content-Type": "application/msgpack"})
        assert first.status == 200, first.body[:300]
        reply = frames.parse_frame(first.body).verify(root.keys.public.verify_key)
        assert isinstance(reply.body, GossipReplyBody) and reply.destination == CITY
        assert reply.body.root == root.directory.digest.root  # in sync: nothing else to say
        second = await call(http, "POST", root.urls[0] + "/v1/gossip", data=frame,
                            headers={"Content-Type": "application/msgpack"})
        assert_refused(second, "replay", as_msgpack=True)
        third = await call(http, "POST", root.urls[0] + "/v1/gossip", data=frame)
        assert_refused(third, "replay")


async def test_gossip_pushed_forgeries_are_refused_one_by_one_and_never_stored(root, city, http):
    stranger = NodeKeys.generate()
    now = now_ms()
    forged_endpoint = sign_record(city.keys, EndpointAnnouncement(ROOT, 10**6, ("http://evil",), now))
    unknown_status = sign_record(stranger, StatusBeacon(
        "gd.shantou", 1, now, "9", 1, {}, {}, "00", 1, {}))
    # A certificate for a sibling signed by the city: the name constraint refuses it.
    sibling = certs.Certificate("gd.shantou", "假", Level.CITY, stranger.public, CITY, 1,
                                now - 1000, now + 10**9, None)
    sibling_payload = pack(sibling.to_wire())
    sibling_data = encode_envelope(sibling_payload, city.keys.sign(Domain.CERTIFICATE,
                                                                   sibling_payload))
    push = (b"\xc1not a record", pack(["nonsense-kind", b"x"]), forged_endpoint.encode(),
            unknown_status.encode(), pack(["cert", sibling_data]))
    async with stores_nothing(root, http):
        body = GossipBody(root=root.directory.digest.root, push=push)
        answer = await call(http, "POST", root.urls[0] + "/v1/gossip",
                            data=gossip_frame(root, city, body=body))
        assert answer.status == 200, answer.body[:300]
        reply = frames.parse_frame(answer.body).verify(root.keys.public.verify_key).body
        assert len(reply.refused) == len(push), reply.refused
        codes = sorted(code for _, _, code in reply.refused)
        assert set(codes) <= KNOWN_CODES
        assert "bad_signature" in codes and "unknown_origin" in codes
        assert codes.count("malformed") + codes.count("unknown_type") >= 2


async def test_gossip_oversized_bodies_are_too_large(root, city, http):
    url = root.urls[0] + "/v1/gossip"
    host, port = root.config.host, root.port
    async with stores_nothing(root, http):
        # Declared over the limit: refused from the headers, before any body is read.
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write((f"POST /v1/gossip HTTP/1.1\r\nHost: {host}:{port}\r\n"
                          f"Content-Type: application/octet-stream\r\n"
                          f"Content-Length: {MAX_GOSSIP_BYTES + 1}\r\n\r\n").encode()
                         + b"\x92" * 1024)
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            assert status_line.split()[1] == "413", status_line
            headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
            body = await asyncio.wait_for(reader.readexactly(int(headers["Content-Length"])), 10)
            document = json.loads(body)
            assert document["error"] == "too_large" and document["detail"]
        finally:
            writer.close()
        # Sent in full, one byte over: still a clean refusal.
        frame = gossip_frame(root, city)
        oversized = frame + b"\x00" * (MAX_GOSSIP_BYTES + 1 - len(frame))
        assert_refused(await call(http, "POST", url, data=oversized, headers=MSGPACK_ACCEPT),
                       "too_large", as_msgpack=True)

        async def chunked(size: int) -> AsyncIterator[bytes]:
            block = b"\x00" * (256 * 1024)
            sent = 0
            while sent < size:
                piece = block[:min(len(block), size - sent)]
                sent += len(piece)
                yield piece

        # No Content-Length (chunked): one byte over the limit, and far over it.
        assert_refused(await call(http, "POST", url, data=chunked(MAX_GOSSIP_BYTES + 1)),
                       "too_large")
        assert_refused(await call(http, "POST", url, data=chunked(MAX_GOSSIP_BYTES * 2)),
                       "too_large")


async def test_gossip_every_truncation_of_a_valid_frame_is_malformed(root, city, http):
    frame = gossip_frame(root, city)
    async with stores_nothing(root, http):
        for length in range(len(frame)):
            answer = await call(http, "POST", root.urls[0] + "/v1/gossip", data=frame[:length])
            assert_refused(answer, "malformed")
        answer = await call(http, "POST", root.urls[0] + "/v1/gossip", data=frame + b"\x00")
        assert_refused(answer, "malformed")


async def test_gossip_wrong_methods_answer_405(root, city, http):
    async with stores_nothing(root, http):
        for method in ("GET", "PUT", "DELETE"):
            answer = await call(http, method, root.urls[0] + "/v1/gossip",
                                data=gossip_frame(root, city) if method != "GET" else None)
            assert answer.status == 405, (method, answer.status)
