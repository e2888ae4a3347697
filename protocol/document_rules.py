"""The one rule book for what a 公文 may be: ``validate_document``.

Theory of operation
-------------------
``validate_document`` checks every field of a ``Document`` (``document_model.py``):
its type (text a ``str`` without lone surrogates, ids exactly ``bytes``, integers
exactly ``int`` in [0, 2^63-1]), lengths against the limits, the 15 kinds, urgency
and classification from their lists (绝密 refused by name), valid and distinct node
ids for 主送 and 抄送 (never the issuer itself), 保密期限 only with a 密级, 份号 as
digits, 签发人 for a 请示, in_reply_to for a 批复, real dates, and each 附件's name,
media type, SHA-256 and size (those in ``attachment_rules.py``, with
``validate_attachment_limit``, which checks attachment sizes against a limit, each
and in all: ``validate_document`` applies the protocol's, a node its own lower one).

Two paths, one answer. A document is first checked in bulk (``_already_normal``:
joined where a rule allows it, no refusal worded), which passes an ordinary document
at about half the cost; whatever that is not sure of is checked field by field
(``_validate_field_by_field``) in a fixed order, and the first rule broken is the
refusal. tests/test_document_fast_path.py holds the two paths to agreement. Every
document sent and every document received is validated, so this is on the hot path.

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
    CLASSIFICATIONS, DOC_ID_BYTES, FIELD_LABELS, KINDS, MAX_ATTACHMENTS_BYTES, MAX_BODY_CHARS,
    MAX_COPY_NUMBER_CHARS, MAX_DOC_NUMBER_CHARS, MAX_INT, MAX_NAME_CHARS, MAX_NOTES_CHARS,
    MAX_RECIPIENTS, MAX_SECRECY_PERIOD_CHARS, MAX_SIGNER_CHARS, MAX_TITLE_CHARS, REPLY_KINDS,
    SIGNER_REQUIRED_KINDS, TOP_SECRET, URGENCIES, Document,
)
from protocol.attachment_rules import (attachments_normal, check_attachments,
                                       validate_attachment_limit)
from protocol.errors import InvalidDocument, ProtocolError
from protocol.ids import validate_node_id
from protocol.text_rules import CONTROL, is_unicode_text, quote
from protocol.workflow import REPLY_KIND

__all__ = ["validate_document", "validate_attachment_limit"]

_DIGITS = re.compile("[0-9]+")
_DATE = re.compile("([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_URGENCY_CHOICES = ("", *URGENCIES)
_STR_ONLY = frozenset({str})  # {type(value) for ...} <= this: every value an exact str


def _refuse(field: str, problem: str) -> InvalidDocument:
    return InvalidDocument(f"{FIELD_LABELS[field]} {problem}")


def _string(value: object, field: str) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise _refuse(field, f"must be a string, not {type(value).__name__}")
        value = str.__str__(value)  # an exact str: a subclass cannot misbehave below
    if value.isascii() or is_unicode_text(value):
        return value
    raise _refuse(field, "contains a lone surrogate (not valid Unicode text)")


def _line(value: object, field: str, max_chars: int, *, required: bool = False) -> str:
    """A one-line text field, stripped: nothing ``CONTROL`` matches, at most ``max_chars``."""
    text = _string(value, field).strip()
    if required and not text:
        raise _refuse(field, "is required")
    if len(text) > max_chars:
        raise _refuse(field, f"is {len(text)} characters, over the limit of {max_chars}")
    if CONTROL.search(text):
        raise _refuse(field, "must be one line without control characters or "
                             "bidirectional overrides")
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
        raise _refuse(field, f"must be one of {shown}; got {quote(text)}")
    return text


def _date(value: object, field: str) -> str:
    text = _string(value, field)
    if not text:
        return ""
    match = _DATE.fullmatch(text)
    if match is None:
        raise _refuse(field, f"must be a date YYYY-MM-DD, got {quote(text)}")
    if not _is_real_date(match):
        raise _refuse(field, f"is not a real date: {quote(text)}")
    return text


def _is_real_date(match: re.Match) -> bool:
    year, month, day = (int(part) for part in match.groups())
    return year >= 1 and 1 <= month <= 12 and 1 <= day <= _days_in(year, month)


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


def validate_document(doc: Document, *, utf8_decoded: bool = False) -> Document:
    """Every rule a document obeys; the normalised document, or ``InvalidDocument``.

    ``utf8_decoded``: the caller vouches that every string in ``doc`` was decoded from
    UTF-8 (a received document's content, which msgpack decodes strictly), so none can
    hold a lone surrogate and the fast path need not encode the text again to find one:
    for a 4 KiB body that is a quarter of what validating a received document costs."""
    if type(doc) is Document and _already_normal(doc, utf8_decoded):
        validate_attachment_limit(doc, MAX_ATTACHMENTS_BYTES)
        return doc  # the common case: the same object, no copy
    return _validate_field_by_field(doc)


def _validate_field_by_field(doc: Document) -> Document:
    """``validate_document`` one field at a time, in a fixed order: the first rule
    broken is the refusal. A rule added here must be added to ``_already_normal`` too,
    which every ordinary document takes instead (tests/test_document_fast_path.py
    notices only if one of its odd values breaks the new rule: add one that does)."""
    if not isinstance(doc, Document):
        raise InvalidDocument(f"expected a Document, not {type(doc).__name__}")
    doc_id = _id_bytes(doc.doc_id, "doc_id")
    title = _line(doc.title, "title", MAX_TITLE_CHARS, required=True)
    kind = _string(doc.kind, "kind")
    if kind not in KINDS:
        raise _refuse("kind", f"must be one of the 15 kinds ({'、'.join(KINDS)}); "
                              f"got {quote(kind)}")
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
    urgency = _choice(doc.urgency, "urgency", _URGENCY_CHOICES)
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
                                     f"got {quote(copy_number)}")
    signer = _line(doc.signer, "signer", MAX_SIGNER_CHARS)
    if kind in SIGNER_REQUIRED_KINDS and not signer:
        raise _refuse("signer", f"is required for a {kind} (上行文 carry 签发人)")

    body = _text(doc.body, "body", MAX_BODY_CHARS)
    attachments = check_attachments(doc.attachments)
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


def _already_normal(doc: Document, utf8_decoded: bool = False) -> bool:
    """Whether ``doc`` keeps every rule with nothing to normalise (all but the size
    limit on attachments, checked after either path), checked in bulk: the path of
    every document sent and received, at half the field-by-field cost. False means "not
    sure": the field-by-field path then decides and words the refusal. Every rule of
    ``_validate_field_by_field`` must be here as well; tests/test_document_fast_path.py
    holds the two paths to agreement."""
    lines = (doc.title, doc.issuer, doc.doc_number, doc.secrecy_period, doc.signer,
             doc.printed_by)
    title, issuer, doc_number, secrecy_period, signer, printed_by = lines
    kind, classification, copy_number = doc.kind, doc.classification, doc.copy_number
    body, notes, written_date, printed_date = (doc.body, doc.notes, doc.written_date,
                                               doc.printed_date)
    if not _STR_ONLY.issuperset(map(type, (*lines, kind, doc.urgency, classification,
                                          copy_number, body, notes, written_date,
                                          printed_date))):
        return False
    # The control-character and surrogate checks look at one character at a time, so
    # on the fields joined they find exactly what they would find field by field.
    joined = "".join(lines)
    if not (0 < len(title) <= MAX_TITLE_CHARS and 0 < len(issuer) <= MAX_NAME_CHARS
            and len(doc_number) <= MAX_DOC_NUMBER_CHARS
            and len(secrecy_period) <= MAX_SECRECY_PERIOD_CHARS
            and len(signer) <= MAX_SIGNER_CHARS and len(printed_by) <= MAX_NAME_CHARS
            and all(map(is_, map(str.strip, lines), lines))  # nothing to strip
            and (utf8_decoded or joined.isascii() or is_unicode_text(joined))
            and not CONTROL.search(joined)
            and len(body) <= MAX_BODY_CHARS and "\x00" not in body
            and (utf8_decoded or body.isascii() or is_unicode_text(body))
            and len(notes) <= MAX_NOTES_CHARS and "\x00" not in notes
            and (utf8_decoded or notes.isascii() or is_unicode_text(notes))
            and kind in KINDS and doc.urgency in _URGENCY_CHOICES
            and classification in CLASSIFICATIONS and (classification or not secrecy_period)
            and len(copy_number) <= MAX_COPY_NUMBER_CHARS
            and (not copy_number or _DIGITS.fullmatch(copy_number))
            and (signer or kind not in SIGNER_REQUIRED_KINDS)
            and _is_date_or_empty(written_date) and _is_date_or_empty(printed_date)):
        return False
    doc_id, in_reply_to, deadline, created_at = (doc.doc_id, doc.in_reply_to, doc.deadline,
                                                 doc.created_at)
    if not (type(doc_id) is bytes and len(doc_id) == DOC_ID_BYTES
            and (in_reply_to is None
                 or type(in_reply_to) is bytes and len(in_reply_to) == DOC_ID_BYTES)
            and (in_reply_to is not None or kind not in REPLY_KINDS)
            and in_reply_to != doc_id
            and type(created_at) is int and 0 <= created_at <= MAX_INT
            and (deadline is None or type(deadline) is int and 0 <= deadline <= MAX_INT)):
        return False
    return _recipients_normal(doc) and attachments_normal(doc.attachments)


def _recipients_normal(doc: Document) -> bool:
    main, cc, issuer_id = doc.main_recipients, doc.cc_recipients, doc.issuer_id
    if not (type(main) is tuple and type(cc) is tuple and main
            and len(main) + len(cc) <= MAX_RECIPIENTS):
        return False
    try:
        if not (validate_node_id(issuer_id) is issuer_id
                and all(map(is_, map(validate_node_id, main), main))
                and all(map(is_, map(validate_node_id, cc), cc))):
            return False
    except ProtocolError:
        return False
    recipients = {*main, *cc}
    return len(recipients) == len(main) + len(cc) and issuer_id not in recipients


def _is_date_or_empty(text: str) -> bool:
    if not text:
        return True
    match = _DATE.fullmatch(text)
    return match is not None and _is_real_date(match)



def _unchanged(doc: Document, *normalised: object) -> bool:
    """Whether validation normalised none of ``doc``'s fields (each value is the very
    object the document holds). Ids and integers are not in the list: they are checked
    for their exact type and never rewritten."""
    return all(map(is_, normalised, (
        doc.title, doc.kind, doc.issuer, doc.issuer_id, doc.main_recipients,
        doc.cc_recipients, doc.doc_number, doc.urgency, doc.classification,
        doc.secrecy_period, doc.copy_number, doc.signer, doc.body, doc.attachments,
        doc.notes, doc.written_date, doc.printed_by, doc.printed_date)))
