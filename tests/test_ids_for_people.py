"""Ids as people and stores meet them (node/clock.py). A document is found by typing the
first hex digits of its id (``govnode doc sign-for 3fa2``), so document ids are all
random; frame ids are time-ordered, so that stores keyed by them grow at the end."""

from __future__ import annotations

from node.clock import new_document_id, new_id, now_ms


def test_documents_made_together_differ_in_their_first_four_hex_digits():
    ids = [new_document_id() for _ in range(64)]
    assert len(set(ids)) == 64
    # Random: 64 draws from 65,536 prefixes are nearly all distinct. Time-ordered ids
    # made within the same millisecond would all share them.
    assert len({doc_id[:2] for doc_id in ids}) > 48


def test_frames_made_together_carry_their_time_first():
    before = now_ms()
    ids = [new_id() for _ in range(64)]
    after = now_ms()
    assert len(set(ids)) == 64
    assert all(before <= int.from_bytes(message_id[:6], "big") <= after for message_id in ids)
    assert ids == sorted(ids, key=lambda message_id: message_id[:6])  # ordered by time
