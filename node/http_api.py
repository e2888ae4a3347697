"""Node-to-node HTTP endpoints, health and metrics.

| route | body | answer |
| --- | --- | --- |
| ``POST /v1/enroll`` | enrollment request envelope | enrollment answer (msgpack) |
| ``GET /v1/enroll/{id}/{fingerprint}`` | | enrollment answer (msgpack) |
| ``POST /v1/gossip`` | signed ``gossip`` frame | signed ``gossip_reply`` frame |
| ``POST /v1/transfer`` | ``{from, frames: [frame]}`` | ``{accepted: [id], rejected, deferred: [[id, code, detail]]}`` |
| ``GET /v1/health`` | | JSON, no secrets |
| ``GET /metrics`` | | Prometheus text format |

Every refusal is a 4xx with a stable code (``http_errors``); nothing is stored before
the input has been fully verified.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from protocol import frames, ids
from protocol.errors import Malformed, NotAddressedHere, NotReady, Replay, UnknownType
from protocol.wire import Fields, Limits, pack, unpack
from protocol.keys import normalise_fingerprint
from protocol.messages import GossipBody

from node import enrollment
from node.api import add_api_routes
from node.clock import new_id, now_ms
from node.http_errors import MSGPACK, read_limited
from node.metrics import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from node.app import Node

MAX_ENROLLMENT_BYTES = 16 * 1024
MAX_GOSSIP_BYTES = 16 * 1024 * 1024
MAX_TRANSFER_BYTES = 20 * 1024 * 1024
TRANSFER_LIMITS = Limits(max_bytes=MAX_TRANSFER_BYTES, max_str_len=255,
                         max_bin_len=16 * 1024 * 1024, max_array_len=4096, max_map_len=4,
                         max_depth=2, walk_first=True,
                         max_items=4096 + 16)  # the frames, and the map around them
REPLAY_WINDOW_MS = 10 * 60 * 1000
MAX_CLOCK_SKEW_MS = 2 * 60 * 1000


def add_routes(app: web.Application, node: "Node") -> None:
    routes = NodeRoutes(node)
    app.router.add_post("/v1/enroll", routes.enroll)
    app.router.add_get("/v1/enroll/{subject}/{fingerprint}", routes.enrollment_state)
    app.router.add_post("/v1/gossip", routes.gossip)
    app.router.add_post("/v1/transfer", routes.transfer)
    app.router.add_get("/v1/health", routes.health)
    app.router.add_get("/metrics", routes.metrics)
    add_api_routes(app, node)  # /api/...: the JSON API for documents (node/api.py)


def _msgpack(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=MSGPACK)


class NodeRoutes:
    def __init__(self, node: "Node") -> None:
        self.node = node

    async def enroll(self, request: web.Request) -> web.Response:
        node = self.node
        self._require_enrolled()
        data = await read_limited(request, MAX_ENROLLMENT_BYTES)
        answer = await enrollment.receive_request(
            data, own_id=node.id, store=node.enrollments, directory=node.directory,
            now_ms=now_ms())
        return _msgpack(answer.encode(), 202 if answer.status == "pending" else 200)

    async def enrollment_state(self, request: web.Request) -> web.Response:
        subject = ids.validate_node_id(request.match_info["subject"])
        fingerprint = normalise_fingerprint(request.match_info["fingerprint"])
        stored = await self.node.enrollments.get(subject, fingerprint)
        if stored is not None and stored.state == "approved":
            await self.node.directory.refresh()  # the approval may come from the CLI just now
        return _msgpack(enrollment.answer_for(stored, self.node.directory, subject).encode())

    async def gossip(self, request: web.Request) -> web.Response:
        node = self.node
        self._require_enrolled()
        data = await read_limited(request, MAX_GOSSIP_BYTES)
        frame = self.verify_inbound(data)
        if not isinstance(frame.body, GossipBody):
            raise UnknownType(f"/v1/gossip takes gossip frames, not {frame.type}")
        reply = await node.gossip.respond(frame.origin, frame.body)
        answer = frames.make_frame(reply, origin=node.id, destination=frame.origin,
                                   created_at=now_ms(), message_id=new_id())
        node.metrics.gossip_bytes.labels("received").inc(len(data))
        encoded = frames.encode_frame(answer, node.keys)
        node.metrics.gossip_bytes.labels("sent").inc(len(encoded))
        return _msgpack(encoded)

    async def transfer(self, request: web.Request) -> web.Response:
        node = self.node
        self._require_enrolled()
        data = await read_limited(request, MAX_TRANSFER_BYTES)
        fields = Fields(unpack(data, TRANSFER_LIMITS, what="transfer"), "transfer")
        sender, batch = fields.node_id("from"), fields.array("frames")
        fields.done()
        if not all(type(item) is bytes for item in batch):
            raise Malformed("transfer: frames must be binary")
        result = await node.inbound.receive(list(batch))
        if node.directory.is_valid_member(sender, now_ms()):
            node.contacts.succeeded(sender, now_ms())  # a hint of life, not authentication
        return _msgpack(pack({"accepted": result.accepted,
                              "rejected": [list(item) for item in result.rejected],
                              "deferred": [list(item) for item in result.deferred]}))

    def verify_inbound(self, data: bytes) -> frames.Frame:
        """Parse, check addressing and membership, verify, check age and replay."""
        node, now = self.node, now_ms()
        signed = frames.parse_frame(data)
        if signed.frame.destination != node.id:
            raise NotAddressedHere(f"frame for {signed.frame.destination} sent to {node.id}")
        certificate = node.directory.valid_certificate(signed.origin, now)
        frame = signed.verify(certificate.keys.verify_key)
        frames.check_age(frame, now_ms=now, max_age_ms=REPLAY_WINDOW_MS,
                         max_future_ms=MAX_CLOCK_SKEW_MS)
        if not node.replay_guard.first_time(frame.message_id, now):
            raise Replay(f"message {frame.message_id.hex()} was already received")
        return frame

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.health(), dumps=_json_dumps)

    async def metrics(self, request: web.Request) -> web.Response:
        self.node.update_gauges()
        return web.Response(body=self.node.metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    def _require_enrolled(self) -> None:
        if not self.node.enrolled:
            raise NotReady(f"{self.node.id} is not enrolled yet")


def _json_dumps(document: object) -> str:
    return json.dumps(document, ensure_ascii=False)


class ReplayGuard:
    """Message ids seen inside the replay window; older frames are refused by age.

    Ids are remembered in arrival order, so forgetting the expired ones is a walk from
    the oldest end that stops at the first one still inside the window.
    """

    def __init__(self, window_ms: int = REPLAY_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._seen: dict[bytes, int] = {}  # insertion order is arrival order

    def first_time(self, message_id: bytes, now: int) -> bool:
        if message_id in self._seen:
            return False
        self._seen[message_id] = now
        self._forget_before(now - self.window_ms)
        return True

    def _forget_before(self, cutoff: int) -> None:
        while self._seen:
            oldest = next(iter(self._seen))
            if self._seen[oldest] >= cutoff:
                return
            del self._seen[oldest]