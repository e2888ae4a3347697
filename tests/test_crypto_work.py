"""Where bulk crypto runs (node.crypto_work): on the loop for a few frames; from
OFF_LOOP_FRAMES of weight on, in a worker thread or in slices on the loop, results in
order."""

import asyncio
import threading

import pytest

from node.crypto_work import (OFF_LOOP_FRAMES, SLICE_FRAMES, WEIGHT_BYTES, frame_weight,
                               map_crypto)


class Recorder:
    """Work that records the thread it ran on and how many times the loop turned."""

    def __init__(self) -> None:
        self.threads: set[int] = set()
        self.turns_seen: list[int] = []
        self.turns = 0
        self._next_tick: asyncio.Handle | None = None

    def work(self, item: int) -> int:
        self.threads.add(threading.get_ident())
        self.turns_seen.append(self.turns)
        return item * item

    def start_counting_turns(self) -> None:
        """A callback the loop runs once a turn, scheduling itself again each time."""
        loop = asyncio.get_running_loop()

        def tick() -> None:
            self.turns += 1
            self._next_tick = loop.call_soon(tick)

        self._next_tick = loop.call_soon(tick)

    def stop_counting_turns(self) -> None:
        self._next_tick.cancel()


def one(item) -> int:
    return 1


async def run_with_ticker(recorder: Recorder, items, *, in_threads: bool,
                          weight=one) -> list[int]:
    recorder.start_counting_turns()
    try:
        return await map_crypto(recorder.work, items, in_threads=in_threads, weight=weight)
    finally:
        recorder.stop_counting_turns()


@pytest.mark.parametrize("in_threads", [True, False], ids=["threads", "loop"])
async def test_a_few_frames_are_done_on_the_loop_at_once(in_threads):
    recorder = Recorder()
    items = list(range(OFF_LOOP_FRAMES - 1))
    assert await run_with_ticker(recorder, items, in_threads=in_threads) == \
        [n * n for n in items]
    assert recorder.threads == {threading.get_ident()}
    assert set(recorder.turns_seen) == {recorder.turns_seen[0]}  # no turn in between


async def test_many_frames_go_to_a_worker_thread_when_asked():
    recorder = Recorder()
    items = list(range(3 * OFF_LOOP_FRAMES))
    assert await run_with_ticker(recorder, items, in_threads=True) == [n * n for n in items]
    assert len(recorder.threads) == 1 and threading.get_ident() not in recorder.threads


async def test_many_frames_on_the_loop_let_other_tasks_run_between_slices():
    recorder = Recorder()
    items = list(range(4 * SLICE_FRAMES))
    assert await run_with_ticker(recorder, items, in_threads=False) == [n * n for n in items]
    assert recorder.threads == {threading.get_ident()}
    # The ticker turned between slices, never inside one.
    slices = [recorder.turns_seen[start:start + SLICE_FRAMES]
              for start in range(0, len(items), SLICE_FRAMES)]
    assert all(len(set(part)) == 1 for part in slices)
    firsts = [part[0] for part in slices]
    assert firsts == sorted(firsts) and len(set(firsts)) == len(slices)


async def test_slices_and_the_threshold_count_weight_not_items():
    recorder = Recorder()
    heavy = [SLICE_FRAMES // 2] * 6  # each item weighs half a slice
    await run_with_ticker(recorder, heavy, in_threads=False, weight=lambda item: item)
    assert len(set(recorder.turns_seen)) == 3  # two items a slice
    one_big = Recorder()
    await run_with_ticker(one_big, [OFF_LOOP_FRAMES], in_threads=True,
                          weight=lambda item: item)
    assert threading.get_ident() not in one_big.threads  # one heavy item: off the loop


def test_a_frame_weighs_one_and_one_more_per_64_kib():
    assert [frame_weight(size) for size in (0, 4400, WEIGHT_BYTES - 1, WEIGHT_BYTES)] == \
        [1, 1, 1, 2]
    assert frame_weight(8 * 1024 * 1024 + 200) == 129  # an 8 MiB attachment: its own slice
    assert frame_weight(8 * 1024 * 1024) > SLICE_FRAMES


@pytest.mark.parametrize("in_threads", [True, False], ids=["threads", "loop"])
async def test_an_error_in_the_work_reaches_the_caller(in_threads):
    def work(item: int) -> int:
        if item == OFF_LOOP_FRAMES:
            raise ValueError("item 16 is bad")
        return item

    with pytest.raises(ValueError, match="item 16 is bad"):
        await map_crypto(work, list(range(2 * OFF_LOOP_FRAMES)), in_threads=in_threads,
                         weight=one)
