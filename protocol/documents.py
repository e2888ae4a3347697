"""The official document (公文) itself: the plaintext sealed to each recipient.

Theory of operation
-------------------
A ``Document`` carries the GB/T 9704-2012 elements of one 公文 (DESIGN §5): 份号, 密级
and 保密期限, 紧急程度, 发文机关, 发文字号, 签发人, 标题, 主送 and 抄送机关, 正文, 附件,
附注, 成文日期, 印发机关 and 印发日期, plus the exchange's own fields (文种, 办理时限,
in_reply_to, created_at). The sending node encodes it once with ``encode_content``,
seals the bytes to each recipient (``sealing.py``) and frames them (``DocumentBody``);
relays never see any of it. Attachments travel inside the content, each named by the
SHA-256 of its bytes, so the receiver stores them content-addressed.

``validate_document`` is the one rule book for what a document may be. Both ends go
through it: ``encode_content`` validates before it packs (a node cannot send what a
peer would refuse), and ``decode_content`` reads the map strictly (``wire.Fields``:
exact key set, exact types, refused as ``malformed``) and then validates the
``Document`` it built (refused as ``invalid_document``, naming the field in Chinese
and English: "标题 title is required"). Attachment bytes are hashed on both sides.
``decode_content`` never raises anything but a ``ProtocolError``.

Validation normalises one thing: surrounding whitespace is stripped from the one-line
fields (标题, 发文机关, 发文字号, 签发人, 印发机关, 保密期限), and the sequences become
tuples. ``validate_document`` returns that normalised copy; what was encoded decodes
to it exactly.

Dates are checked by hand (Gregorian, year 0001-9999, what ``datetime.date`` accepts)
because ``protocol/`` imports no ``datetime`` at all (tests/test_layering.py): no
clock can be read by accident. Like the rest of ``protocol/`` this module is
sans-I/O: no clock, no storage, no randomness.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from protocol.errors import InvalidDocument, Malformed, ProtocolError, UnsupportedVersion
from protocol.ids import validate_node_id
from protocol.wire import Fields, Limits, pack, unpack
from protocol.workflow import REPLY_KIND

__all__ = [
    "KINDS", "URGENCIES", "CLASSIFICATIONS", "TOP_SECRET", "SIGNER_REQUIRED_KINDS",
    "REPLY_KINDS", "CONTENT_VERSION", "DOC_ID_BYTES", "SHA256_BYTES", "MAX_TITLE_CHARS",
    "MAX_NAME_CHARS", "MAX_DOC_NUMBER_CHARS", "MAX_SECRECY_PERIOD_CHARS",
    "MAX_COPY_NUMBER_CHARS", "MAX_SIGNER_CHARS", "MAX_BODY_CHARS", "MAX_NOTES_CHARS",
    "MAX_ATTACHMENTS", "MAX_ATTACHMENT_NAME_CHARS", "MAX_MEDIA_TYPE_CHARS",
    "MAX_ATTACHMENTS_BYTES", "MAX_RECIPIENTS", "MAX_CONTENT_BYTES", "CONTENT_LIMITS",
    "FIELD_LABELS", "Attachment", "Document", "validate_document",
    "validate_attachment_limit", "encode_content", "decode_content", "normalise_doc_number",
]

# The 15 kinds of the 党政机关公文处理工作条例 (2012), 第八条.
KINDS: Final = ("决议", "决定", "命令", "公报", "公告", "通告", "意见", "通知", "通报",
                "报告", "请示", "批复", "议案", "函", "纪要")
URGENCIES: Final = ("特急", "加急", "平急")  # or "" for none
CLASSIFICATIONS: Final = ("", "秘密", "机密")
TOP_SECRET: Final = "绝密"  # never carried by govnode: refused by name
SIGNER_REQUIRED_KINDS: Final = frozenset({"请示"})  # 上行文 carry 签发人 (GB/T 9704 7.2.6)
REPLY_KINDS: Final = frozenset(REPLY_KIND.values())  # a 批复 must say what it answers

CONTENT_VERSION: Final = 1
DOC_ID_BYTES: Final = 16
SHA256_BYTES: Final = 32
MAX_TITLE_CHARS: Final = 500
MAX_NAME_CHARS: Final = 200  # 发文机关, 印发机关 (as a certificate's display name)
MAX_DOC_NUMBER_CHARS: Final = 100
MAX_SECRECY_PERIOD_CHARS: Final = 20
MAX_COPY_NUMBER_CHARS: Final = 20
MAX_SIGNER_CHARS: Final = 100
MAX_BODY_CHARS: Final = 1_000_000
MAX_NOTES_CHARS: Final = 2000
MAX_ATTACHMENTS: Final = 64
MAX_ATTACHMENT_NAME_CHARS: Final = 255
MAX_MEDIA_TYPE_CHARS: Final = 127
MAX_ATTACHMENTS_BYTES: Final = 12 * 1024 * 1024  # total; a node may configure lower
MAX_RECIPIENTS: Final = 4096  # 主送 + 抄送
# A sealed content must fit in one frame (16 MiB in all, SPEC §3): keep 64 KiB for
# the seal's 48 bytes and the frame around it.
MAX_CONTENT_BYTES: Final = 16 * 1024 * 1024 - 64 * 1024

# msgpack's max_str_len counts UTF-8 bytes, not characters: a 1,000,000-character body
# is up to 4,000,000 bytes (4 for a CJK Extension B character, 3 for common CJK). The
# character limits are checked after decoding, by validate_document.
CONTENT_LIMITS: Final = Limits(
    max_bytes=MAX_CONTENT_BYTES,
    max_str_len=4 * MAX_BODY_CHARS,
    max_bin_len=MAX_ATTACHMENTS_BYTES,
    max_array_len=MAX_RECIPIENTS,
    max_map_len=32,
    max_depth=3,  # content map > attachments array > attachment map
)

FIELD_LABELS: Final[Mapping[str, str]] = {
    "doc_id": "公文标识 doc_id",
    "title": "标题 title",
    "kind": "文种 kind",
    "issuer": "发文机关 issuer",
    "issuer_id": "发文节点 issuer_id",
    "main_recipients": "主送机关 main_recipients",
    "cc_recipients": "抄送机关 cc_recipients",
    "doc_number": "发文字号 doc_number",
    "urgency": "紧急程度 urgency",
    "classification": "密级 classification",
    "secrecy_period": "保密期限 secrecy_period",
    "copy_number": "份号 copy_number",
    "signer": "签发人 signer",
    "body": "正文 body",
    "attachments": "附件 attachments",
    "notes": "附注 notes",
    "written_date": "成文日期 written_date",
    "printed_by": "印发机关 printed_by",
    "printed_date": "印发日期 printed_date",
    "deadline": "办理时限 deadline",
    "in_reply_to": "所复公文 in_reply_to",
    "created_at": "创建时间 created_at",
}
MAX_INT: Final = 2**63 - 1


@dataclass(frozen=True)
class Attachment:
    """One 附件, named by the SHA-256 of its bytes (which travel beside it)."""

    name: str  # file name as shown, 1..255 chars, no '/', '\\' or control characters
    media_type: str  # "type/subtype", e.g. "application/pdf", 1..127 chars
    sha256: bytes  # 32 bytes: content address
    size: int  # bytes


@dataclass(frozen=True)
class Document:
    """One 公文 as its issuer wrote it; every recipient's copy is identical."""

    doc_id: bytes  # 16 bytes, shared by every recipient's copy
    title: str  # 标题, 1..500 chars after strip
    kind: str  # 文种, one of KINDS
    issuer: str  # 发文机关 display name
    issuer_id: str  # the sending node id
    main_recipients: tuple[str, ...]  # 主送机关, node ids, at least one
    cc_recipients: tuple[str, ...] = ()  # 抄送机关, node ids
    doc_number: str = ""  # 发文字号, e.g. 粤府办〔2013〕12号
    urgency: str = ""  # 紧急程度, one of URGENCIES or ""
    classification: str = ""  # 密级, one of CLASSIFICATIONS
    secrecy_period: str = ""  # 保密期限, e.g. "1年", only with a classification
    copy_number: str = ""  # 份号, digits
    signer: str = ""  # 签发人, required for a 请示
    body: str = ""  # 正文
    attachments: tuple[Attachment, ...] = ()  # 附件
    notes: str = ""  # 附注
    written_date: str = ""  # 成文日期, YYYY-MM-DD
    printed_by: str = ""  # 印发机关
    printed_date: str = ""  # 印发日期, YYYY-MM-DD
    deadline: int | None = None  # 办理时限, ms since the epoch
    in_reply_to: bytes | None = None  # doc_id of the document this answers
    created_at: int = 0  # ms


