"""The rules for a document's 附件 attachments: each one's name, media type, SHA-256
and size, their number, and the limit on their bytes (``validate_attachment_limit``,
applied by ``validate_document`` with the protocol's limit and by a node with its own)."""

from __future__ import annotations

import re
from operator import is_

from protocol.document_model import (FIELD_LABELS, MAX_ATTACHMENT_NAME_CHARS, MAX_ATTACHMENTS,
                                     MAX_INT, MAX_MEDIA_TYPE_CHARS, SHA256_BYTES, Attachment,
                                     Document)
from protocol.errors import InvalidDocument
from protocol.text_rules import CONTROL, SURROGATE, quote

# RFC 6838 restricted-name "/" restricted-name, without parameters.
MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


def _attachment(value: object, index: int) -> Attachment:
    where = f"附件 attachment #{index + 1}"
    if not isinstance(value, Attachment):
        raise InvalidDocument(f"{where} must be an Attachment, not {type(value).__name__}")
    name = value.name
    if not isinstance(name, str) or SURROGATE.search(name):
        raise InvalidDocument(f"{where} 名称 name must be a string of valid Unicode text")
    name = str.__str__(name)
    if not name.strip():
        raise InvalidDocument(f"{where} 名称 name is required")
    if len(name) > MAX_ATTACHMENT_NAME_CHARS:
        raise InvalidDocument(f"{where} 名称 name is {len(name)} characters, "
                              f"over the limit of {MAX_ATTACHMENT_NAME_CHARS}")
    where = f"附件 attachment {quote(name)}"
    if "/" in name or "\\" in name or CONTROL.search(name):
        raise InvalidDocument(f"{where}: a file name must not contain '/', '\\', NUL, "
                              f"other control characters or bidirectional overrides")
    if name in (".", ".."):
        raise InvalidDocument(f"{where}: '.' and '..' are not file names")
    media_type = value.media_type
    if not (isinstance(media_type, str) and 1 <= len(media_type) <= MAX_MEDIA_TYPE_CHARS
            and MEDIA_TYPE.fullmatch(media_type)):
        raise InvalidDocument(f"{where} 类型 media_type must be type/subtype such as "
                              f"application/pdf, at most {MAX_MEDIA_TYPE_CHARS} characters; "
                              f"got {quote(media_type)}")
    if type(value.sha256) is not bytes or len(value.sha256) != SHA256_BYTES:
        got = (f"{len(value.sha256)} bytes" if type(value.sha256) is bytes
               else type(value.sha256).__name__)
        raise InvalidDocument(f"{where} sha256 must be {SHA256_BYTES} bytes, got {got}")
    if type(value.size) is not int or not 0 <= value.size <= MAX_INT:
        raise InvalidDocument(f"{where} size must be a non-negative integer, "
                              f"got {quote(value.size)}")
    media_type = str.__str__(media_type)
    if type(value) is Attachment and name is value.name and media_type is value.media_type:
        return value  # nothing to normalise: no copy
    return Attachment(name, media_type, value.sha256, value.size)


def check_attachments(value: object) -> tuple[Attachment, ...]:
    """The attachments, each checked, names unique; the same tuple if none changed."""
    if not isinstance(value, (tuple, list)):
        raise _refuse_attachments(f"must be a tuple of Attachment, not {type(value).__name__}")
    if len(value) > MAX_ATTACHMENTS:
        raise _refuse_attachments(f"number {len(value)}, over the limit of {MAX_ATTACHMENTS}")
    attachments = tuple(_attachment(item, index) for index, item in enumerate(value))
    if type(value) is tuple and all(map(is_, attachments, value)):
        attachments = value
    names: set[str] = set()
    for attachment in attachments:
        if attachment.name in names:
            raise InvalidDocument(f"附件 attachment {quote(attachment.name)} is listed twice; "
                                  f"attachment names must be unique")
        names.add(attachment.name)
    return attachments


def attachments_normal(attachments: object) -> bool:
    """``validate_document``'s fast path: an exact tuple that ``check_attachments`` keeps
    as it is (never a subclass: its ``==`` and iteration could say anything)."""
    if type(attachments) is not tuple:
        return False
    try:
        return not attachments or check_attachments(attachments) is attachments
    except InvalidDocument:
        return False


def validate_attachment_limit(doc: Document, max_bytes: int) -> None:
    """Refuse a (validated) document whose attachments exceed ``max_bytes``, each or in all.

    ``validate_document`` applies the protocol's ``MAX_ATTACHMENTS_BYTES``; a node
    calls this again with its own, lower, configured limit.
    """
    total = 0
    for attachment in doc.attachments:
        if attachment.size > max_bytes:
            raise InvalidDocument(f"附件 attachment {quote(attachment.name)} is "
                                  f"{attachment.size} bytes, over the limit of {max_bytes}")
        total += attachment.size
    if total > max_bytes:
        raise InvalidDocument(f"附件 attachments total {total} bytes, "
                              f"over the limit of {max_bytes}")


def _refuse_attachments(problem: str) -> InvalidDocument:
    return InvalidDocument(f"{FIELD_LABELS['attachments']} {problem}")
