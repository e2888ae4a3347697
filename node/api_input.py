"""Reading JSON API requests strictly: every refusal names the field.

Wrong JSON, a wrong type or an unknown field is ``malformed`` (400); what the value
means is judged later by the one rule book (``protocol.documents``: ``invalid_document``)
or the workflow table. Nothing here touches storage.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import mimetypes
import re
from dataclasses import dataclass
from typing import Any

from protocol.documents import DOC_ID_BYTES, FIELD_LABELS
from protocol.errors import InvalidDocument, Malformed
from protocol.messages import MAX_TEXT
from protocol.workflow import Action

from node.sending import AttachmentFile

USER_ACTIONS = {a.value: a for a in (Action.SIGN_FOR, Action.ASSIGN, Action.INSTRUCT,
                                     Action.COMPLETE, Action.RETURN)}
DETAIL_KEYS = ("detail", "reason", "to", "text", "note")
# Text fields of a document, with their defaults when the request leaves them out.
TEXT_FIELDS = {"title": "", "doc_number": "", "kind": "通知", "urgency": "", "classification": "",
               "secrecy_period": "", "copy_number": "", "signer": "", "body": "", "notes": "",
               "written_date": "", "printed_by": "", "printed_date": ""}
_HEX_ID = re.compile(f"[0-9a-fA-F]{{{2 * DOC_ID_BYTES}}}")
_DATE = re.compile("[0-9]{4}-[0-9]{2}-[0-9]{2}")


def json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and UnicodeDecodeError
        raise Malformed(f"request body is not valid JSON: {error}") from None


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


class JsonObject:
    """One JSON object read field by field; ``done`` refuses fields nobody read."""

    def __init__(self, value: object, what: str) -> None:
        if type(value) is not dict:
            raise Malformed(f"{what} must be a JSON object, not {json_type(value)}")
        self._value: dict[str, Any] = value
        self._what = what
        self._read: set[str] = set()

    def has(self, key: str) -> bool:
        return self._value.get(key) is not None

    def get(self, key: str) -> Any:
        self._read.add(key)
        return self._value.get(key)

    def _where(self, key: str) -> str:
        return f"{self._what}: field {key!r}"

    def str(self, key: str, default: str | None = None, *, max_len: int | None = None) -> str:
        value = self.get(key)
        if value is None and default is not None:
            return default
        if type(value) is not str:
            needed = "is required" if value is None else f"must be a string, not {json_type(value)}"
            raise Malformed(f"{self._where(key)} {needed}")
        if max_len is not None and len(value) > max_len:
            raise Malformed(f"{self._where(key)} is {len(value)} characters, over {max_len}")
        return value

    def str_list(self, key: str) -> tuple[str, ...]:
        value = self.get(key)
        if value is None:
            return ()
        if type(value) is not list or not all(type(item) is str for item in value):
            raise Malformed(f"{self._where(key)} must be an array of strings (node ids)")
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self._value) - self._read)
        if unknown:
            raise Malformed(f"{self._what}: unknown field(s) {', '.join(map(repr, unknown))}")


@dataclass(frozen=True)
class SendRequest:
    fields: dict[str, Any]  # Document keyword arguments, but doc_id and in_reply_to
    files: list[AttachmentFile]
    doc_id: bytes | None  # chosen by the client: retrying it is idempotent
    in_reply_to: str | None  # a document id (or prefix) to resolve on this node


def parse_send_request(value: object, *, default_issuer: str) -> SendRequest:
    body = JsonObject(value, "document")
    fields: dict[str, Any] = {key: body.str(key, default) for key, default in TEXT_FIELDS.items()}
    fields["issuer"] = body.str("issuer", default_issuer) or default_issuer
    fields["main_recipients"] = body.str_list("to")
    fields["cc_recipients"] = body.str_list("cc")
    fields["deadline"] = _deadline(body.get("deadline"))
    files = _attachments(body.get("attachments"))
    doc_id = _doc_id(body.get("id"))
    in_reply_to = body.str("in_reply_to", "") or None
    body.done()
    return SendRequest(fields, files, doc_id, in_reply_to)


def _doc_id(value: object) -> bytes | None:
    if value is None:
        return None
    if type(value) is not str or not _HEX_ID.fullmatch(value):
        shown = repr(value[:40]) if type(value) is str else json_type(value)
        raise Malformed(f"document: field 'id' must be {2 * DOC_ID_BYTES} hex digits "
                        f"(a {DOC_ID_BYTES}-byte document id), got {shown}")
    return bytes.fromhex(value)


def _deadline(value: object) -> int | None:
    """Milliseconds since the epoch, or a date: the end of that day, local time (as the CLI)."""
    if value is None or type(value) is int:
        return value
    if type(value) is not str:
        raise Malformed(f"document: field 'deadline' must be a number (ms) or a string "
                        f"YYYY-MM-DD, not {json_type(value)}")
    try:
        day = datetime.date.fromisoformat(value) if _DATE.fullmatch(value) else None
    except ValueError:  # 2026-02-30
        day = None
    if day is None:
        raise InvalidDocument(f"{FIELD_LABELS['deadline']} must be a date YYYY-MM-DD or "
                              f"milliseconds since the epoch, got {value[:40]!r}")
    end_of_day = datetime.datetime.combine(day, datetime.time(23, 59, 59)).astimezone()
    return int(end_of_day.timestamp() * 1000)


def _attachments(value: object) -> list[AttachmentFile]:
    if value is None:
        return []
    if type(value) is not list:
        raise Malformed(f"document: field 'attachments' must be an array, not {json_type(value)}")
    return [_attachment(item, index) for index, item in enumerate(value)]


def _attachment(value: object, index: int) -> AttachmentFile:
    item = JsonObject(value, f"attachments[{index}]")
    name = item.str("name")
    guessed = mimetypes.guess_type(name)[0] or "application/octet-stream"
    media_type = item.str("media_type", guessed) or guessed
    encoded = item.str("data")
    item.done()
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"attachments[{index}]: field 'data' is not valid base64") from None
    return AttachmentFile(name, media_type, data)


@dataclass(frozen=True)
class ActionRequest:
    action: Action
    actor: str
    detail: str


def parse_action_request(value: object) -> ActionRequest:
    body = JsonObject(value, "action")
    name = body.str("action")
    action = USER_ACTIONS.get(name)
    if action is None:
        raise Malformed(f"action: field 'action' must be one of {', '.join(USER_ACTIONS)}; "
                        f"got {name[:40]!r}")
    actor = body.str("by", max_len=MAX_TEXT).strip()
    if not actor:
        raise Malformed("action: field 'by' (the person acting) must not be empty")
    given = [key for key in DETAIL_KEYS if body.has(key)]
    if len(given) > 1:
        raise Malformed(f"action: give one of {', '.join(DETAIL_KEYS)}, not {', '.join(given)}")
    detail = body.str(given[0], max_len=MAX_TEXT) if given else ""
    for key in DETAIL_KEYS:
        body.get(key)  # null is the same as absent
    body.done()
    return ActionRequest(action, actor, detail)


def parse_limit(text: str | None, *, default: int = 200, maximum: int = 1000) -> int:
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= maximum:
        raise Malformed(f"query parameter 'limit' must be a whole number 1-{maximum}, "
                        f"got {text[:20]!r}")
    return int(text)
