"""Bad input to every endpoint answers 4xx with a stable error code and stores nothing.

One small federation (root ``gd`` and city ``gd.chaozhou``, built through the
``govnode`` commands) serves each module. Every hostile request is sent to the
root with real HTTP; around each one the root's SQLite tables are read through a
separate read-only connection and must be byte-for-byte the same afterwards
(``peer_contacts`` excepted: it records gossip between the two nodes, which goes on
in the background). The root must still answer ``/v1/health``. This file holds the
federation, the observers and the input builders the other endpoint-input tests
import, and covers the GET-only endpoints, unknown paths and seeded hostile bodies;
``/v1/enroll`` is in tests/test_endpoint_input_enroll.py, ``/v1/gossip`` in
tests/test_endpoint_input_gossip.py.
"""

from __future__ import annotations

import json
import random
import sqlite3
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from federation import Federation, wait_until
from node.app import Node
from node.clock import now_ms
from protocol import certs, frames
from protocol.certs import Level
from protocol.errors import all_error_classes
from protocol.keys import NodeKeys
from protocol.messages import GossipBody
from protocol.signing import Domain, encode_envelope
from protocol.wire import pack, unpack

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROOT, CITY = "gd", "gd.chaozhou"
STORED_TABLES = ("directory_records", "directory_evidence", "enrollment_requests", "local_state")
ERROR_CLASSES = {cls.code: cls for cls in all_error_classes()}
KNOWN_CODES = set(ERROR_CLASSES)
MSGPACK_ACCEPT = {"Accept": "application/msgpack"}


# --- the federation ----------------------------------------------------------------


async def root_and_city(path: Path) -> Federation:
    """gd with 潮州 enrolled under it, converged, its start-up records in place."""
    federation = Federation(path)
    await federation.create_root(ROOT)
    await federation.enroll(CITY, "潮州市人民政府办公室")
    await federation.wait_converged()
    # The start-up records are in place (endpoints everywhere, the city's status beacon
    # at the root): from here on in-sync gossip rounds write nothing but peer contacts.
    await wait_until(lambda: federation.nodes[ROOT].directory.status(CITY) is not None,
                     what="the city's status beacon at the root")
    return federation


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def federation(tmp_path_factory) -> AsyncIterator[Federation]:
    federation = await root_and_city(tmp_path_factory.mktemp("endpoint-input"))
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
