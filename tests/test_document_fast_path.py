"""``validate_document``'s bulk fast path agrees with its field-by-field path
(protocol/document_rules.py): the fast path says yes only to documents the
field-by-field path returns unchanged, and it does say yes to ordinary ones."""

from __future__ import annotations

import dataclasses

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.document_model import (MAX_BODY_CHARS, MAX_COPY_NUMBER_CHARS,
                                     MAX_DOC_NUMBER_CHARS, MAX_NAME_CHARS, MAX_NOTES_CHARS,
                                     MAX_SECRECY_PERIOD_CHARS, MAX_SIGNER_CHARS,
                                     MAX_TITLE_CHARS)
from protocol.document_rules import _already_normal, _validate_field_by_field
from protocol.documents import Document, validate_document
from protocol.errors import InvalidDocument
from test_documents import NOTICE, PDF, attachment, documents_with_data, fast

# Many examples: a rule the fast path forgets may show in only a few of them.
thorough = settings(max_examples=600, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


class Text(str):
    """A str subclass: valid text, but never kept as it is."""


def _too_long(limit: int) -> st.SearchStrategy[str]:
    return st.sampled_from(["长" * (limit + 1), "1" * (limit + 1)])


_ODD_TEXTS = [
    "", " ", "\u3000", " 标题", "标题 ", "标题\n", "一\n二", "a\tb", "a\x85b", "a\u2028b",
    "a\u202eb", "\u2066a\u2069", "a\u200fb",
    "\ud800", "a\udfffb", "a\x00b", "绝密", "秘密", "通知", "批复", "请示", "特急", "急",
    "000001", "１", "12a", "2025-02-29", "2024-02-29", "0000-01-01", "9999-12-31",
    "2025-13-01", "2025-1-1", "gd", "gd.chaozhou", "GD", "gd..x",
    Text("标题"), Text("通知"), Text(""), Text("gd.x")]
class Tuple(tuple):
    """A tuple subclass: never kept as it is."""


class Agreeable(tuple):
    """A tuple that says it equals anything."""

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = tuple.__hash__


_ODD_OTHERS = [None, 5, -1, 2**63, True, 1.5, b"x", b"0" * 16, (), ["gd.x"], ("gd.x", "gd.x"),
               ("gd.x", "gd"), (Text("gd.x"),), ("gd.chaozhou",), Tuple(), Tuple(("gd.x",)),
               Agreeable(), Agreeable((attachment("../x", PDF),) * 2)]
_ODD_TEXT = st.sampled_from(_ODD_TEXTS) | st.text(max_size=8)
_ODD_VALUE = _ODD_TEXT | st.sampled_from(_ODD_OTHERS)
_LIMITS = {"title": MAX_TITLE_CHARS, "issuer": MAX_NAME_CHARS,
           "doc_number": MAX_DOC_NUMBER_CHARS, "secrecy_period": MAX_SECRECY_PERIOD_CHARS,
           "signer": MAX_SIGNER_CHARS, "printed_by": MAX_NAME_CHARS,
           "copy_number": MAX_COPY_NUMBER_CHARS, "notes": MAX_NOTES_CHARS}
_FIELDS = [field.name for field in dataclasses.fields(Document)]


@st.composite
def odd_values(draw: st.DrawFn, field: str, doc: Document) -> object:
    """A value for ``field`` of the valid ``doc`` that may break a rule, or need
    normalising, or be fine."""
    choices = [_ODD_VALUE]
    if field in _LIMITS:
        choices.append(_too_long(_LIMITS[field]))
    if field == "body":
        choices.append(st.just("正" * (MAX_BODY_CHARS + 1)))
    if field in ("main_recipients", "cc_recipients"):
        choices.append(st.lists(_ODD_TEXT | st.just(doc.issuer_id), max_size=3).map(tuple))
        choices.append(st.just(doc.main_recipients + doc.cc_recipients))
    if field in ("in_reply_to", "doc_id"):
        choices.append(st.sampled_from([doc.doc_id, doc.in_reply_to, bytes(15), None]))
    if field in ("deadline", "created_at"):
        choices.append(st.integers(-2, 2**63 + 1))
    if field == "attachments":
        choices.append(st.sampled_from([
            [attachment("a.pdf", PDF)], (attachment("a.pdf", PDF),) * 2,
            (attachment("", PDF),), (attachment("a/b.pdf", PDF),),
            (attachment("a.pdf", PDF, "pdf"),), (PDF,),
            (dataclasses.replace(attachment("a.pdf", PDF), name=Text("a.pdf")),),
            (dataclasses.replace(attachment("a.pdf", PDF), size=13 * 1024 * 1024),)]))
    return draw(st.one_of(choices))


@st.composite
def near_valid_documents(draw: st.DrawFn) -> Document:
    """A valid document with one to three fields changed to something odd."""
    valid = draw(st.sampled_from([NOTICE]) | documents_with_data().map(lambda item: item[0]))
    fields = draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=3))
    return dataclasses.replace(valid, **{field: draw(odd_values(field, valid))
                                         for field in fields})


