"""The document model and its sealed content map (protocol/documents.py, SPEC §5).

This file holds the example notice, the document strategy and the helpers the other
document tests import, and covers round trips, the validation rules (each refusal
naming its field) and normalised document numbers; attachment data and the strict
decoding of content are in tests/test_documents_content.py.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import documents
from protocol.documents import (CONTENT_LIMITS, KINDS, MAX_ATTACHMENTS_BYTES, MAX_BODY_CHARS,
                                Attachment, Document, decode_content, encode_content,
                                normalise_doc_number, validate_attachment_limit,
                                validate_document)
from protocol.errors import InvalidDocument
from protocol.wire import pack, unpack

fast = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def attachment(name: str, data: bytes, media_type: str = "application/pdf") -> Attachment:
    return Attachment(name, media_type, hashlib.sha256(data).digest(), len(data))


PDF = b"%PDF-1.7 ..."
NOTICE = Document(
    doc_id=bytes(range(16)),
    title="关于做好2026年元旦春节期间有关工作的通知",
    kind="通知",
    issuer="广东省人民政府办公厅",
    issuer_id="gd",
    main_recipients=("gd.chaozhou", "gd.shantou"),
    cc_recipients=("gd.chaozhou.raoping",),
    doc_number="粤府办〔2025〕12号",
    urgency="特急",
    classification="秘密",
    secrecy_period="1年",
    copy_number="000001",
    signer="张三",
    body="各地级以上市人民政府：\n\n　　现将有关事项通知如下。\n",
    attachments=(attachment("附件1：值班表.pdf", PDF),),
    notes="（联系人：李四，电话：020-12345678）",
    written_date="2025-12-30",
    printed_by="广东省人民政府办公厅",
    printed_date="2025-12-31",
    deadline=1_767_225_600_000 + 7 * 86_400_000,
    created_at=1_767_225_600_000,
)
DATA = {hashlib.sha256(PDF).digest(): PDF}


def change(**fields) -> Document:
    return dataclasses.replace(NOTICE, **fields)


def refused(doc: Document, *label: str) -> str:
    """The detail of validate_document's refusal, checked to name every ``label``."""
    with pytest.raises(InvalidDocument) as caught:
        validate_document(doc)
    assert caught.value.code == "invalid_document" and caught.value.http_status == 400
    for part in label:
        assert part in caught.value.detail, caught.value.detail
    return caught.value.detail


# --- round trips --------------------------------------------------------------------

def test_the_example_notice_round_trips():
    content = encode_content(NOTICE, DATA)
    assert decode_content(content) == (NOTICE, DATA)
    assert validate_document(NOTICE) == NOTICE


def test_keys_on_the_wire_are_the_spec_table():
    content = unpack(encode_content(NOTICE, DATA), CONTENT_LIMITS)
    assert list(content) == ["v", "id", "ti", "k", "is", "iid", "to", "cc", "no", "u", "cl",
                             "sp", "cn", "sg", "bd", "att", "nt", "wd", "pb", "pd", "dl",
                             "re", "at"]
    assert list(content["att"][0]) == ["n", "mt", "h", "sz", "d"]
    assert content["v"] == 1 and content["re"] is None and content["att"][0]["d"] == PDF


def test_every_content_key_is_in_the_spec():
    spec = (documents.__file__.rsplit("/", 1)[0] + "/SPEC.md")
    with open(spec, encoding="utf-8") as handle:
        section = handle.read().split("### Document content", 1)[1].split("## 6.", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \|", section, flags=re.MULTILINE))
    content = unpack(encode_content(NOTICE, DATA), CONTENT_LIMITS)
    assert listed == set(content) | set(content["att"][0])


_CJK = st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF)
_LINE = st.text(st.one_of(_CJK, st.sampled_from("ABCxyz0123456789〔〕（）·—、")), min_size=1,
                max_size=40)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=200)
_SEGMENTS = st.sampled_from(["chaozhou", "shantou", "raoping", "nanao", "fin", "edu", "x1"])
_NODE_IDS = st.lists(_SEGMENTS, min_size=0, max_size=3).map(lambda rest: ".".join(["gd", *rest]))
_DATES = st.dates().map(datetime.date.isoformat) | st.just("")
_TIMES = st.integers(0, 2**63 - 1)
_DOC_IDS = st.binary(min_size=16, max_size=16)


