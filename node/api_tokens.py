"""API tokens: the credentials scripts and other systems use for the JSON API.

The operator creates a token with ``govnode token create --name NAME --role ROLE``;
the token (``gn_`` + 43 URL-safe characters, 256 random bits) is shown once and only
its SHA-256 is stored, so a copy of the database grants nothing. A request presents
it as ``Authorization: Bearer gn_...``; it acts with the token's workflow role
(clerk, handler, leader, operator or admin — never ``system``). Names are unique, so
``govnode token revoke NAME`` removes exactly one token, effective on the next request.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from protocol.workflow import Role

from node.clock import now_ms
from node.store.connection import Database
from node.store.db import transaction
from node.store.token_store import TokenRow, TokenStore

TOKEN_PREFIX = "gn_"
MAX_NAME_CHARS = 100
MAX_TOKEN_CHARS = 200  # a real token is 46; longer input is not hashed at all
TOKEN_ROLES = tuple(role for role in Role if role is not Role.SYSTEM)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TokenError(Exception):
    """A token operation that cannot be done; the message says why."""


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def _valid_name(name: str) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned:
        raise TokenError("a token needs a name (--name)")
    if len(cleaned) > MAX_NAME_CHARS or _CONTROL.search(cleaned):
        raise TokenError(f"token name must be one line of at most {MAX_NAME_CHARS} characters")
    return cleaned


def parse_role(role: Role | str) -> Role:
    try:
        parsed = Role(role)
    except ValueError:
        parsed = None
    if parsed is None or parsed is Role.SYSTEM:
        raise TokenError(f"unknown role {role!r}; one of {', '.join(r.value for r in TOKEN_ROLES)}")
    return parsed


async def create_token(db: Database, name: str, role: Role | str) -> str:
    """A new token for ``name`` acting as ``role``; returned once, stored as its hash."""
    name, parsed = _valid_name(name), parse_role(role)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    store = TokenStore(db)
    async with transaction(db):
        if await store.named(name) is not None:
            raise TokenError(f"a token named {name!r} exists; revoke it first or choose another name")
        await store.add(_hash(token), name, parsed.value, now_ms())
    return token


async def verify(db: Database, token: str) -> tuple[str, Role] | None:
    """(name, role) of a current token, or None for anything else."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) \
            or len(token) > MAX_TOKEN_CHARS:
        return None
    row = await TokenStore(db).find(_hash(token))
    if row is None:
        return None
    try:
        return row.name, Role(row.role)
    except ValueError:  # a row written by hand with a role we do not know grants nothing
        return None


async def revoke_token(db: Database, name: str) -> None:
    """Remove the token called ``name``; refused if there is none."""
    name = _valid_name(name)
    async with transaction(db):
        if await TokenStore(db).delete(name) == 0:
            raise TokenError(f"no token named {name!r}")


async def list_tokens(db: Database) -> list[TokenRow]:
    return await TokenStore(db).all()
