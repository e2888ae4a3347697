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

``validate_document`` (``document_rules.py``) is the one rule book for what a document
may be. Both ends go through it: ``encode_content`` validates before it packs (a node
cannot send what a peer would refuse), and ``decode_content`` reads the map strictly
(``wire.Fields``: exact key set, exact types, refused as ``malformed``) and then
validates the ``Document`` it built (refused as ``invalid_document``, naming the field
in Chinese and English: "标题 title is required"). Attachment bytes are hashed on both
sides. ``decode_content`` never raises anything but a ``ProtocolError``.

A node keeps a document as its content map without the attachment bytes
(``encode_kept_content``; those go to a table of their own, by SHA-256). A document
without attachments is therefore kept as the very bytes it travelled in: the sender
keeps what it sealed, the receiver what it opened (``decode_content_to_keep``), and
neither encodes it a second time. ``decode_kept_content`` reads it back.

This module is the content codec and the public face of the document: the dataclasses
and limits (``document_model.py``) and the two validators (``document_rules.py``) are
re-exported here, so callers import everything from ``protocol.documents``. Like the
rest of ``protocol/`` it is sans-I/O: no clock, no storage, no randomness.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Final

from protocol import workflow
from protocol.document_model import (
    CLASSIFICATIONS, CONTENT_LIMITS, CONTENT_VERSION, DOC_ID_BYTES, FIELD_LABELS, KINDS,
    MAX_ATTACHMENT_NAME_CHARS, MAX_ATTACHMENTS, MAX_ATTACHMENTS_BYTES, MAX_BODY_CHARS,
    MAX_CONTENT_BYTES, MAX_COPY_NUMBER_CHARS, MAX_DOC_NUMBER_CHARS, MAX_MEDIA_TYPE_CHARS,
    MAX_NAME_CHARS, MAX_NOTES_CHARS, MAX_RECIPIENTS, MAX_SECRECY_PERIOD_CHARS,
    MAX_SIGNER_CHARS, MAX_TITLE_CHARS, REPLY_KINDS, SHA256_BYTES, SIGNER_REQUIRED_KINDS,
    MAX_INT, TOP_SECRET, URGENCIES, Attachment, Document, document_from_fields,
)
from protocol.attachment_rules import validate_attachment_limit
from protocol.document_rules import _refuse, validate_document
from protocol.errors import InvalidDocument, Malformed, UnsupportedVersion
from protocol.text_rules import quote
from protocol.wire import Fields, pack, read_exact, unpack

__all__ = [
    "KINDS", "URGENCIES", "CLASSIFICATIONS", "TOP_SECRET", "SIGNER_REQUIRED_KINDS",
    "REPLY_KINDS", "CONTENT_VERSION", "DOC_ID_BYTES", "SHA256_BYTES", "MAX_TITLE_CHARS",
    "MAX_NAME_CHARS", "MAX_DOC_NUMBER_CHARS", "MAX_SECRECY_PERIOD_CHARS",
    "MAX_COPY_NUMBER_CHARS", "MAX_SIGNER_CHARS", "MAX_BODY_CHARS", "MAX_NOTES_CHARS",
    "MAX_ATTACHMENTS", "MAX_ATTACHMENT_NAME_CHARS", "MAX_MEDIA_TYPE_CHARS",
    "MAX_ATTACHMENTS_BYTES", "MAX_RECIPIENTS", "MAX_CONTENT_BYTES", "CONTENT_LIMITS",
    "FIELD_LABELS", "Attachment", "Document", "validate_document",
    "validate_attachment_limit", "encode_content", "encode_valid_content", "decode_content",
    "decode_content_to_keep", "encode_kept_content", "decode_kept_content",
    "normalise_doc_number",
]

# The reply kinds by the kind they answer (workflow.py), still reachable from here.
REPLY_KIND: Final = workflow.REPLY_KIND


# --- the content map --------------------------------------------------------------