# --- validation -----------------------------------------------------------------

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
    if not isinstance(value, str):
        raise _refuse(field, f"must be a string, not {type(value).__name__}")
    value = str.__str__(value)  # an exact str: a subclass cannot misbehave below
    if _SURROGATE.search(value):
        raise _refuse(field, "contains a lone surrogate (not valid Unicode text)")
    return value


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
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            raise _refuse(field, f"lists {node_id} twice")
        seen.add(node_id)
    return ids


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
    return Attachment(name, str.__str__(media_type), value.sha256, value.size)


def _attachments(value: object) -> tuple[Attachment, ...]:
    if not isinstance(value, (tuple, list)):
        raise _refuse("attachments", f"must be a tuple of Attachment, not {type(value).__name__}")
    if len(value) > MAX_ATTACHMENTS:
        raise _refuse("attachments", f"number {len(value)}, over the limit of {MAX_ATTACHMENTS}")
    attachments = tuple(_attachment(item, index) for index, item in enumerate(value))
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


# --- the content map --------------------------------------------------------------

_WHAT = "document content"
_NULLABLE = frozenset({"dl", "re"})


def encode_content(doc: Document, attachment_data: Mapping[bytes, bytes]) -> bytes:
    """The msgpack content map of ``doc`` (SPEC §5, Document content), ready to seal.

    ``attachment_data`` maps each attachment's SHA-256 to its bytes; every attachment
    must have its data there, of its size and hashing to its address.
    """
    doc = validate_document(doc)
    if not isinstance(attachment_data, Mapping):
        raise _refuse("attachments", "data must be a mapping of SHA-256 to bytes")
    verified: dict[bytes, bytes] = {}
    for attachment in doc.attachments:
        data = verified.get(attachment.sha256)
        if data is None:
            data = attachment_data.get(attachment.sha256)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} has no data "
                                      f"(none given for its SHA-256)")
            data = bytes(data)
            if hashlib.sha256(data).digest() != attachment.sha256:
                raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} does not "
                                      f"match its SHA-256")
            verified[attachment.sha256] = data
        if len(data) != attachment.size:
            raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} is {len(data)} "
                                  f"bytes, but its size says {attachment.size}")
    content = pack({
        "v": CONTENT_VERSION,
        "id": doc.doc_id,
        "ti": doc.title,
        "k": doc.kind,
        "is": doc.issuer,
        "iid": doc.issuer_id,
        "to": list(doc.main_recipients),
        "cc": list(doc.cc_recipients),
        "no": doc.doc_number,
        "u": doc.urgency,
        "cl": doc.classification,
        "sp": doc.secrecy_period,
        "cn": doc.copy_number,
        "sg": doc.signer,
        "bd": doc.body,
        "att": [{"n": a.name, "mt": a.media_type, "h": a.sha256, "sz": a.size,
                 "d": verified[a.sha256]} for a in doc.attachments],
        "nt": doc.notes,
        "wd": doc.written_date,
        "pb": doc.printed_by,
        "pd": doc.printed_date,
        "dl": doc.deadline,
        "re": doc.in_reply_to,
        "at": doc.created_at,
    })
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidDocument(f"内容 content is {len(content)} bytes encoded, "
                              f"over the limit of {MAX_CONTENT_BYTES}")
    return content


