"""Turning refusals into HTTP answers: a 4xx with ``{"error": code, "detail": text}``.

Node-to-node callers send msgpack and get msgpack back; browsers and scripts get
JSON. The status and code come from the ``ProtocolError`` class (SPEC §10), so one
refusal reads the same everywhere.
"""

from __future__ import annotations

import json
import logging
from typing import Callable

from aiohttp import web

from protocol.errors import ProtocolError, TooLarge, Unauthorized
from protocol.wire import pack

log = logging.getLogger("govnode.http")
MSGPACK = "application/msgpack"
REJECTIONS: web.AppKey[Callable[[str], None]] = web.AppKey("rejections", Callable[[str], None])


def wants_msgpack(request: web.Request) -> bool:
    return MSGPACK in request.headers.get("Accept", "") or \
        request.content_type == MSGPACK


def encode_answer(request: web.Request, document: dict, status: int = 200) -> web.Response:
    if wants_msgpack(request):
        return web.Response(body=pack(document), status=status, content_type=MSGPACK)
    return web.Response(text=json.dumps(document, ensure_ascii=False, default=_hex),
                        status=status, content_type="application/json")


def _hex(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@web.middleware
async def refusals_middleware(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ProtocolError as refusal:
        answer = _refuse(request, refusal.code, refusal.detail, refusal.http_status)
        if isinstance(refusal, Unauthorized):
            answer.headers["WWW-Authenticate"] = 'Bearer realm="govnode"'  # RFC 6750
        return answer
    except web.HTTPRequestEntityTooLarge as exc:
        return _refuse(request, TooLarge.code, exc.text or "request body over the limit",
                       TooLarge.http_status)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed) as exc:
        code = "not_found" if exc.status == 404 else "method_not_allowed"
        return _refuse(request, code, f"{request.method} {request.path}: {exc.reason}", exc.status)


def _refuse(request: web.Request, code: str, detail: str, status: int) -> web.Response:
    log.info("refused %s %s: %s %s", request.method, request.path, code, detail)
    counter = request.app.get(REJECTIONS)
    if counter is not None:
        counter(code)
    return encode_answer(request, {"error": code, "detail": detail}, status)


async def read_limited(request: web.Request, max_bytes: int) -> bytes:
    """The request body, refusing (before reading) one that declares more than allowed,
    and (while reading) one without a declared length that turns out longer."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise TooLarge(f"request body of {request.content_length} bytes; limit {max_bytes}")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > max_bytes:
            raise TooLarge(f"request body over the limit of {max_bytes} bytes")
    return bytes(body)
