"""Bad input to every endpoint answers 4xx with a stable error code and stores nothing.

One small federation (root ``gd`` and city ``gd.chaozhou``, built through the
``govnode`` commands) serves the whole module. Every hostile request is sent to the
root with real HTTP; around each one the root's SQLite tables are read through a
separate read-only connection and must be byte-for-byte the same afterwards
(``peer_contacts`` excepted: it records gossip between the two nodes, which goes on
in the background). The root must still answer ``/v1/health``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
import yarl

from federation import Federation, wait_until
from node.app import Node
from node.clock import now_ms
from node.http_api import MAX_ENROLLMENT_BYTES, MAX_GOSSIP_BYTES, REPLAY_WINDOW_MS
from protocol import certs, frames
from protocol.certs import Level
from protocol.directory import EndpointAnnouncement, StatusBeacon, sign_record
from protocol.errors import all_error_classes
from protocol.keys import NodeKeys
from protocol.messages import GossipBody, GossipReplyBody, PingBody
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack, unpack

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT, CITY = "gd", "gd.chaozhou"
STORED_TABLES = ("directory_records", "directory_evidence", "enrollment_requests", "local_state")
ERROR_CLASSES = {cls.code: cls for cls in all_error_classes()}
KNOWN_CODES = set(ERROR_CLASSES)
MSGPACK_ACCEPT = {"Accept": "application/msgpack"}


# --- the federation ----------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = Federation(tmp_path_factory.mktemp("endpoint-input"))
    await federation.create_root(ROOT)
    await federation.enroll(CITY, "潮州市人民政府办公室")
    await federation.wait_converged()
    # The start-up records are in place (endpoints everywhere, the city's status beacon
    # at the root): from here on in-sync gossip rounds write nothing but peer contacts.
    await wait_until(lambda: federation.nodes[ROOT].directory.status(CITY) is not None,
                     what="the city's status beacon at the root")
    yield federation
    await federation.stop_all()



@pytest.fixture
def root(federation: Federation) -> Node:
    return federation.nodes[ROOT]


@pytest.fixture
def city(federation: Federation) -> Node:
    return federation.nodes[CITY]


# --- observing the root ----------------------------------------------------------------


def snapshot(node: Node) -> dict[str, list[tuple]]:
    """Every row of the tables that hold what a node stores, read-only, from outside."""
    uri = f"file:{node.data.database_file}?mode=ro"
    connection = sqlite3.connect(uri, uri=True)
    try:
        return {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
                for table in STORED_TABLES}
    finally:
        connection.close()


@asynccontextmanager
async def stores_nothing(node: Node, http: aiohttp.ClientSession) -> AsyncIterator[None]:
    before = snapshot(node)
    root_before = node.directory.digest.root
    yield
    async with http.get(node.urls[0] + "/v1/health") as response:
        assert response.status == 200, "the node stopped answering after bad input"
        assert (await response.json())["status"] == "ok"
    assert snapshot(node) == before, "bad input changed what the node stores"
    assert node.directory.digest.root == root_before


@dataclass
class Answer:
    status: int
    body: bytes
    content_type: str

    def document(self) -> Any:
        if self.content_type == "application/msgpack":
            return unpack(self.body)
        return json.loads(self.body)


async def call(http: aiohttp.ClientSession, method: str, url: str, data: Any = None,
               headers: dict[str, str] | None = None) -> Answer:
    async with http.request(method, url, data=data, headers=headers) as response:
        return Answer(response.status, await response.read(), response.content_type)


def assert_refused(answer: Answer, code: str, *, as_msgpack: bool = False) -> dict:
    """A 4xx with exactly ``{"error": code, "detail": text}`` in the expected format."""
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    assert answer.content_type == ("application/msgpack" if as_msgpack else "application/json")
    document = answer.document()
    assert isinstance(document, dict) and set(document) == {"error", "detail"}, document
    assert document["error"] == code, document
    assert isinstance(document["detail"], str) and document["detail"].strip()
    assert answer.status == ERROR_CLASSES[code].http_status, (answer.status, document)
    return document


def assert_some_refusal(answer: Answer) -> str:
    """Any stable refusal (for fuzzing): 4xx, never 5xx, with a known code."""
    assert 400 <= answer.status < 500, (answer.status, answer.body[:300])
    document = answer.document()
    assert set(document) == {"error", "detail"}, document
    assert document["error"] in KNOWN_CODES, document
    assert answer.status == ERROR_CLASSES[document["error"]].http_status
    assert isinstance(document["detail"], str) and document["detail"]
    return document["error"]


# --- building valid and almost-valid input -------------------------------------------------


def enrollment_request(subject: str = "gd.shantou", keys: NodeKeys | None = None) -> bytes:
    return certs.make_enrollment_request(keys or NodeKeys.generate(), subject=subject,
                                         name="汕头市人民政府办公室", level=Level.CITY,
                                         requested_at=now_ms()).encode()


def signed_enrollment_payload(payload: dict, keys: NodeKeys | None = None) -> bytes:
    keys = keys or NodeKeys.generate()
    packed = pack(payload)
    return encode_envelope(packed, keys.sign(Domain.ENROLLMENT, packed))


def enrollment_payload(keys: NodeKeys, **changes: Any) -> dict:
    payload = {"v": 1, "sub": "gd.shantou", "name": "汕头", "lvl": "city", "div": None,
               "sk": keys.public.verify_key, "bk": keys.public.box_key, "at": now_ms()}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def gossip_frame(root: Node, city: Node, *, destination: str = ROOT, origin: str = CITY,
                 keys: NodeKeys | None = None, created_at: int | None = None,
                 body: Any = None) -> bytes:
    frame = frames.make_frame(body or GossipBody(root=root.directory.digest.root),
                              origin=origin, destination=destination,
                              created_at=now_ms() if created_at is None else created_at,
                              message_id=frames.new_message_id())
    return frames.encode_frame(frame, keys or city.keys)


def frame_payload(root: Node, **changes: Any) -> dict:
    payload = {"v": 1, "t": "gossip", "id": frames.new_message_id(), "o": CITY, "d": ROOT,
               "at": now_ms(), "b": GossipBody(root=root.directory.digest.root).to_wire()}
    payload.update(changes)
    return {k: v for k, v in payload.items() if v is not ...}


def signed_frame_payload(payload: Any, keys: NodeKeys) -> bytes:
    packed = pack(payload)
    return encode_envelope(packed, keys.sign(Domain.FRAME, packed))


def garbage(rng: random.Random, size: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(size))


# --- POST /v1/enroll -------------------------------------------------------------------


async def test_enroll_garbage_empty_and_wrong_types_are_malformed(root, http):
    rng = random.Random(1)
    keys = NodeKeys.generate()
    bodies = {
        "garbage": garbage(rng, 300),
        "empty": b"",
        "text": "请批准".encode(),
        "int instead of an envelope": pack(7),
        "map instead of an envelope": pack({"payload": b"x", "signature": b"y" * 64}),
        "ints instead of bin": pack([1, 2]),
        "short signature": pack([pack({"v": 1}), b"sig"]),
        "payload not msgpack": pack([b"\xc1\xc1", b"s" * 64]),
        "payload an int": signed_enrollment_payload(5, keys),
        "unknown extra key": signed_enrollment_payload(enrollment_payload(keys, extra=1), keys),
        "missing key": signed_enrollment_payload(enrollment_payload(keys, at=...), keys),
        "int instead of bin key": signed_enrollment_payload(enrollment_payload(keys, sk=5), keys),
        "short key": signed_enrollment_payload(enrollment_payload(keys, sk=b"k" * 31), keys),
        "str instead of int": signed_enrollment_payload(enrollment_payload(keys, at="now"), keys),
        "bool instead of int": signed_enrollment_payload(enrollment_payload(keys, at=True), keys),
        "unknown level": signed_enrollment_payload(enrollment_payload(keys, lvl="empire"), keys),
        "empty name": signed_enrollment_payload(enrollment_payload(keys, name=" "), keys),
        "version 2": signed_enrollment_payload(enrollment_payload(keys, v=2), keys),
        "a certificate": certs.self_signed_root(keys, subject="gd", name="假", not_before=0,
                                                not_after=now_ms() + 10**9).encode(),
    }
    for what, body in bodies.items():
        async with stores_nothing(root, http):
            answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=body)
            try:
                assert_refused(answer, "malformed")
            except AssertionError as error:
                raise AssertionError(f"{what}: {error}") from None


async def test_enroll_identity_refusals(root, city, http):
    keys = NodeKeys.generate()
    cases = [
        # signed by a different key than the one it asks to certify: no proof of possession
        ("bad_signature", signed_enrollment_payload(enrollment_payload(keys), NodeKeys.generate())),
        # a grandchild must enroll with its own parent
        ("name_constraint", enrollment_request("gd.chaozhou.raoping")),
        # another province's city
        ("name_constraint", enrollment_request("hn.changsha")),
        # a root id cannot enroll at all
        ("name_constraint", signed_enrollment_payload(enrollment_payload(keys, sub="gd"), keys)),
        ("bad_node_id", signed_enrollment_payload(enrollment_payload(keys, sub="GD.ShanTou"), keys)),
        ("bad_node_id", signed_enrollment_payload(enrollment_payload(keys, sub="gd..x"), keys)),
        # a gossip frame is not an enrollment request
        ("malformed", gossip_frame(root, city)),
    ]
    for code, body in cases:
        async with stores_nothing(root, http):
            assert_refused(await call(http, "POST", root.urls[0] + "/v1/enroll", data=body), code)


async def test_enroll_every_truncation_of_a_valid_request_is_malformed(root, http):
    valid = enrollment_request()
    async with stores_nothing(root, http):
        for length in range(len(valid)):
            answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=valid[:length])
            assert_refused(answer, "malformed")
        # and with one byte too many
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=valid + b"\x00")
        assert_refused(answer, "malformed")


async def test_enroll_oversized_body_is_too_large(root, http):
    valid = enrollment_request()
    padded = valid + b"\x00" * (MAX_ENROLLMENT_BYTES + 1 - len(valid))
    assert len(padded) == MAX_ENROLLMENT_BYTES + 1

    async def chunked(data: bytes) -> AsyncIterator[bytes]:
        for start in range(0, len(data), 4096):
            yield data[start:start + 4096]

    async with stores_nothing(root, http):
        assert_refused(await call(http, "POST", root.urls[0] + "/v1/enroll", data=padded),
                       "too_large")
        assert_refused(await call(http, "POST", root.urls[0] + "/v1/enroll",
                                  data=b"\x91" * (4 * MAX_ENROLLMENT_BYTES)), "too_large")
        # No Content-Length (chunked): the limit must hold all the same.
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=chunked(padded))
        assert_refused(answer, "too_large")


async def test_enroll_refusals_answer_msgpack_to_msgpack_callers(root, http):
    async with stores_nothing(root, http):
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=b"\xc1garbage",
                            headers=MSGPACK_ACCEPT)
        assert_refused(answer, "malformed", as_msgpack=True)
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll", data=b"",
                            headers={"Content-Type": "application/msgpack"})
        assert_refused(answer, "malformed", as_msgpack=True)
        answer = await call(http, "POST", root.urls[0] + "/v1/enroll",
                            data=b"x" * (MAX_ENROLLMENT_BYTES + 1), headers=MSGPACK_ACCEPT)
        assert_refused(answer, "too_large", as_msgpack=True)


# --- GET /v1/enroll/{subject}/{fingerprint} -------------------------------------------------


async def test_enrollment_state_bad_path_parameters(root, city, http):
    good_fpr = city.keys.fingerprint
    cases = [
        ("GD.CHAOZHOU", good_fpr, "bad_node_id"),
        ("gd..chaozhou", good_fpr, "bad_node_id"),
        ("-gd", good_fpr, "bad_node_id"),
        ("gd." + "x" * 40, good_fpr, "bad_node_id"),
        (".".join(["a"] * 9), good_fpr, "bad_node_id"),
        ("gd.%E6%BD%AE%E5%B7%9E", good_fpr, "bad_node_id"),  # 潮州, percent-encoded
        ("gd.chao%00zhou", good_fpr, "bad_node_id"),
        (CITY, "abc", "bad_key_file"),
        (CITY, good_fpr[:-1], "bad_key_file"),
        (CITY, good_fpr + "0", "bad_key_file"),
        (CITY, "z" * 64, "bad_key_file"),
        (CITY, "%E6%BD%AE" * 10, "bad_key_file"),
    ]
    for subject, fingerprint, code in cases:
        async with stores_nothing(root, http):
            url = f"{root.urls[0]}/v1/enroll/{subject}/{fingerprint}"
            answer = await call(http, "GET", yarl.URL(url, encoded=True))
            try:
                assert_refused(answer, code)
            except AssertionError as error:
                raise AssertionError(f"{subject}/{fingerprint}: {error}") from None
    async with stores_nothing(root, http):
        answer = await call(http, "GET", f"{root.urls[0]}/v1/enroll/GD/{good_fpr}",
                            headers=MSGPACK_ACCEPT)
        assert_refused(answer, "bad_node_id", as_msgpack=True)


async def test_enrollment_state_of_an_unknown_request_is_unknown_and_stores_nothing(root, http):
    async with stores_nothing(root, http):
        answer = await call(http, "GET", f"{root.urls[0]}/v1/enroll/gd.nowhere/{'ab' * 32}")
        assert answer.status == 200
        document = unpack(answer.body)
        assert document["status"] == "unknown" and document["subject"] == "gd.nowhere"
        assert document["chain"] == () and document["records"] == ()
        # a fingerprint as printed (grouped, prefixed) is accepted the same way
        grouped = "sha256:" + ":".join(["abcd"] * 16)
        answer = await call(http, "GET", f"{root.urls[0]}/v1/enroll/gd.nowhere/{grouped}")
        assert answer.status == 200 and unpack(answer.body)["status"] == "unknown"


async def test_enrollment_state_with_a_body_or_wrong_method(root, city, http):
    url = f"{root.urls[0]}/v1/enroll/{CITY}/{city.keys.fingerprint}"
    async with stores_nothing(root, http):
        answer = await call(http, "GET", url, data=b"\xc1" * 100)  # a body is ignored
        assert answer.status == 200 and unpack(answer.body)["status"] == "approved"
        for method in ("POST", "PUT", "DELETE"):
            answer = await call(http, method, url, data=enrollment_request())
            assert answer.status == 405, (method, answer.status)


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


# --- GET-only endpoints ---------------------------------------------------------------------


async def test_health_and_metrics_refuse_other_methods(root, city, http):
    for path in ("/v1/health", "/metrics"):
        async with stores_nothing(root, http):
            for method, body in (("POST", gossip_frame(root, city)), ("POST", b""),
                                 ("PUT", enrollment_request()), ("DELETE", None)):
                answer = await call(http, method, root.urls[0] + path, data=body)
                assert answer.status == 405, (method, path, answer.status)
            answer = await call(http, "GET", root.urls[0] + path)
            assert answer.status == 200


async def test_unknown_paths_answer_404_and_store_nothing(root, http):
    async with stores_nothing(root, http):
        for path in ("/v1/enroll/gd.chaozhou", "/v1/gossip/extra", "/v2/gossip", "/v1/enroll/a/b/c"):
            answer = await call(http, "POST", root.urls[0] + path, data=enrollment_request())
            assert answer.status == 404, (path, answer.status)


# --- seeded hostile bodies -------------------------------------------------------------------


def hostile_bodies(rng: random.Random, valid: bytes, count: int) -> list[bytes]:
    """Random bytes, valid input with flipped bytes, truncations, and both combined."""
    bodies = []
    for _ in range(count):
        choice = rng.randrange(5)
        if choice == 0:
            bodies.append(garbage(rng, rng.randrange(0, 600)))
        elif choice == 1:
            mutated = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                mutated[rng.randrange(len(mutated))] ^= rng.randrange(1, 256)
            bodies.append(bytes(mutated))
        elif choice == 2:
            bodies.append(valid[:rng.randrange(len(valid))])
        elif choice == 3:
            mutated = bytearray(valid[:rng.randrange(1, len(valid))])
            mutated[rng.randrange(len(mutated))] ^= rng.randrange(1, 256)
            bodies.append(bytes(mutated))
        else:  # valid msgpack of random shapes
            bodies.append(pack(random_value(rng, depth=0)))
    return bodies


def random_value(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.randrange(-2**40, 2**40)
    if kind == 1:
        return garbage(rng, rng.choice((0, 16, 32, 64, rng.randrange(100))))
    if kind == 2:
        return rng.choice(["", "gd", "gd.chaozhou", "gossip", "ping", "v", "b", "说明"])
    if kind == 3:
        return rng.choice([None, True, False])
    if kind == 4:
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["v", "t", "id", "o", "d", "at", "b", "sub", "sk", "bk", "name", "lvl", "div", "x"]
    return {rng.choice(keys): random_value(rng, depth + 1) for _ in range(rng.randrange(8))}


async def test_seeded_hostile_bodies_never_get_a_5xx_or_store_anything(root, city, http):
    rng = random.Random(20240611)
    seen: dict[str, set[str]] = {"gossip": set(), "enroll": set()}
    async with stores_nothing(root, http):
        for path, valid in (("gossip", gossip_frame(root, city)), ("enroll", enrollment_request())):
            for body in hostile_bodies(rng, valid, 200):
                if body == valid:  # flipping the same byte twice restores it: not hostile
                    continue
                headers = MSGPACK_ACCEPT if rng.random() < 0.5 else None
                answer = await call(http, "POST", f"{root.urls[0]}/v1/{path}", data=body,
                                    headers=headers)
                try:
                    seen[path].add(assert_some_refusal(answer))
                except AssertionError as error:
                    raise AssertionError(f"/v1/{path} {body.hex()}: {error}") from None
    # The loop really exercised more than the parser.
    assert {"malformed", "bad_signature"} <= seen["gossip"], seen
    assert {"malformed", "bad_signature"} <= seen["enroll"], seen
