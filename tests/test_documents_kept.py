"""How a node keeps a document (protocol/documents.py: encode_kept_content and friends),
validation that copies nothing when there is nothing to normalise, and the sender's
stamped copy of a draft (node/sending.py)."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest
from hypothesis import given

from protocol.document_model import document_from_fields
from protocol.documents import (Document, decode_content, decode_content_to_keep,
                                decode_kept_content, encode_content, encode_kept_content,
                                validate_document)
from protocol.errors import UnsupportedVersion
from protocol.wire import pack

from node.sending import _stamped
from node.store.document_store import decode_metadata
from tests.test_documents import DATA, NOTICE, documents_with_data, fast

PLAIN = dataclasses.replace(NOTICE, attachments=())


# --- validation copies only what it normalises --------------------------------------

def test_a_document_already_normal_is_returned_as_it_is():
    assert validate_document(NOTICE) is NOTICE


class _Text(str):
    """A str subclass: validation must hand back exact str, never this."""


@pytest.mark.parametrize("fields", [
    {"title": " " + NOTICE.title},
    {"kind": _Text(NOTICE.kind)},
    {"main_recipients": list(NOTICE.main_recipients)},
    {"cc_recipients": (_Text("gd.chaozhou.raoping"),)},
    {"attachments": list(NOTICE.attachments)},
    {"attachments": (dataclasses.replace(NOTICE.attachments[0],
                                         name=_Text(NOTICE.attachments[0].name)),)},
    {"written_date": _Text(NOTICE.written_date)},
])
def test_a_document_that_needs_normalising_is_copied(fields):
    doc = dataclasses.replace(NOTICE, **fields)
    valid = validate_document(doc)
    assert valid is not doc and valid == NOTICE
    assert type(valid.kind) is str and type(valid.written_date) is str
    assert all(type(node_id) is str for node_id in valid.main_recipients + valid.cc_recipients)
    assert type(valid.main_recipients) is tuple and type(valid.attachments) is tuple
    assert type(valid.attachments[0].name) is str


def test_a_stamped_draft_is_what_replace_makes_and_the_draft_is_left_alone():
    draft = dataclasses.replace(NOTICE, created_at=0, issuer_id="gd.x")
    stamped = _stamped(draft, created_at=5, issuer_id="gd")
    assert stamped == dataclasses.replace(draft, created_at=5, issuer_id="gd")
    assert (draft.created_at, draft.issuer_id) == (0, "gd.x")
    assert type(stamped) is Document and validate_document(stamped) is stamped
    with pytest.raises(dataclasses.FrozenInstanceError):
        stamped.title = "changed"

    class Draft(Document):
        pass

    odd = Draft(**{field.name: getattr(draft, field.name)
                   for field in dataclasses.fields(Document)})
    assert type(_stamped(odd, created_at=5)) is Draft  # anything else: replace() itself


def test_a_document_from_its_fields_is_the_one_init_makes_and_as_frozen():
    values = {field.name: getattr(NOTICE, field.name) for field in dataclasses.fields(Document)}
    made = document_from_fields(values)
    assert made == NOTICE and type(made) is Document and hash(made) == hash(NOTICE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.title = "changed"
    with pytest.raises(TypeError, match=r"Document fields missing: \['title'\]"):
        document_from_fields({key: value for key, value in values.items() if key != "title"})
    with pytest.raises(TypeError, match=r"not Document fields: \['colour'\]"):
        document_from_fields({**values, "colour": "red"})
    assert not hasattr(Document, "__post_init__")  # which document_from_fields would skip


# --- the kept form -------------------------------------------------------------------

def test_a_document_without_attachments_is_kept_as_the_bytes_it_travelled_in():
    content = encode_content(PLAIN, {})
    document, data, kept = decode_content_to_keep(content)
    assert (document, data) == (PLAIN, {})
    assert kept is content  # nothing encoded again
    assert decode_kept_content(kept) == PLAIN


def test_attachment_bytes_are_left_out_of_the_kept_form():
    content = encode_content(NOTICE, DATA)
    document, data, kept = decode_content_to_keep(content)
    assert (document, data) == (NOTICE, DATA)
    assert kept == encode_kept_content(NOTICE)
    assert len(kept) < len(content) and next(iter(DATA.values())) not in kept
    assert [set(item) for item in msgpack.unpackb(kept)["att"]] == [{"n", "mt", "h", "sz"}]
    assert decode_kept_content(kept) == NOTICE


def test_content_that_validation_normalised_is_kept_normalised():
    # A sender that did not strip its title: what it sent is not what is kept.
    raw = msgpack.unpackb(encode_content(PLAIN, {}))
    raw["ti"] = "  " + raw["ti"] + "  "
    document, _, kept = decode_content_to_keep(pack(raw))
    assert document == PLAIN
    assert decode_kept_content(kept) == PLAIN


def test_bytes_hidden_under_a_repeated_key_are_never_kept():
    # msgpack keeps the last of a repeated key: a first "nt" carrying a megabyte is read
    # past, and the map still has exactly the right keys. Those bytes must not be kept.
    plain = encode_content(PLAIN, {})
    hidden = b"\xa2nt" + b"\xc6" + (1 << 20).to_bytes(4, "big") + bytes(1 << 20)
    content = b"\xde" + (24).to_bytes(2, "big") + hidden + plain[3:]
    document, _, kept = decode_content_to_keep(content)
    assert document == PLAIN
    assert len(kept) < 2048 and kept == encode_kept_content(PLAIN)


def test_a_kept_document_of_another_content_version_is_not_misread():
    raw = msgpack.unpackb(encode_kept_content(PLAIN))
    with pytest.raises(UnsupportedVersion):
        decode_kept_content(pack({**raw, "v": 2}))


@fast
@given(documents_with_data())
def test_every_valid_document_is_kept_and_read_back_unchanged(item):
    doc, data = item
    valid = validate_document(doc)
    assert decode_kept_content(encode_kept_content(valid)) == valid
    assert decode_kept_content(decode_content_to_keep(encode_content(doc, data))[2]) == valid
    assert decode_content(encode_content(doc, data))[0] == valid


def test_documents_stored_before_the_kept_form_still_read():
    # The earlier local format: the dataclass fields by name, attachments as maps.
    fields = {field.name: getattr(NOTICE, field.name) for field in dataclasses.fields(Document)}
    fields["attachments"] = [dataclasses.asdict(item) for item in NOTICE.attachments]
    assert decode_metadata(msgpack.packb(fields, use_bin_type=True)) == NOTICE
    assert decode_metadata(encode_kept_content(NOTICE)) == NOTICE