def decode_content(data: bytes) -> tuple[Document, dict[bytes, bytes]]:
    """The document and its attachment bytes (by SHA-256), read strictly from ``data``."""
    value = unpack(data, CONTENT_LIMITS, what=_WHAT)
    if type(value) is not dict:
        raise Malformed(f"{_WHAT}: expected a map, got {type(value).__name__}")
    # A nil optional is read here; Fields reads every other key (and refuses extras).
    fields = Fields({key: item for key, item in value.items()
                     if not (key in _NULLABLE and item is None)}, _WHAT)
    version = fields.int("v")
    if version != CONTENT_VERSION:
        raise UnsupportedVersion(f"{_WHAT}: version {version} is not spoken here "
                                 f"(only {CONTENT_VERSION})")
    raw_attachments = fields.array("att")
    if len(raw_attachments) > MAX_ATTACHMENTS:
        raise _refuse("attachments", f"number {len(raw_attachments)}, "
                                     f"over the limit of {MAX_ATTACHMENTS}")
    attachments: list[Attachment] = []
    blobs: list[bytes] = []
    for index, item in enumerate(raw_attachments):
        entry = Fields(item, f"{_WHAT}: attachment #{index + 1}")
        attachments.append(Attachment(name=entry.str("n"), media_type=entry.str("mt"),
                                      sha256=entry.bin("h"), size=entry.int("sz")))
        blobs.append(entry.bin("d"))
        entry.done()
    document = Document(
        doc_id=fields.bin("id"),
        title=fields.str("ti"),
        kind=fields.str("k"),
        issuer=fields.str("is"),
        issuer_id=fields.str("iid"),
        main_recipients=_strings(fields, "to"),
        cc_recipients=_strings(fields, "cc"),
        doc_number=fields.str("no"),
        urgency=fields.str("u"),
        classification=fields.str("cl"),
        secrecy_period=fields.str("sp"),
        copy_number=fields.str("cn"),
        signer=fields.str("sg"),
        body=fields.str("bd"),
        attachments=tuple(attachments),
        notes=fields.str("nt"),
        written_date=fields.str("wd"),
        printed_by=fields.str("pb"),
        printed_date=fields.str("pd"),
        deadline=_nullable(value, fields, "dl", fields.int),
        in_reply_to=_nullable(value, fields, "re", fields.bin),
        created_at=fields.int("at"),
    )
    fields.done()
    document = validate_document(document)
    # Checked after validation, so names in these details are known to be sound.
    contents: dict[bytes, bytes] = {}
    for attachment, blob in zip(document.attachments, blobs):
        if len(blob) != attachment.size:
            raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} is {len(blob)} "
                                  f"bytes, but its size says {attachment.size}")
        if contents.get(attachment.sha256) != blob:
            if hashlib.sha256(blob).digest() != attachment.sha256:
                raise InvalidDocument(f"附件 attachment {_quote(attachment.name)} does not "
                                      f"match its SHA-256")
            contents[attachment.sha256] = blob
    return document, contents