@st.composite
def documents_with_data(draw: st.DrawFn) -> tuple[Document, dict[bytes, bytes]]:
    nodes = draw(st.lists(_NODE_IDS, min_size=2, max_size=8, unique=True))
    split = draw(st.integers(2, len(nodes)))
    kind = draw(st.sampled_from(KINDS))
    classification = draw(st.sampled_from(documents.CLASSIFICATIONS))
    files = draw(st.lists(st.tuples(_LINE, st.binary(max_size=64)), max_size=4,
                          unique_by=lambda item: item[0]))
    doc_id = draw(_DOC_IDS)
    reply_to = draw(st.none() | _DOC_IDS.filter(lambda other: other != doc_id))
    if kind == "批复" and reply_to is None:
        reply_to = bytes(16) if doc_id != bytes(16) else b"\x01" * 16
    doc = Document(
        doc_id=doc_id,
        title=draw(_LINE),
        kind=kind,
        issuer=draw(_LINE),
        issuer_id=nodes[0],
        main_recipients=tuple(nodes[1:split]),
        cc_recipients=tuple(nodes[split:]),
        doc_number=draw(_LINE | st.just("")),
        urgency=draw(st.sampled_from(("", *documents.URGENCIES))),
        classification=classification,
        secrecy_period=draw(st.sampled_from(["1年", "长期", "6个月"])) if classification else "",
        copy_number=draw(st.from_regex(r"[0-9]{0,6}", fullmatch=True)),
        signer=draw(_LINE) if kind == "请示" else draw(_LINE | st.just("")),
        body=draw(_TEXT),
        attachments=tuple(attachment(name, data, draw(st.sampled_from(
            ["application/pdf", "application/ofd", "image/png", "text/plain"])))
            for name, data in files),
        notes=draw(_TEXT),
        written_date=draw(_DATES),
        printed_by=draw(_LINE | st.just("")),
        printed_date=draw(_DATES),
        deadline=draw(st.none() | _TIMES),
        in_reply_to=reply_to,
        created_at=draw(_TIMES),
    )
    return doc, {hashlib.sha256(data).digest(): data for _, data in files}


@fast
@given(documents_with_data())
def test_valid_documents_round_trip(item):
    doc, data = item
    assert validate_document(doc) == doc
    content = encode_content(doc, data)
    assert decode_content(content) == (doc, data)
    assert encode_content(*decode_content(content)) == content  # one encoding


def test_validation_strips_one_line_fields_and_makes_tuples():
    doc = change(title="  标题  ", issuer="\u3000广东省人民政府办公厅\n", signer=" 张三 ",
                 main_recipients=["gd.chaozhou"], cc_recipients=[], attachments=[])
    valid = validate_document(doc)
    assert (valid.title, valid.issuer, valid.signer) == ("标题", "广东省人民政府办公厅", "张三")
    assert valid.main_recipients == ("gd.chaozhou",) and valid.attachments == ()
    assert decode_content(encode_content(doc, {}))[0] == valid


def test_a_body_of_a_million_cjk_characters_fits_and_one_more_does_not():
    body = "中" * MAX_BODY_CHARS  # 3,000,000 bytes of UTF-8
    doc = change(body=body, attachments=())
    assert decode_content(encode_content(doc, {}))[0].body == body
    wide = change(body="\U00020000" * MAX_BODY_CHARS, attachments=())  # 4 bytes each
    assert decode_content(encode_content(wide, {}))[0] == wide
    refused(change(body=body + "中"), "正文 body", "1000001 characters")
    content = unpack(encode_content(doc, {}), CONTENT_LIMITS)
    with pytest.raises(InvalidDocument, match="正文 body"):
        decode_content(pack({**content, "bd": body + "中"}))


