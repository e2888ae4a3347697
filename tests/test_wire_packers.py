"""``wire.pack`` reuses msgpack packers: the bytes are msgpack's own, whatever came before
(a failure, a big value) and whichever threads pack at once; a packer that failed or
grew is not kept."""

from __future__ import annotations

import threading

import msgpack
import pytest

from protocol import wire

VALUES = [{"v": 1, "b": {"s": bytes(range(256)) * 17}}, ["报告", 2 ** 40, None, True],
          {"frames": [b"\x00" * n for n in range(40)]}]


def test_packing_is_msgpack_packing_before_and_after_a_failure():
    for value in VALUES:
        assert wire.pack(value) == msgpack.packb(value, use_bin_type=True)
    idle_before = len(wire._IDLE_PACKERS)
    with pytest.raises(TypeError):
        wire.pack({"half": "written", "then": object()})
    assert len(wire._IDLE_PACKERS) == idle_before - 1  # the packer that failed is let go
    for value in VALUES:
        assert wire.pack(value) == msgpack.packb(value, use_bin_type=True)


def test_a_packer_that_grew_for_a_big_value_is_not_kept():
    wire.pack(VALUES[0])
    idle_before = len(wire._IDLE_PACKERS)
    big = {"frames": [b"x" * 100_000] * 4}  # 400 kB: the packer's buffer grows
    assert wire.pack(big) == msgpack.packb(big, use_bin_type=True)
    assert len(wire._IDLE_PACKERS) == idle_before - 1


def test_threads_packing_at_once_each_get_their_own_bytes():
    failures: list[str] = []
    start = threading.Barrier(4)

    def pack_many(number: int) -> None:
        start.wait()
        for round_number in range(300):
            value = {"thread": number, "round": round_number, "data": bytes([number]) * 5000}
            if wire.pack(value) != msgpack.packb(value, use_bin_type=True):
                failures.append(f"thread {number} round {round_number}")

    threads = [threading.Thread(target=pack_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
