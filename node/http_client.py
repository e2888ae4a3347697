"""One msgpack POST to a peer, as delivery and gossip both make them."""

from __future__ import annotations

import asyncio

import aiohttp

MSGPACK_HEADERS = {"Content-Type": "application/msgpack", "Accept": "application/msgpack"}


class Unreachable(Exception):
    """The peer did not answer (refused, reset, timed out, a simulated cut link)."""


async def post_msgpack(session: aiohttp.ClientSession, url: str, body: bytes, *,
                       timeout_ms: int) -> tuple[int, bytes]:
    """(HTTP status, answer bytes); ``Unreachable`` when there is no answer."""
    try:
        async with session.post(url, data=body, headers=MSGPACK_HEADERS,
                                timeout=aiohttp.ClientTimeout(total=timeout_ms / 1000)) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as error:
        raise Unreachable(f"{url}: {type(error).__name__} {error}") from None