def test_attachments_at_the_protocol_limit_round_trip():
    big = bytes(MAX_ATTACHMENTS_BYTES // 2)
    files = (attachment("a.pdf", big), attachment("b.pdf", big))
    doc = change(attachments=files)
    content = encode_content(doc, {files[0].sha256: big})
    assert decode_content(content) == (doc, {files[0].sha256: big})


# --- refusals, each naming its field -------------------------------------------------

@pytest.mark.parametrize("fields, label", [
    ({"title": ""}, "标题 title is required"),
    ({"title": " \u3000\n"}, "标题 title is required"),
    ({"title": "长" * 501}, "标题 title is 501 characters"),
    ({"title": "一\n二"}, "标题 title must be one line"),
    ({"title": "通知\u202e知通"}, "标题 title must be one line without control characters or "
                                 "bidirectional overrides"),
    ({"doc_number": "粤府办\u2066〔2025〕12号\u2069"}, "发文字号 doc_number must be one line"),
    ({"title": None}, "标题 title must be a string"),
    ({"title": "\ud800"}, "标题 title contains a lone surrogate"),
    ({"kind": "通知书"}, "文种 kind must be one of the 15 kinds"),
    ({"issuer": ""}, "发文机关 issuer is required"),
    ({"issuer": "省" * 201}, "发文机关 issuer is 201 characters"),
    ({"issuer_id": "GD"}, "发文节点 issuer_id is not a valid node id"),
    ({"issuer_id": "gd.chaozhou"}, "发文节点 issuer_id gd.chaozhou is also a recipient"),
    ({"issuer_id": "gd.chaozhou.raoping"}, "发文节点 issuer_id"),
    ({"main_recipients": ()}, "主送机关 main_recipients needs at least one recipient"),
    ({"main_recipients": ("gd.x", "gd.x")}, "主送机关 main_recipients lists gd.x twice"),
    ({"main_recipients": ("gd..x",)}, "主送机关 main_recipients is not a valid node id"),
    ({"main_recipients": "gd.x"}, "主送机关 main_recipients must be a tuple"),
    ({"cc_recipients": ("gd.y", "gd.y")}, "抄送机关 cc_recipients lists gd.y twice"),
    ({"cc_recipients": ("gd.shantou",)}, "抄送机关 cc_recipients lists gd.shantou, already a main"),
    ({"cc_recipients": (b"gd.y",)}, "抄送机关 cc_recipients is not a valid node id"),
    ({"doc_number": "号" * 101}, "发文字号 doc_number is 101 characters"),
    ({"urgency": "急"}, "紧急程度 urgency must be one of"),
    ({"classification": "内部"}, "密级 classification must be one of"),
    ({"classification": "", "secrecy_period": "1年"}, "保密期限 secrecy_period is set"),
    ({"secrecy_period": "年" * 21}, "保密期限 secrecy_period is 21 characters"),
    ({"copy_number": "No.1"}, "份号 copy_number must be digits"),
    ({"copy_number": "０００００１"}, "份号 copy_number must be digits"),
    ({"copy_number": "1" * 21}, "份号 copy_number is 21 characters"),
    ({"kind": "请示", "signer": " "}, "签发人 signer is required for a 请示"),
    ({"signer": "签" * 101}, "签发人 signer is 101 characters"),
    ({"body": "a\x00b"}, "正文 body must not contain NUL"),
    ({"notes": "注" * 2001}, "附注 notes is 2001 characters"),
    ({"written_date": "2025-02-29"}, "成文日期 written_date is not a real date"),
    ({"written_date": "0000-01-01"}, "成文日期 written_date is not a real date"),
    ({"written_date": "2025-13-01"}, "成文日期 written_date is not a real date"),
    ({"written_date": "2025-1-1"}, "成文日期 written_date must be a date YYYY-MM-DD"),
    ({"written_date": "２０２５-01-01"}, "成文日期 written_date must be a date YYYY-MM-DD"),
    ({"printed_date": "2025年12月31日"}, "印发日期 printed_date must be a date"),
    ({"printed_by": "印\t发"}, "印发机关 printed_by must be one line"),
    ({"deadline": -1}, "办理时限 deadline must be in"),
    ({"deadline": True}, "办理时限 deadline must be an integer"),
    ({"created_at": 2**63}, "创建时间 created_at must be in"),
    ({"created_at": 1.5}, "创建时间 created_at must be an integer"),
    ({"doc_id": b"short"}, "公文标识 doc_id must be 16 bytes, got 5"),
    ({"doc_id": "0" * 16}, "公文标识 doc_id must be 16 bytes, not str"),
    ({"in_reply_to": b"x" * 17}, "所复公文 in_reply_to must be 16 bytes"),
    ({"in_reply_to": bytes(range(16))}, "所复公文 in_reply_to cannot be the document itself"),
    ({"kind": "批复"}, "所复公文 in_reply_to is required for a 批复: it answers a 请示"),
    ({"attachments": (PDF,)}, "附件 attachment #1 must be an Attachment"),
    ({"attachments": (attachment("a", b""),) * 65}, "附件 attachments number 65"),
    ({"attachments": (attachment("a.pdf", b"1"), attachment("a.pdf", b"2"))},
     "附件 attachment 'a.pdf' is listed twice"),
    ({"attachments": (attachment("", b""),)}, "附件 attachment #1 名称 name is required"),
    ({"attachments": (attachment("名" * 256, b""),)}, "名称 name is 256 characters"),
    ({"attachments": (attachment("../etc/passwd", b""),)}, "must not contain '/'"),
    ({"attachments": (attachment("a\\b.pdf", b""),)}, "must not contain '/'"),
    ({"attachments": (attachment("a\x00.pdf", b""),)}, "NUL"),
    ({"attachments": (attachment("报告\u202efdp.exe", b""),)}, "bidirectional overrides"),
    ({"attachments": (attachment("..", b""),)}, "'.' and '..' are not file names"),
    ({"attachments": (attachment("a.pdf", b"", "pdf"),)}, "类型 media_type must be type/subtype"),
    ({"attachments": (attachment("a.pdf", b"", "a/" + "b" * 126),)}, "类型 media_type"),
    ({"attachments": (Attachment("a.pdf", "application/pdf", b"1" * 31, 0),)},
     "sha256 must be 32 bytes, got 31 bytes"),
    ({"attachments": (Attachment("a.pdf", "application/pdf", bytes(32), -1),)},
     "size must be a non-negative integer"),
    ({"attachments": (Attachment("big.pdf", "application/pdf", bytes(32),
                                 MAX_ATTACHMENTS_BYTES + 1),)},
     f"附件 attachment 'big.pdf' is {MAX_ATTACHMENTS_BYTES + 1} bytes, over the limit of "
     f"{MAX_ATTACHMENTS_BYTES}"),
    ({"attachments": (Attachment("a", "a/b", bytes(32), MAX_ATTACHMENTS_BYTES),
                      Attachment("b", "a/b", bytes(32), 1))},
     f"附件 attachments total {MAX_ATTACHMENTS_BYTES + 1} bytes"),
])
def test_each_rule_refuses_with_the_field_named(fields, label):
    refused(change(**fields), label)


def test_right_to_left_marks_are_allowed_for_uyghur_and_other_scripts():
    title = "\u0626\u06c7\u0642\u062a\u06c7\u0631\u06c7\u0634 \u200f2025\u200e"
    assert validate_document(change(title=title)).title == title


def test_top_secret_is_refused_by_name():
    detail = refused(change(classification="绝密"), "密级 classification", "绝密")
    assert "never carried" in detail


def test_refusing_a_non_document():
    with pytest.raises(InvalidDocument, match="expected a Document"):
        validate_document({"title": "x"})


def test_the_node_applies_its_own_lower_attachment_limit():
    doc = validate_document(NOTICE)
    validate_attachment_limit(doc, len(PDF))
    with pytest.raises(InvalidDocument,
                       match=re.escape(f"附件 attachment '附件1：值班表.pdf' is {len(PDF)} bytes, "
                                       f"over the limit of {len(PDF) - 1}")):
        validate_attachment_limit(doc, len(PDF) - 1)
    two = validate_document(change(attachments=(attachment("a", b"12"), attachment("b", b"34"))))
    with pytest.raises(InvalidDocument, match="附件 attachments total 4 bytes, over the limit of 3"):
        validate_attachment_limit(two, 3)


# --- document numbers for search -------------------------------------------------------

@pytest.mark.parametrize("written", [
    "粤府办〔2013〕12号", "粤府办[2013]12号", "粤府办（2013）12号", "粤府办(2013)12号",
    "粤府办［2013］12号", "粤府办【2013】12号", "粤府办﹝2013﹞12号", " 粤府办 〔2013〕 12号 ",
    "粤府办\u3000[２０１３]１２号",
])
def test_document_number_variants_normalise_equal(written):
    assert normalise_doc_number(written) == "粤府办〔2013〕12号"


def test_document_number_normal_form_is_stable_and_keeps_other_text():
    assert normalise_doc_number("") == ""
    assert normalise_doc_number("国办函〔2024〕5号") == "国办函〔2024〕5号"
    assert normalise_doc_number("粤府办〔2013〕12号") != normalise_doc_number("粤府办〔2013〕13号")
    with pytest.raises(InvalidDocument):
        normalise_doc_number(None)


@fast
@given(st.text(max_size=30))
def test_normalising_twice_changes_nothing(text):
    once = normalise_doc_number(text)
    assert normalise_doc_number(once) == once


def test_reply_kinds_come_from_the_workflow_table():
    from protocol import workflow
    assert documents.REPLY_KIND is workflow.REPLY_KIND
    assert documents.REPLY_KINDS == {"批复"}
    assert len(KINDS) == len(set(KINDS)) == 15