def _refused_for_size(outcome: object) -> bool:
    """The attachment size limit: ``validate_document`` checks it after either path."""
    return isinstance(outcome, str) and outcome.startswith("附件 attachment") and \
        "over the limit of" in outcome


def _outcome(validate, doc: Document) -> object:
    try:
        return validate(doc)
    except InvalidDocument as refusal:
        return refusal.detail


@thorough
@given(near_valid_documents())
def test_the_fast_path_says_yes_only_to_what_the_full_check_keeps_unchanged(doc):
    expected, got = _outcome(_validate_field_by_field, doc), _outcome(validate_document, doc)
    if _already_normal(doc):
        assert expected is doc or _refused_for_size(expected)
    assert got == expected  # the same normalised document, or the same refusal
    assert (got is doc) == (expected is doc)


@fast
@given(documents_with_data())
def test_ordinary_documents_take_the_fast_path(item):
    doc, _ = item
    assert _already_normal(doc)
    assert validate_document(doc) is doc


def test_the_reference_notice_takes_the_fast_path():
    assert _already_normal(NOTICE)


# Valid documents whose rules interact with a field: a 请示 needs its 签发人, a 批复 its
# in_reply_to, a 保密期限 its 密级, an issuer must not be a recipient.
_BASES = [NOTICE,
          dataclasses.replace(NOTICE, kind="请示", attachments=()),
          dataclasses.replace(NOTICE, kind="批复", in_reply_to=bytes(16), signer=""),
          Document(doc_id=bytes(16), title="函", kind="函", issuer="县", issuer_id="gd.a.b",
                   main_recipients=("gd.c",), created_at=0)]


def _field_specific(field: str, doc: Document) -> list[object]:
    values: list[object] = []
    if field in _LIMITS:
        limit = _LIMITS[field]
        values += ["长" * limit, "长" * (limit + 1), "1" * limit, "1" * (limit + 1)]
    if field == "body":
        values += ["正" * MAX_BODY_CHARS, "正" * (MAX_BODY_CHARS + 1)]
    if field in ("main_recipients", "cc_recipients"):
        values += [(doc.issuer_id,), doc.main_recipients + doc.cc_recipients]
    if field in ("in_reply_to", "doc_id"):
        values += [doc.doc_id, doc.in_reply_to, bytes(15), bytes(17)]
    if field in ("deadline", "created_at"):
        values += [0, 2**63 - 1, 2**63, -1]
    return values


def test_every_odd_value_of_every_field_gets_the_same_answer_both_ways():
    """Exhaustive over one changed field at a time: what the random test above meets
    only now and then (a NUL in the body, a 请示 without its 签发人) is met here."""
    checked = 0
    for base in _BASES:
        for field in _FIELDS:
            for value in _ODD_TEXTS + _ODD_OTHERS + _field_specific(field, base):
                doc = dataclasses.replace(base, **{field: value})
                expected = _outcome(_validate_field_by_field, doc)
                if _already_normal(doc):
                    assert expected is doc or _refused_for_size(expected), (field, value)
                got = _outcome(validate_document, doc)
                assert got == expected and (got is doc) == (expected is doc), (field, value)
                checked += 1
    assert checked > 3000


# --- utf8_decoded: the received-document path, which skips the surrogate scan ----------

def _has_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, (tuple, list)):
        return any(map(_has_surrogate, value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_has_surrogate(getattr(value, item.name))
                   for item in dataclasses.fields(value))
    return False


def test_every_odd_value_without_a_surrogate_gets_the_same_answer_as_utf8_decoded():
    """What UTF-8 can carry (no lone surrogates) is judged alike with and without the
    scan the received-document path leaves out."""
    checked = 0
    for base in _BASES:
        for field in _FIELDS:
            for value in _ODD_TEXTS + _ODD_OTHERS + _field_specific(field, base):
                doc = dataclasses.replace(base, **{field: value})
                if _has_surrogate(doc):
                    continue
                assert _already_normal(doc, utf8_decoded=True) == _already_normal(doc), \
                    (field, value)
                expected = _outcome(validate_document, doc)
                got = _outcome(lambda d: validate_document(d, utf8_decoded=True), doc)
                assert got == expected and (got is doc) == (expected is doc), (field, value)
                checked += 1
    assert checked > 3000


@thorough
@given(near_valid_documents())
def test_utf8_decoded_changes_nothing_for_what_utf8_can_carry(doc):
    if _has_surrogate(doc):
        return
    assert _already_normal(doc, utf8_decoded=True) == _already_normal(doc)
    assert _outcome(lambda d: validate_document(d, utf8_decoded=True), doc) == \
        _outcome(validate_document, doc)


def test_the_scan_utf8_decoded_leaves_out_is_what_finds_surrogates():
    """The flag is a promise: a string with a lone surrogate never comes out of a strict
    UTF-8 decode (such content is refused: tests/test_documents_content.py and
    tests/test_wire_hostile.py), and only the surrogate scan tells one apart."""
    doc = dataclasses.replace(NOTICE, body="正文\ud800")
    assert not _already_normal(doc)
    assert _already_normal(doc, utf8_decoded=True)