_WHAT = "document content"
_CONTENT_SCHEMA = {
    "v": int, "id": bytes, "ti": str, "k": str, "is": str, "iid": str, "to": tuple,
    "cc": tuple, "no": str, "u": str, "cl": str, "sp": str, "cn": str, "sg": str, "bd": str,
    "att": tuple, "nt": str, "wd": str, "pb": str, "pd": str, "at": int,
    "dl": (int, type(None)), "re": (bytes, type(None)),
}


def encode_content(doc: Document, attachment_data: Mapping[bytes, bytes]) -> bytes:
    """The msgpack content map of ``doc`` (SPEC §5, Document content), ready to seal.

    ``attachment_data`` maps each attachment's SHA-256 to its bytes; every attachment
    must have its data there, of its size and hashing to its address.
    """
    return encode_valid_content(validate_document(doc), attachment_data)


def encode_valid_content(doc: Document, attachment_data: Mapping[bytes, bytes]) -> bytes:
    """``encode_content`` for a document ``validate_document`` returned, which is not
    validated again (a sender validates once; a receiver validates what it decodes
    whatever the sender did). The attachment data is still checked."""
    if not isinstance(attachment_data, Mapping):
        raise _refuse("attachments", "data must be a mapping of SHA-256 to bytes")
    verified: dict[bytes, bytes] = {}
    for attachment in doc.attachments:
        data = verified.get(attachment.sha256)
        if data is None:
            data = attachment_data.get(attachment.sha256)
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise InvalidDocument(f"附件 attachment {quote(attachment.name)} has no data "
                                      f"(none given for its SHA-256)")
            data = bytes(data)
            if hashlib.sha256(data).digest() != attachment.sha256:
                raise InvalidDocument(f"附件 attachment {quote(attachment.name)} does not "
                                      f"match its SHA-256")
            verified[attachment.sha256] = data
        if len(data) != attachment.size:
            raise InvalidDocument(f"附件 attachment {quote(attachment.name)} is {len(data)} "
                                  f"bytes, but its size says {attachment.size}")
    content = pack(_content_map(doc, verified))
    if len(content) > MAX_CONTENT_BYTES:
        raise InvalidDocument(f"内容 content is {len(content)} bytes encoded, "
                              f"over the limit of {MAX_CONTENT_BYTES}")
    return content


def encode_kept_content(doc: Document) -> bytes:
    """The content map of a valid ``doc`` with its attachments' bytes left out (no ``d``
    field): how a node keeps a document, its attachment bytes being stored apart by
    SHA-256. Read back with ``decode_kept_content``."""
    return pack(_content_map(doc, None))


def _content_map(doc: Document, attachment_data: Mapping[bytes, bytes] | None) -> dict:
    """SPEC §5's content map of ``doc``; without ``attachment_data``, no ``d`` fields."""
    if attachment_data is None:
        attachments = [{"n": a.name, "mt": a.media_type, "h": a.sha256, "sz": a.size}
                       for a in doc.attachments]
    else:
        attachments = [{"n": a.name, "mt": a.media_type, "h": a.sha256, "sz": a.size,
                        "d": attachment_data[a.sha256]} for a in doc.attachments]
    return {
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
        "att": attachments,
        "nt": doc.notes,
        "wd": doc.written_date,
        "pb": doc.printed_by,
        "pd": doc.printed_date,
        "dl": doc.deadline,
        "re": doc.in_reply_to,
        "at": doc.created_at,
    }


# A content map of exactly the schema's entries, as msgpack writes its header (map16).
# Only such bytes are kept as they came: msgpack keeps the last of a repeated key, so
# in a map with more entries than keys some bytes were never checked (they could hide
# megabytes), and those bytes are encoded again from the validated document instead.
_WHOLE_MAP_HEADER = b"\xde" + len(_CONTENT_SCHEMA).to_bytes(2, "big")


def decode_content(data: bytes) -> tuple[Document, dict[bytes, bytes]]:
    """The document and its attachment bytes (by SHA-256), read strictly from ``data``."""
    document, contents, _ = decode_content_to_keep(data)
    return document, contents