def _strings(fields: Fields, key: str) -> tuple[str, ...]:
    items = fields.array(key)
    if not all(type(item) is str for item in items):
        raise Malformed(f"{_WHAT}: field {key!r} must be an array of strings")
    return items


def _nullable(value: dict[str, Any], fields: Fields, key: str, read: Any) -> Any:
    if key not in value:
        raise Malformed(f"{_WHAT}: missing field {key!r}")
    return None if value[key] is None else read(key)


# --- search -----------------------------------------------------------------------

# Every bracket pair seen around the year of a 发文字号 becomes 〔〕 (GB/T 9704 7.2.4:
# 六角括号); full-width digits become ASCII digits; all whitespace goes.
_DOC_NUMBER_TABLE: Final = str.maketrans({
    **dict.fromkeys("[(［（【〖﹝", "〔"),
    **dict.fromkeys("])］）】〗﹞", "〕"),
    **{chr(0xFF10 + digit): str(digit) for digit in range(10)},
})
_WHITESPACE = re.compile(r"\s+")


def normalise_doc_number(text: str) -> str:
    """The search form of a 发文字号: ``粤府办[2013]12号`` -> ``粤府办〔2013〕12号``."""
    if not isinstance(text, str):
        raise _refuse("doc_number", f"must be a string, not {type(text).__name__}")
    return _WHITESPACE.sub("", str.__str__(text).translate(_DOC_NUMBER_TABLE))
