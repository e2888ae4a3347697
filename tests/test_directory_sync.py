"""Tests for protocol.directory's synchronisation: the merge rule, digests and
reconciliation. Higher sequences replace lower ones, equal bytes are duplicates and
equivocation keeps the lower hash whatever the order; digests follow the spec, stay
the same size and do not depend on insertion order; ``reconcile`` sends and fetches
exactly the records that differ, and one anti-entropy round brings two stores into
sync. The federation and sample records are those of tests/test_directory.py.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.certs import Level
from protocol.directory import (BUCKET_HASH_BYTES, BUCKETS, DIGEST_KINDS, Digest,
                                EndpointAnnouncement, MergeDecision, Outcome, Record,
                                SummaryEntry, bucket_of, decode_record, differing_buckets,
                                digest_of, merge, reconcile, sign_record)
from protocol.errors import Malformed
from test_directory import (CITY, CITY_KEYS, COUNTY, COUNTY_CERT, COUNTY_KEYS_2, ENDPOINT, NOW,
                            OTHER_KEYS, ROOT, STATUS, VALID_RECORDS, beacon, endpoint, enroll,
                            expect, status)

# --- merge rule ---------------------------------------------------------------------------

def test_first_record_for_a_key_is_new():
    decision = merge(None, ENDPOINT)
    assert decision == MergeDecision(Outcome.NEW, ENDPOINT, None)


def test_higher_sequence_replaces_and_lower_is_stale():
    first, second = endpoint(seq=1), endpoint(seq=2, urls=("https://new.example",))
    assert merge(first, second) == MergeDecision(Outcome.NEW, second)
    assert merge(second, first) == MergeDecision(Outcome.STALE, second)


def test_same_bytes_are_a_duplicate():
    again = decode_record(ENDPOINT.encode())
    assert again is not ENDPOINT
    assert merge(ENDPOINT, again) == MergeDecision(Outcome.DUPLICATE, ENDPOINT)


def test_equivocation_keeps_the_lower_hash_whatever_the_order():
    a = endpoint(seq=3, urls=("https://a.example",))
    b = endpoint(seq=3, urls=("https://b.example",))
    winner, loser = (a, b) if a.hash < b.hash else (b, a)
    for current, incoming in ((a, b), (b, a)):
        decision = merge(current, incoming)
        assert decision.outcome is Outcome.EQUIVOCATION
        assert decision.current is winner
        assert decision.evidence is loser
    # The evidence arriving again changes nothing; the winner again is a duplicate.
    assert merge(winner, loser).current is winner
    assert merge(winner, winner).outcome is Outcome.DUPLICATE


def test_equivocating_certificates_with_the_same_serial():
    other = enroll(CITY_KEYS, CITY, COUNTY_KEYS_2, subject=COUNTY, name="饶平县人民政府办公室",
                   level=Level.COUNTY, division="445122", serial=1)
    a, b = Record.of(COUNTY_CERT), Record.of(other)
    assert merge(a, b).outcome is Outcome.EQUIVOCATION
    assert merge(a, b).current == merge(b, a).current == min((a, b), key=lambda r: r.hash)
    assert {merge(a, b).evidence.hash, merge(a, b).current.hash} == {a.hash, b.hash}


# A pool of records for one key: three sequence numbers, three different records each.
MERGE_POOL = [endpoint(seq=seq, urls=(f"https://v{variant}.example",), at=NOW + variant)
              for seq in (1, 2, 3) for variant in range(3)]


def fold(records) -> Record | None:
    current = None
    for record in records:
        current = merge(current, record).current
    return current


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(MERGE_POOL), min_size=1, max_size=12).flatmap(
    lambda chosen: st.tuples(st.just(chosen), st.permutations(chosen))))
def test_merging_in_any_order_ends_with_the_same_current_record(orders):
    chosen, shuffled = orders
    top = max(record.seq for record in chosen)
    expected = min((record for record in chosen if record.seq == top), key=lambda r: r.hash)
    assert fold(chosen) is expected
    assert fold(shuffled) is expected


# --- digests ------------------------------------------------------------------------------

def test_bucket_of_follows_the_spec():
    for kind, subject in (("cert", ROOT), ("endpoint", COUNTY), ("status", "gd.x")):
        key_hash = hashlib.sha256(kind.encode() + b"\x00" + subject.encode()).digest()
        assert bucket_of(kind, subject) == int.from_bytes(key_hash[:4], "big") % 256


def test_digest_buckets_and_root_follow_the_spec():
    records = list(VALID_RECORDS.values())[:3] + [ENDPOINT]
    digest = digest_of(records + [STATUS])
    expected = [0] * BUCKETS
    for record in records:  # status beacons are not in the digest
        expected[bucket_of(*record.key)] ^= int.from_bytes(record.hash[:8], "big")
    assert digest.buckets == tuple(expected)
    assert digest == digest_of(records)
    assert digest.root == hashlib.sha256(digest.encode_buckets()).digest()[:16]
    assert len(digest.root) == 16


def test_empty_digest_is_all_zero():
    digest = digest_of([])
    assert digest.encode_buckets() == bytes(BUCKETS * BUCKET_HASH_BYTES)
    assert digest == Digest((0,) * BUCKETS)


# Records for many keys, several sequences and variants each, for the digest properties.
SUBJECTS = [ROOT, CITY, COUNTY, "gd.shantou", "gd.finance", "gd.chaozhou.chao-an",
            "gd.chaozhou.xiangqiao", "gd.shantou.nanao"]
POOL = [sign_record(OTHER_KEYS, EndpointAnnouncement(subject, seq, (f"https://v{variant}.example",), NOW))
        for subject in SUBJECTS for seq in (1, 2, 3) for variant in range(2)] + \
       [sign_record(OTHER_KEYS, beacon(subject, seq, uptime_s=variant))
        for subject in SUBJECTS[:4] for seq in (1, 2) for variant in range(2)]


def store_of(records) -> dict[tuple[str, str], Record]:
    store: dict[tuple[str, str], Record] = {}
    for record in records:
        store[record.key] = merge(store.get(record.key), record).current
    return store


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=40, unique_by=lambda r: r.key).flatmap(
    lambda chosen: st.tuples(st.just(chosen), st.permutations(chosen))))
def test_digest_is_independent_of_insertion_order(orders):
    chosen, shuffled = orders
    assert digest_of(chosen) == digest_of(shuffled)
    assert digest_of(chosen).root == digest_of(shuffled).root


def test_digest_size_does_not_grow_with_the_directory():
    many = [endpoint(subject=f"gd.n{i}", keys=OTHER_KEYS) for i in range(500)]
    one, lots = digest_of(many[:1]), digest_of(many)
    assert len(one.encode_buckets()) == len(lots.encode_buckets()) == BUCKETS * BUCKET_HASH_BYTES == 2048
    assert len(one.root) == len(lots.root) == 16
    assert one != lots
    assert len(differing_buckets(one, lots)) > 200  # 500 keys touch most of the 256 buckets


@pytest.mark.parametrize("records", [[], [ENDPOINT], list(POOL)], ids=["empty", "one", "pool"])
def test_decode_buckets_round_trips(records):
    digest = digest_of(store_of(records).values())
    again = Digest.decode_buckets(digest.encode_buckets())
    assert again == digest
    assert again.root == digest.root


@pytest.mark.parametrize("data", [b"", bytes(2047), bytes(2049), bytes(8), bytes(4096),
                                  bytearray(2048), "0" * 2048, None],
                         ids=["empty", "2047", "2049", "8", "4096", "bytearray", "str", "none"])
def test_decode_buckets_refuses_anything_but_2048_bytes(data):
    expect(Malformed, Digest.decode_buckets, data)


def test_differing_buckets_finds_exactly_the_bucket_of_a_changed_record():
    store = store_of(record for record in POOL if record.seq == 1)
    before = digest_of(store.values())
    changed = store_of([*store.values(), endpoint(subject="gd.finance", seq=2, keys=OTHER_KEYS)])
    after = digest_of(changed.values())
    assert differing_buckets(before, after) == (bucket_of("endpoint", "gd.finance"),)
    assert differing_buckets(after, before) == (bucket_of("endpoint", "gd.finance"),)
    assert differing_buckets(before, before) == ()
    assert before.root != after.root


def test_in_sync_nodes_compare_equal_roots():
    a = digest_of(store_of(POOL).values())
    b = digest_of(store_of(reversed(POOL)).values())
    assert a.root == b.root and differing_buckets(a, b) == ()


# --- reconcile --------------------------------------------------------------------------

def summary(*records: Record) -> list[SummaryEntry]:
    return [SummaryEntry.of(record) for record in records]


def test_summary_entry_carries_the_record_identity():
    entry = SummaryEntry.of(STATUS)
    # Summaries carry the first 8 bytes of the record hash: enough to tell versions
    # apart, and a bucket's summary stays small on the wire.
    assert (entry.kind, entry.subject, entry.seq, entry.hash, entry.key) == (
        "status", COUNTY, 1, STATUS.hash[:8], STATUS.key)


def test_reconcile_sends_what_they_lack_or_have_older_and_fetches_the_reverse():
    same = endpoint(subject=ROOT, keys=OTHER_KEYS)
    mine_newer, theirs_older = endpoint(subject=CITY, seq=2, keys=OTHER_KEYS), endpoint(subject=CITY, keys=OTHER_KEYS)
    only_mine = status(subject=CITY, keys=OTHER_KEYS)
    only_theirs = status(subject=ROOT, keys=OTHER_KEYS)
    mine_older, theirs_newer = endpoint(keys=OTHER_KEYS), endpoint(seq=5, keys=OTHER_KEYS)
    to_send, to_fetch = reconcile(summary(same, mine_newer, only_mine, mine_older),
                                  summary(same, theirs_older, only_theirs, theirs_newer))
    assert to_send == {("endpoint", CITY), ("status", CITY)}
    assert to_fetch == {("status", ROOT), ("endpoint", COUNTY)}


def test_reconcile_equivocation_goes_both_ways():
    a = endpoint(seq=3, urls=("https://a.example",))
    b = endpoint(seq=3, urls=("https://b.example",))
    to_send, to_fetch = reconcile(summary(a), summary(b))
    assert to_send == to_fetch == {("endpoint", COUNTY)}
    # After both merge what they received, both hold the same winner.
    assert merge(a, b).current == merge(b, a).current


def test_reconcile_of_identical_or_empty_summaries_is_empty():
    assert reconcile(summary(ENDPOINT, STATUS), summary(STATUS, ENDPOINT)) == (set(), set())
    assert reconcile([], []) == (set(), set())


def _two_subjects_in_one_bucket() -> tuple[str, str]:
    seen: dict[int, str] = {}
    for i in range(10_000):
        subject = f"gd.n{i}"
        bucket = bucket_of("endpoint", subject)
        if bucket in seen:
            return seen[bucket], subject
        seen[bucket] = subject
    raise AssertionError("no bucket collision found")


def test_reconcile_within_a_shared_bucket_sends_only_the_differing_record():
    first, second = _two_subjects_in_one_bucket()
    shared = endpoint(subject=first, keys=OTHER_KEYS)
    mine = [shared, endpoint(subject=second, seq=2, keys=OTHER_KEYS)]
    theirs = [shared, endpoint(subject=second, seq=1, keys=OTHER_KEYS)]
    assert differing_buckets(digest_of(mine), digest_of(theirs)) == (bucket_of("endpoint", first),)
    assert reconcile(summary(*mine), summary(*theirs)) == ({("endpoint", second)}, set())


def anti_entropy_round(a: dict, b: dict) -> tuple[set, set]:
    """One push-pull exchange as the protocol describes it; both stores updated in place."""
    buckets = set(differing_buckets(digest_of(a.values()), digest_of(b.values())))
    to_send, to_fetch = reconcile(
        [SummaryEntry.of(r) for r in a.values() if bucket_of(*r.key) in buckets],
        [SummaryEntry.of(r) for r in b.values() if bucket_of(*r.key) in buckets])
    outgoing, incoming = [a[key] for key in to_send], [b[key] for key in to_fetch]
    for record in outgoing:
        b[record.key] = merge(b.get(record.key), record).current
    for record in incoming:
        a[record.key] = merge(a.get(record.key), record).current
    return to_send, to_fetch


DIGEST_POOL = [record for record in POOL if record.kind in DIGEST_KINDS]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(DIGEST_POOL), max_size=30),
       st.lists(st.sampled_from(DIGEST_POOL), max_size=30))
def test_after_one_anti_entropy_round_both_sides_are_in_sync(mine, theirs):
    a, b = store_of(mine), store_of(theirs)
    before_a, before_b = dict(a), dict(b)
    to_send, to_fetch = anti_entropy_round(a, b)
    assert digest_of(a.values()) == digest_of(b.values())
    assert a == b
    # Only records that actually differed travelled.
    assert all(before_b.get(key) != before_a[key] for key in to_send)
    assert all(before_a.get(key) != before_b[key] for key in to_fetch)
    # Each side ends with the merge-rule winner of everything either side had.
    assert a == store_of([*before_a.values(), *before_b.values()])
    # A second round finds nothing to do.
    assert anti_entropy_round(a, b) == (set(), set())
