"""The one rule book for what a 公文 may be: ``validate_document``.

Theory of operation
-------------------
``validate_document`` checks every field of a ``Document`` (``document_model.py``):
its type (text a ``str`` without lone surrogates, ids exactly ``bytes``, integers
exactly ``int`` in [0, 2^63-1]), lengths against the limits, the 15 kinds, urgency
and classification from their lists (绝密 refused by name), valid and distinct node
ids for 主送 and 抄送 (never the issuer itself), 保密期限 only with a 密级, 份号 as
digits, 签发人 for a 请示, in_reply_to for a 批复, real dates, and each 附件's name,
media type, SHA-256 and size.
``validate_attachment_limit`` checks attachment sizes against a limit, each and in
all: ``validate_document`` applies the protocol's, a node its own lower one.

Every refusal is ``InvalidDocument`` naming the field in Chinese and English
("标题 title is required"); a bad value is quoted, cut short, never rendered whole.
Both ends go through these rules: ``documents.encode_content`` before it packs,
``documents.decode_content`` after it reads the map.

Validation normalises one thing: surrounding whitespace is stripped from the one-line
fields (标题, 发文机关, 发文字号, 签发人, 印发机关, 保密期限), and the sequences become
tuples. ``validate_document`` returns that normalised copy; what was encoded decodes
to it exactly.

Dates are checked by hand (Gregorian, year 0001-9999, what ``datetime.date`` accepts)
because ``protocol/`` imports no ``datetime`` at all (tests/test_layering.py): no
clock can be read by accident.
"""

from __future__ import annotations

import re
from operator import is_

from protocol.document_model import (
    CLASSIFICATIONS, DOC_ID_BYTES, FIELD_LABELS, KINDS, MAX_ATTACHMENT_NAME_CHARS,
    MAX_ATTACHMENTS, MAX_ATTACHMENTS_BYTES, MAX_BODY_CHARS, MAX_COPY_NUMBER_CHARS,
    MAX_DOC_NUMBER_CHARS, MAX_INT, MAX_MEDIA_TYPE_CHARS, MAX_NAME_CHARS, MAX_NOTES_CHARS,
    MAX_RECIPIENTS, MAX_SECRECY_PERIOD_CHARS, MAX_SIGNER_CHARS, MAX_TITLE_CHARS,
    REPLY_KINDS, SHA256_BYTES, SIGNER_REQUIRED_KINDS, TOP_SECRET, URGENCIES, Attachment,
    Document,
)
from protocol.errors import InvalidDocument, ProtocolError
from protocol.ids import validate_node_id
from protocol.workflow import REPLY_KIND

__all__ = ["validate_document", "validate_attachment_limit"]

_QUOTE_LIMIT = 40
# Control characters (C0, DEL, C1) and the Unicode line/paragraph separators: never
# in a one-line field. Lone surrogates: never in any text (they cannot be UTF-8).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_DIGITS = re.compile("[0-9]+")
_DATE = re.compile("([0-9]{4})-([0-9]{2})-([0-9]{2})")
# RFC 6838 restricted-name "/" restricted-name, without parameters.
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _quote(value: object) -> str:
    """A short rendering of a bad value for error details."""
    if isinstance(value, (str, bytes)) and len(value) > _QUOTE_LIMIT:
        value = value[:_QUOTE_LIMIT]  # never render megabytes only to cut them
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ must not escape as anything but a refusal
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _refuse(field: str, problem: str) -> InvalidDocument:
    return InvalidDocument(f"{FIELD_LABELS[field]} {problem}")


def _string(value: object, field: str) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise _refuse(field, f"must be a string, not {type(value).__name__}")
        value = str.__str__(value)  # an exact str: a subclass cannot misbehave below
    if value.isascii() or _is_unicode_text(value):
        return value
    raise _refuse(field, "contains a lone surrogate (not valid Unicode text)")


