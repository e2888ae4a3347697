"""The node's JSON API for documents: what a unit's own systems (OA, scripts) call.

| route | body | answer |
| --- | --- | --- |
| ``POST /api/documents`` | document JSON (below) | 201 ``{id, deliveries: [{recipient, message_id}]}``; 200 for a retried ``id`` |
| ``GET /api/documents?box=inbox|outbox&limit=N`` | | ``{documents: [summary]}`` |
| ``GET /api/documents/{id}`` | | the document with its timeline (per recipient when sent) |
| ``POST /api/documents/{id}/actions`` | ``{action, by, detail|reason|to|text}`` | ``{id, action, state}`` |

Every route takes ``Authorization: Bearer TOKEN`` (``govnode token create``) and acts
with the token's role: a clerk's token cannot instruct (``not_permitted``, from the
workflow table). ``{id}`` is a document id in hex or an unambiguous prefix of at
least 4 digits.

The document JSON: ``to`` and ``cc`` (node ids), ``title``, ``doc_number``, ``kind``
(default 通知), ``urgency``, ``classification``, ``secrecy_period``, ``copy_number``,
``signer``, ``issuer`` (default: this node's name), ``body``, ``notes``,
``written_date``, ``printed_by``, ``printed_date``, ``deadline`` (ms or
``YYYY-MM-DD``), ``in_reply_to`` (document id), ``attachments``
(``[{name, media_type, data: base64}]``) and ``id``: 32 hex digits chosen by the
client. Sending the same ``id`` again answers 200 with the document already sent and
sends nothing, so a client that crashed before reading the answer can simply retry.

Refusals come from ``http_errors``: 401 ``unauthorized``, 400 ``malformed`` (not
JSON, wrong type, unknown field), 400 ``invalid_document`` (the document rules,
unknown recipients, attachments over the node's limit), 413 ``too_large`` (body over
``API_MAX_BODY_BYTES``), 404 ``not_found``, 403 ``not_permitted``, 409
``illegal_transition``. A refusal stores nothing: the document, its deliveries and
frames are written in one transaction after every check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from protocol.documents import Document, validate_document
from protocol.errors import InvalidDocument, Malformed, NotFound, Unauthorized
from protocol.workflow import Role

from node import actions, api_tokens, doc_views
from node.actions import DocumentNotFound
from node.api_input import (SendRequest, parse_action_request, parse_json, parse_limit,
                            parse_send_request)
from node.clock import new_document_id
from node.http_errors import encode_answer, read_limited
from node.sending import attach, send_document
from node.store.document_store import decode_metadata

if TYPE_CHECKING:
    from node.app import Node

log = logging.getLogger("govnode.api")
# Attachments travel base64 (4/3 of their size): the protocol's 12 MiB of attachments
# and a long body fit; anything larger is refused before it is read.
API_MAX_BODY_BYTES = 24 * 1024 * 1024
MAX_ACTION_BYTES = 64 * 1024
_ID_TEXT = re.compile("[0-9a-fA-F]{4,32}")


def add_api_routes(app: web.Application, node: "Node") -> None:
    api = DocumentApi(node)
    app.router.add_post("/api/documents", api.send)
    app.router.add_get("/api/documents", api.list_documents)
    app.router.add_get("/api/documents/{doc_id}", api.show)
    app.router.add_post("/api/documents/{doc_id}/actions", api.act)


class DocumentApi:
    def __init__(self, node: "Node") -> None:
        self.node = node
        self._client_ids = asyncio.Lock()  # one idempotent send at a time: no double send

    # --- routes ---------------------------------------------------------------------

    async def send(self, request: web.Request) -> web.Response:
        caller, _ = await self._caller(request)
        body = parse_json(await read_limited(request, API_MAX_BODY_BYTES))
        parsed = parse_send_request(body, default_issuer=self.node.config.name)
        if parsed.doc_id is None:
            return await self._send(request, caller, parsed)
        async with self._client_ids:
            existing = await self._already_sent(parsed)
            if existing is not None:
                log.info("API %s: retried document %s, already sent", caller, parsed.doc_id.hex())
                return encode_answer(request, existing, 200)
            return await self._send(request, caller, parsed)

    async def list_documents(self, request: web.Request) -> web.Response:
        await self._caller(request)
        box = request.query.get("box") or None
        if box not in (None, "all", "inbox", "outbox"):
            raise Malformed(f"query parameter 'box' must be inbox, outbox or all; got {box[:20]!r}")
        limit = parse_limit(request.query.get("limit"))
        documents = await doc_views.list_documents(self.node.context, box, limit)
        return encode_answer(request, {"documents": documents})

    async def show(self, request: web.Request) -> web.Response:
        await self._caller(request)
        doc_id = await self._resolve(request.match_info["doc_id"])
        view = await doc_views.show_document(self.node.context, doc_id)
        if view is None:  # gone between resolving and reading: nothing deletes, but be exact
            raise NotFound(f"no document with id {doc_id.hex()}")
        return encode_answer(request, view)

    async def act(self, request: web.Request) -> web.Response:
        caller, role = await self._caller(request)
        doc_id = await self._resolve(request.match_info["doc_id"])
        wanted = parse_action_request(parse_json(await read_limited(request, MAX_ACTION_BYTES)))
        try:
            state = await actions.act(self.node.context, doc_id, wanted.action,
                                      actor=wanted.actor, role=role, detail=wanted.detail)
        except DocumentNotFound as error:  # a document this node sent, not received
            raise NotFound(str(error)) from None
        log.info("API %s (%s): %s %s by %s -> %s", caller, role.value, wanted.action.value,
                 doc_id.hex(), wanted.actor, state.value)
        return encode_answer(request, {"id": doc_id.hex(), "action": wanted.action.value,
                                       "state": state.value})

    # --- pieces -----------------------------------------------------------------------

    async def _caller(self, request: web.Request) -> tuple[str, Role]:
        """The token's (name, role); checked before the body is read."""
        header = request.headers.get("Authorization", "")
        if not header:
            raise Unauthorized("missing 'Authorization: Bearer TOKEN' "
                               "(the node's operator creates tokens: govnode token create)")
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("expected 'Authorization: Bearer TOKEN'")
        caller = await api_tokens.verify(self.node.db, token.strip())
        if caller is None:
            raise Unauthorized("unknown or revoked API token")
        return caller

    async def _resolve(self, text: str) -> bytes:
        if not _ID_TEXT.fullmatch(text):
            raise Malformed(f"not a document id (4 to 32 hex digits): {text[:40]!r}")
        try:
            return await actions.resolve_document_id(self.node.context, text)
        except DocumentNotFound as error:
            raise NotFound(str(error)) from None

    async def _send(self, request: web.Request, caller: str, parsed: SendRequest) -> web.Response:
        draft = await self._draft(parsed)
        sent = await send_document(
            self.node.context, draft, parsed.files,
            max_attachment_bytes=self.node.config.delivery["max_attachment_bytes"])
        doc_id = sent.document.doc_id.hex()
        log.info("API %s: sent document %s to %s", caller, doc_id,
                 ", ".join(recipient for recipient, _ in sent.deliveries))
        return encode_answer(request, _sent_answer(doc_id, sent.deliveries), 201)

    async def _draft(self, parsed: SendRequest) -> Document:
        in_reply_to = None
        if parsed.in_reply_to is not None:
            try:
                in_reply_to = await actions.resolve_document_id(self.node.context,
                                                                parsed.in_reply_to)
            except DocumentNotFound as error:
                raise InvalidDocument(f"所复公文 in_reply_to: {error}") from None
        return Document(doc_id=parsed.doc_id or new_document_id(), issuer_id=self.node.id,
                        in_reply_to=in_reply_to, **parsed.fields)

    async def _already_sent(self, parsed: SendRequest) -> dict[str, Any] | None:
        """The answer for a document with this client id already sent (same content), or None."""
        context = self.node.context
        row = await context.documents.document(parsed.doc_id)
        if row is None:
            return None
        if row.direction != "sent":
            raise InvalidDocument(f"公文标识 id {parsed.doc_id.hex()} is a document this node "
                                  f"received; choose a new id")
        stored = decode_metadata(row.content)
        attachments, _ = attach(parsed.files)
        retried = validate_document(dataclasses.replace(
            await self._draft(parsed), attachments=attachments, created_at=stored.created_at))
        if retried != stored:
            raise InvalidDocument(f"公文标识 id {parsed.doc_id.hex()} was already used for a "
                                  f"different document; a retry must send the same document")
        deliveries = await context.documents.deliveries_of(parsed.doc_id)
        return _sent_answer(parsed.doc_id.hex(), [(d.recipient, d.message_id) for d in deliveries])


def _sent_answer(doc_id: str, deliveries: Any) -> dict[str, Any]:
    return {"id": doc_id, "deliveries": [{"recipient": recipient, "message_id": message_id.hex()}
                                         for recipient, message_id in deliveries]}