def decode_content_to_keep(data: bytes) -> tuple[Document, dict[bytes, bytes], bytes]:
    """``decode_content``, and the bytes to keep the document as (``encode_kept_content``'s
    form): ``data`` itself when it carries no attachment, validation normalised nothing
    and every byte of it was read (``_WHOLE_MAP_HEADER``), the common case, which then
    encodes nothing again."""
    value = unpack(data, CONTENT_LIMITS, what=_WHAT)
    if type(value) is not dict:
        raise Malformed(f"{_WHAT}: expected a map, got {type(value).__name__}")
    version = value.get("v")
    if type(version) is int and version != CONTENT_VERSION:
        raise UnsupportedVersion(f"{_WHAT}: version {version} is not spoken here "
                                 f"(only {CONTENT_VERSION})")
    # One pass over the key set and the types: this is every received document's path.
    (_, doc_id, title, kind, issuer, issuer_id, to, cc, doc_number, urgency, classification,
     secrecy_period, copy_number, signer, body, raw_attachments, notes, written_date,
     printed_by, printed_date, created_at, deadline, in_reply_to) = read_exact(
        value, _CONTENT_SCHEMA, _WHAT)
    for key, number in (("at", created_at), ("dl", deadline)):
        if number is not None and not 0 <= number <= MAX_INT:
            raise Malformed(f"{_WHAT}: field {key!r} out of range [0, {MAX_INT}]")
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
    document = document_from_fields({
        "doc_id": doc_id, "title": title, "kind": kind, "issuer": issuer,
        "issuer_id": issuer_id, "main_recipients": _strings(to, "to"),
        "cc_recipients": _strings(cc, "cc"), "doc_number": doc_number, "urgency": urgency,
        "classification": classification, "secrecy_period": secrecy_period,
        "copy_number": copy_number, "signer": signer, "body": body,
        "attachments": tuple(attachments), "notes": notes, "written_date": written_date,
        "printed_by": printed_by, "printed_date": printed_date, "deadline": deadline,
        "in_reply_to": in_reply_to, "created_at": created_at,
    })
    valid = validate_document(document, utf8_decoded=True)  # msgpack decoded it strictly
    # Checked after validation, so names in these details are known to be sound.
    contents: dict[bytes, bytes] = {}
    for attachment, blob in zip(valid.attachments, blobs):
        if len(blob) != attachment.size:
            raise InvalidDocument(f"附件 attachment {quote(attachment.name)} is {len(blob)} "
                                  f"bytes, but its size says {attachment.size}")
        if contents.get(attachment.sha256) != blob:
            if hashlib.sha256(blob).digest() != attachment.sha256:
                raise InvalidDocument(f"附件 attachment {quote(attachment.name)} does not "
                                      f"match its SHA-256")
            contents[attachment.sha256] = blob
    if valid is document and not blobs and data.startswith(_WHOLE_MAP_HEADER):
        return valid, contents, data
    return valid, contents, encode_kept_content(valid)


def decode_kept_content(data: bytes) -> Document:
    """A document from ``encode_kept_content``'s bytes (or ``decode_content_to_keep``'s),
    which this node stored after validating them: read without validating again."""
    value = unpack(data, CONTENT_LIMITS, what="kept document")
    if value["v"] != CONTENT_VERSION:
        raise UnsupportedVersion(f"kept document: content version {value['v']} is not "
                                 f"read here (only {CONTENT_VERSION})")
    return Document(
        doc_id=value["id"], title=value["ti"], kind=value["k"], issuer=value["is"],
        issuer_id=value["iid"], main_recipients=value["to"], cc_recipients=value["cc"],
        doc_number=value["no"], urgency=value["u"], classification=value["cl"],
        secrecy_period=value["sp"], copy_number=value["cn"], signer=value["sg"],
        body=value["bd"], notes=value["nt"], written_date=value["wd"],
        printed_by=value["pb"], printed_date=value["pd"], deadline=value["dl"],
        in_reply_to=value["re"], created_at=value["at"],
        attachments=tuple(Attachment(name=item["n"], media_type=item["mt"],
                                     sha256=item["h"], size=item["sz"])
                          for item in value["att"]))


def _strings(items: tuple, key: str) -> tuple[str, ...]:
    if not all(type(item) is str for item in items):
        raise Malformed(f"{_WHAT}: field {key!r} must be an array of strings")
    return items


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