def _is_unicode_text(value: str) -> bool:
    """No lone surrogates: exactly the strings UTF-8 can encode (C speed, unlike a
    regex scan, which matters for a body of thousands of characters)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _line(value: object, field: str, max_chars: int, *, required: bool = False) -> str:
    """A one-line text field, stripped: no control characters, at most ``max_chars``."""
    text = _string(value, field).strip()
    if required and not text:
        raise _refuse(field, "is required")
    if len(text) > max_chars:
        raise _refuse(field, f"is {len(text)} characters, over the limit of {max_chars}")
    if _CONTROL.search(text):
        raise _refuse(field, "must be one line without control characters")
    return text


def _text(value: object, field: str, max_chars: int) -> str:
    """A multi-line text field, kept as written: any characters but NUL."""
    text = _string(value, field)
    if len(text) > max_chars:
        raise _refuse(field, f"is {len(text)} characters, over the limit of {max_chars}")
    if "\x00" in text:
        raise _refuse(field, "must not contain NUL characters")
    return text


def _choice(value: object, field: str, allowed: tuple[str, ...]) -> str:
    text = _string(value, field)
    if text not in allowed:
        shown = ", ".join(choice or '"" (none)' for choice in allowed)
        raise _refuse(field, f"must be one of {shown}; got {_quote(text)}")
    return text


def _date(value: object, field: str) -> str:
    text = _string(value, field)
    if not text:
        return ""
    match = _DATE.fullmatch(text)
    if match is None:
        raise _refuse(field, f"must be a date YYYY-MM-DD, got {_quote(text)}")
    year, month, day = (int(part) for part in match.groups())
    if year < 1 or not 1 <= month <= 12 or not 1 <= day <= _days_in(year, month):
        raise _refuse(field, f"is not a real date: {_quote(text)}")
    return text


def _days_in(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def _integer(value: object, field: str) -> int:
    if type(value) is not int:  # bool is not an integer here, as on the wire
        raise _refuse(field, f"must be an integer, not {type(value).__name__}")
    if not 0 <= value <= MAX_INT:
        raise _refuse(field, f"must be in [0, 2^63-1], got {value}")
    return value


def _id_bytes(value: object, field: str) -> bytes:
    if type(value) is not bytes:
        raise _refuse(field, f"must be {DOC_ID_BYTES} bytes, not {type(value).__name__}")
    if len(value) != DOC_ID_BYTES:
        raise _refuse(field, f"must be {DOC_ID_BYTES} bytes, got {len(value)}")
    return value


def _node_id(value: object, field: str) -> str:
    try:
        return validate_node_id(value)
    except ProtocolError as exc:
        raise _refuse(field, f"is not a valid node id: {exc.detail}") from None


def _node_ids(value: object, field: str) -> tuple[str, ...]:
    if not isinstance(value, (tuple, list)):
        raise _refuse(field, f"must be a tuple of node ids, not {type(value).__name__}")
    if len(value) > MAX_RECIPIENTS:
        raise _refuse(field, f"lists {len(value)} recipients, over the limit of {MAX_RECIPIENTS}")
    ids = tuple(_node_id(item, field) for item in value)
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for node_id in ids:
            if node_id in seen:
                raise _refuse(field, f"lists {node_id} twice")
            seen.add(node_id)
    return value if type(value) is tuple and all(map(is_, ids, value)) else ids


def _attachment(value: object, index: int) -> Attachment:
    where = f"附件 attachment #{index + 1}"
    if not isinstance(value, Attachment):
        raise InvalidDocument(f"{where} must be an Attachment, not {type(value).__name__}")
    name = value.name
    if not isinstance(name, str) or _SURROGATE.search(name):
        raise InvalidDocument(f"{where} 名称 name must be a string of valid Unicode text")
    name = str.__str__(name)
    if not name.strip():
        raise InvalidDocument(f"{where} 名称 name is required")
    if len(name) > MAX_ATTACHMENT_NAME_CHARS:
        raise InvalidDocument(f"{where} 名称 name is {len(name)} characters, "
                              f"over the limit of {MAX_ATTACHMENT_NAME_CHARS}")
    where = f"附件 attachment {_quote(name)}"
    if "/" in name or "\\" in name or _CONTROL.search(name):
        raise InvalidDocument(f"{where}: a file name must not contain '/', '\\', NUL "
                              f"or other control characters")
    if name in (".", ".."):
        raise InvalidDocument(f"{where}: '.' and '..' are not file names")
    media_type = value.media_type
    if not (isinstance(media_type, str) and 1 <= len(media_type) <= MAX_MEDIA_TYPE_CHARS
            and _MEDIA_TYPE.fullmatch(media_type)):
        raise InvalidDocument(f"{where} 类型 media_type must be type/subtype such as "
                              f"application/pdf, at most {MAX_MEDIA_TYPE_CHARS} characters; "
                              f"got {_quote(media_type)}")
    if type(value.sha256) is not bytes or len(value.sha256) != SHA256_BYTES:
        got = (f"{len(value.sha256)} bytes" if type(value.sha256) is bytes
               else type(value.sha256).__name__)
        raise InvalidDocument(f"{where} sha256 must be {SHA256_BYTES} bytes, got {got}")
    if type(value.size) is not int or not 0 <= value.size <= MAX_INT:
        raise InvalidDocument(f"{where} size must be a non-negative integer, "
                              f"got {_quote(value.size)}")
    media_type = str.__str__(media_type)
    if type(value) is Attachment and name is value.name and media_type is value.media_type:
        return value  # nothing to normalise: no copy
    return Attachment(name, media_type, value.sha256, value.size)


def _attachments(value: object) -> tuple[Attachment, ...]:
    if not isinstance(value, (tuple, list)):
        raise _refuse("attachments", f"must be a tuple of Attachment, not {type(value).__name__}")
    if len(value) > MAX_ATTACHMENTS:
        raise _refuse("attachments", f"number {len(value)}, over the limit of {MAX_ATTACHMENTS}")
    attachments = tuple(_attachment(item, index) for index, item in enumerate(value))
    if type(value) is tuple and all(map(is_, attachments, value)):
        attachments = value
    names: set[str] = set()
    for attachment in attachments:
        if attachment.name in names:
            raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} is listed twice; "
                                  f"attachment names must be unique")
        names.add(attachment.name)
    return attachments


def validate_document(doc: Document) -> Document:
    """Every rule a document obeys; the normalised document, or ``InvalidDocument``."""
    if not isinstance(doc, Document):
        raise InvalidDocument(f"expected a Document, not {type(doc).__name__}")
    doc_id = _id_bytes(doc.doc_id, "doc_id")
    title = _line(doc.title, "title", MAX_TITLE_CHARS, required=True)
    kind = _string(doc.kind, "kind")
    if kind not in KINDS:
        raise _refuse("kind", f"must be one of the 15 kinds ({'、'.join(KINDS)}); "
                              f"got {_quote(kind)}")
    issuer = _line(doc.issuer, "issuer", MAX_NAME_CHARS, required=True)
    issuer_id = _node_id(doc.issuer_id, "issuer_id")

    main = _node_ids(doc.main_recipients, "main_recipients")
    if not main:
        raise _refuse("main_recipients", "needs at least one recipient")
    cc = _node_ids(doc.cc_recipients, "cc_recipients")
    if len(main) + len(cc) > MAX_RECIPIENTS:
        raise _refuse("cc_recipients", f"with 主送机关 main_recipients make {len(main) + len(cc)} "
                                       f"recipients, over the limit of {MAX_RECIPIENTS}")
    also_main = set(main).intersection(cc)
    if also_main:
        raise _refuse("cc_recipients", f"lists {min(also_main)}, already a main recipient "
                                       f"(主送机关 main_recipients)")
    if issuer_id in main or issuer_id in cc:
        raise _refuse("issuer_id", f"{issuer_id} is also a recipient; a node does not "
                                   f"send a document to itself")

    doc_number = _line(doc.doc_number, "doc_number", MAX_DOC_NUMBER_CHARS)
    urgency = _choice(doc.urgency, "urgency", ("", *URGENCIES))
    classification = _string(doc.classification, "classification")
    if classification == TOP_SECRET:
        raise _refuse("classification", "绝密 (top secret) is never carried by govnode; "
                                        "绝密 documents go by the dedicated confidential channel")
    classification = _choice(classification, "classification", CLASSIFICATIONS)
    secrecy_period = _line(doc.secrecy_period, "secrecy_period", MAX_SECRECY_PERIOD_CHARS)
    if secrecy_period and not classification:
        raise _refuse("secrecy_period", "is set, but the document has no 密级 classification")
    copy_number = _string(doc.copy_number, "copy_number")
    if len(copy_number) > MAX_COPY_NUMBER_CHARS:
        raise _refuse("copy_number", f"is {len(copy_number)} characters, over the limit "
                                     f"of {MAX_COPY_NUMBER_CHARS}")
    if copy_number and not _DIGITS.fullmatch(copy_number):
        raise _refuse("copy_number", f"must be digits 0-9 only (e.g. 000001), "
                                     f"got {_quote(copy_number)}")
    signer = _line(doc.signer, "signer", MAX_SIGNER_CHARS)
    if kind in SIGNER_REQUIRED_KINDS and not signer:
        raise _refuse("signer", f"is required for a {kind} (上行文 carry 签发人)")

    body = _text(doc.body, "body", MAX_BODY_CHARS)
    attachments = _attachments(doc.attachments)
    notes = _text(doc.notes, "notes", MAX_NOTES_CHARS)
    written_date = _date(doc.written_date, "written_date")
    printed_by = _line(doc.printed_by, "printed_by", MAX_NAME_CHARS)
    printed_date = _date(doc.printed_date, "printed_date")
    deadline = None if doc.deadline is None else _integer(doc.deadline, "deadline")
    in_reply_to = None if doc.in_reply_to is None else _id_bytes(doc.in_reply_to, "in_reply_to")
    if kind in REPLY_KINDS and in_reply_to is None:
        asks = "/".join(sorted(k for k, reply in REPLY_KIND.items() if reply == kind))
        raise _refuse("in_reply_to", f"is required for a {kind}: it answers a {asks}")
    if in_reply_to == doc_id:
        raise _refuse("in_reply_to", "cannot be the document itself")
    created_at = _integer(doc.created_at, "created_at")

    if type(doc) is Document and _unchanged(doc, title, kind, issuer, issuer_id, main, cc,
                                            doc_number, urgency, classification,
                                            secrecy_period, copy_number, signer, body,
                                            attachments, notes, written_date, printed_by,
                                            printed_date):
        validate_attachment_limit(doc, MAX_ATTACHMENTS_BYTES)
        return doc  # already normal: the same object, no copy (the common case)
    valid = Document(
        doc_id=doc_id, title=title, kind=kind, issuer=issuer, issuer_id=issuer_id,
        main_recipients=main, cc_recipients=cc, doc_number=doc_number, urgency=urgency,
        classification=classification, secrecy_period=secrecy_period,
        copy_number=copy_number, signer=signer, body=body, attachments=attachments,
        notes=notes, written_date=written_date, printed_by=printed_by,
        printed_date=printed_date, deadline=deadline, in_reply_to=in_reply_to,
        created_at=created_at,
    )
    validate_attachment_limit(valid, MAX_ATTACHMENTS_BYTES)
    return valid


def _unchanged(doc: Document, *normalised: object) -> bool:
    """Whether validation normalised none of ``doc``'s fields (each value is the very
    object the document holds). Ids and integers are not in the list: they are checked
    for their exact type and never rewritten."""
    return all(map(is_, normalised, (
        doc.title, doc.kind, doc.issuer, doc.issuer_id, doc.main_recipients,
        doc.cc_recipients, doc.doc_number, doc.urgency, doc.classification,
        doc.secrecy_period, doc.copy_number, doc.signer, doc.body, doc.attachments,
        doc.notes, doc.written_date, doc.printed_by, doc.printed_date)))


def validate_attachment_limit(doc: Document, max_bytes: int) -> None:
    """Refuse a (validated) document whose attachments exceed ``max_bytes``, each or in all.

    ``validate_document`` applies the protocol's ``MAX_ATTACHMENTS_BYTES``; a node
    calls this again with its own, lower, configured limit.
    """
    total = 0
    for attachment in doc.attachments:
        if attachment.size > max_bytes:
            raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} is "
                                  f"{attachment.size} bytes, over the limit of {max_bytes}")
        total += attachment.size
    if total > max_bytes:
        raise InvalidDocument(f"附件 attachments total {total} bytes, "
                              f"over the limit of {max_bytes}")
