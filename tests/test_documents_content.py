"""The sealed content map's attachment data and strict decoding (protocol/documents.py,
SPEC §5): encoding needs every attachment's bytes and checks them against its hash and
size, tampered attachment data is refused on decoding, and wrong shapes, broken rules,
content over the limits and random, truncated or altered bytes come out only as typed
protocol errors. The example notice and helpers are those of tests/test_documents.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import documents
from protocol.documents import (CONTENT_LIMITS, MAX_ATTACHMENTS_BYTES, MAX_BODY_CHARS,
                                Attachment, decode_content, encode_content)
from protocol.errors import InvalidDocument, Malformed, ProtocolError, UnsupportedVersion
from protocol.wire import pack, unpack
from test_documents import DATA, NOTICE, PDF, attachment, change, fast

# --- attachment data ----------------------------------------------------------------

def test_encoding_needs_every_attachments_data_and_checks_it():
    with pytest.raises(InvalidDocument, match="附件 attachment '附件1：值班表.pdf' has no data"):
        encode_content(NOTICE, {})
    sha = NOTICE.attachments[0].sha256
    with pytest.raises(InvalidDocument, match="does not match its SHA-256"):
        encode_content(NOTICE, {sha: PDF[:-1] + b"!"})
    wrong_size = change(attachments=(dataclasses.replace(NOTICE.attachments[0], size=1),))
    with pytest.raises(InvalidDocument, match="but its size says 1"):
        encode_content(wrong_size, DATA)
    with pytest.raises(InvalidDocument, match="附件 attachments data must be a mapping"):
        encode_content(NOTICE, [PDF])
    assert encode_content(NOTICE, {sha: bytearray(PDF)}) == encode_content(NOTICE, DATA)


def _tampered(**changes) -> bytes:
    content = unpack(encode_content(NOTICE, DATA), CONTENT_LIMITS)
    return pack({**content, "att": [{**content["att"][0], **changes}]})


def test_tampered_attachment_data_is_refused():
    with pytest.raises(InvalidDocument,
                       match=re.escape("附件 attachment '附件1：值班表.pdf' does not match its SHA-256")):
        decode_content(_tampered(d=PDF[:-1] + b"!"))
    with pytest.raises(InvalidDocument, match="but its size says"):
        decode_content(_tampered(d=PDF + b"!"))
    with pytest.raises(InvalidDocument, match="does not match its SHA-256"):
        decode_content(_tampered(h=hashlib.sha256(b"other").digest()))


@pytest.mark.parametrize("key", ["ti", "is", "bd", "nt"])
def test_text_that_is_not_utf8_is_refused_before_validation(key):
    """A lone surrogate (ED A0 80) or a stray byte inside a str never decodes: the
    received-document path relies on that to skip its own surrogate scan
    (``validate_document(..., utf8_decoded=True)``)."""
    content = unpack(encode_content(NOTICE, DATA), CONTENT_LIMITS)
    packed = pack({**content, key: "PLACEHOLDER"})
    for raw in (b"\xe6\xad\xa3\xed\xa0\x80", b"\xed\xbf\xbf", b"ok\xff"):
        hostile = packed.replace(pack("PLACEHOLDER"), msgpack.packb(raw, use_bin_type=False))
        assert hostile != packed
        with pytest.raises(Malformed, match="not valid msgpack"):
            decode_content(hostile)


def test_decoding_does_not_scan_decoded_text_for_surrogates_again(monkeypatch):
    """The strict decode above is the scan: the CJK text of a received document is not
    encoded a second time to look for surrogates (a quarter of validating one)."""
    from protocol import document_rules
    content = encode_content(NOTICE, DATA)

    def scanned(value: str) -> bool:
        raise AssertionError(f"scanned {value[:10]!r}... again")

    monkeypatch.setattr(document_rules, "is_unicode_text", scanned)
    assert decode_content(content) == (NOTICE, DATA)


def test_two_attachments_with_one_address_must_carry_the_same_bytes():
    same = change(attachments=(attachment("a.pdf", PDF), attachment("b.pdf", PDF)))
    content = unpack(encode_content(same, DATA), CONTENT_LIMITS)
    assert decode_content(pack(content)) == (same, DATA)
    first, second = content["att"]
    with pytest.raises(InvalidDocument, match="'b.pdf' does not match its SHA-256"):
        decode_content(pack({**content, "att": [first, {**second, "d": b"X" * len(PDF)}]}))


# --- strict decoding -----------------------------------------------------------------

def _content() -> dict:
    return dict(unpack(encode_content(NOTICE, DATA), CONTENT_LIMITS))


@pytest.mark.parametrize("mutate, error, match", [
    (lambda c: c.pop("ti"), Malformed, "missing field 'ti'"),
    (lambda c: c.pop("dl"), Malformed, "missing field 'dl'"),
    (lambda c: c.update(extra=1), Malformed, "unknown field"),
    (lambda c: c.update(ti=b"bytes"), Malformed, "'ti' must be a string"),
    (lambda c: c.update(dl="tomorrow"), Malformed, "'dl' must be an integer"),
    (lambda c: c.update(dl=True), Malformed, "'dl' must be an integer"),
    (lambda c: c.update(re="x" * 16), Malformed, "'re' must be binary"),
    (lambda c: c.update(to=["gd.chaozhou", 1]), Malformed, "'to' must be an array of strings"),
    (lambda c: c.update(att=[{"n": "a"}]), Malformed, "attachment #1: missing field"),
    (lambda c: c.update(att=[{**c["att"][0], "x": 1}]), Malformed, "unknown field"),
    (lambda c: c.update(att=["a.pdf"]), Malformed, "expected a map"),
    (lambda c: c.update(v=2), UnsupportedVersion, "version 2"),
    (lambda c: c.update(ti=""), InvalidDocument, "标题 title is required"),
    (lambda c: c.update(k="命令书"), InvalidDocument, "文种 kind"),
    (lambda c: c.update(cl="绝密"), InvalidDocument, "绝密"),
    (lambda c: c.update(iid="gd.chaozhou"), InvalidDocument, "发文节点 issuer_id"),
    (lambda c: c.update(cc=["gd.x", "gd.x"]), InvalidDocument, "抄送机关 cc_recipients"),
    (lambda c: c.update(re=b"\x00" * 15), InvalidDocument, "所复公文 in_reply_to"),
    (lambda c: c.update(att=[{**c["att"][0], "n": "a/b"}]), InvalidDocument, "'/'"),
    (lambda c: c.update(att=[c["att"][0]] * 65), InvalidDocument, "附件 attachments number 65"),
])
def test_decoding_refuses_wrong_shapes_and_broken_rules(mutate, error, match):
    content = _content()
    mutate(content)
    with pytest.raises(error, match=match):
        decode_content(pack(content))


def test_decoding_refuses_non_maps_and_over_limits():
    with pytest.raises(Malformed, match="expected a map"):
        decode_content(pack(["ti"]))
    with pytest.raises(Malformed):
        decode_content(b"")
    with pytest.raises(Malformed):
        decode_content("not bytes")
    with pytest.raises(ProtocolError) as caught:
        decode_content(b"\x00" * (documents.MAX_CONTENT_BYTES + 1))
    assert caught.value.code == "too_large"
    nested = pack({**_content(), "nt": [[["deep"]]]})
    with pytest.raises(Malformed, match="nested deeper"):
        decode_content(nested)


def test_encoding_refuses_content_over_the_frame_budget():
    # Every field within its own limit, together too big to seal into one frame.
    doc = change(body="\U00020000" * MAX_BODY_CHARS,
                 attachments=(Attachment("big", "a/b", hashlib.sha256(
                     bytes(MAX_ATTACHMENTS_BYTES)).digest(), MAX_ATTACHMENTS_BYTES),),
                 notes="\U00020000" * 2000,
                 main_recipients=tuple(f"gd.{'r' * 28}{n:04d}" for n in range(4000)))
    with pytest.raises(InvalidDocument, match="内容 content is .* bytes encoded, over the limit"):
        encode_content(doc, {doc.attachments[0].sha256: bytes(MAX_ATTACHMENTS_BYTES)})


@settings(max_examples=300, deadline=None, database=None)
@given(st.binary(max_size=400))
def test_decoding_random_bytes_raises_only_protocol_errors(data):
    try:
        decode_content(data)
    except ProtocolError:
        pass


_GOOD = encode_content(NOTICE, DATA)


@settings(max_examples=300, deadline=None, database=None)
@given(st.integers(0, len(_GOOD) - 1), st.integers(0, 255), st.booleans())
def test_truncated_or_altered_content_raises_only_protocol_errors(at, byte, truncate):
    data = _GOOD[:at] if truncate else _GOOD[:at] + bytes([byte]) + _GOOD[at + 1:]
    try:
        decode_content(data)
    except ProtocolError:
        pass
    if truncate:
        with pytest.raises(ProtocolError):
            decode_content(data)


@fast
@given(st.dictionaries(st.sampled_from(list(_content())),
                       st.one_of(st.none(), st.booleans(), st.integers(-2, 2**64),
                                 st.text(max_size=5), st.binary(max_size=20),
                                 st.lists(st.text(max_size=5), max_size=3)),
                       max_size=6))
def test_fields_of_any_type_raise_only_protocol_errors(replacements):
    content = {**_content(), **replacements}
    try:
        data = msgpack.packb(content, use_bin_type=True)
    except OverflowError:
        return
    try:
        decode_content(data)
    except ProtocolError:
        pass
