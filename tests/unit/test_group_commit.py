"""Group commit: concurrent writers share one apply; each caller gets its own result or its own error."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.common.group_commit import GroupCommit


def test_concurrent_submissions_are_applied_in_shared_batches() -> None:
    gate = threading.Event()
    batches: list[list[int]] = []

    def apply(items: list[int]) -> list[int | BaseException]:
        gate.wait(5)  # hold the first batch so the others queue up behind it
        batches.append(items)
        return [item * 10 for item in items]

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(commit.submit, i) for i in range(8)]
        threading.Timer(0.2, gate.set).start()
        results = [f.result(timeout=10) for f in futures]
    assert results == [i * 10 for i in range(8)]
    assert len(batches) < 8 and sorted(i for b in batches for i in b) == list(range(8))


def test_an_error_for_one_item_reaches_only_its_caller() -> None:
    def apply(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {i}") if i == 2 else i for i in items]

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")
    assert commit.submit(1) == 1
    with pytest.raises(ValueError, match="bad 2"):
        commit.submit(2)


def test_a_failing_apply_fails_its_batch_and_the_writer_goes_on() -> None:
    calls = {"n": 0}

    def apply(items: list[int]) -> list[int | BaseException]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database unreachable")
        return items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")
    with pytest.raises(RuntimeError, match="unreachable"):
        commit.submit(1)
    assert commit.submit(2) == 2


@pytest.mark.parametrize("on_loop", [False, True], ids=["writer-thread", "on-loop"])
def test_a_cancelled_callers_item_is_still_committed_and_the_writer_goes_on(on_loop: bool) -> None:
    gate = threading.Event()
    applied: list[int] = []

    def apply(items: list[int]) -> list[int | BaseException]:
        if not on_loop:
            gate.wait(5)  # hold the first batch so the second submission queues behind it
        applied.extend(items)
        return items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test", on_loop=on_loop)

    async def scenario() -> int:
        first = asyncio.ensure_future(commit.submit_async(1))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(commit.submit_async(2))
        await asyncio.sleep(0) if on_loop else await asyncio.sleep(0.05)
        second.cancel()  # e.g. the client's deadline passed while the write was queued
        gate.set()
        assert await first == 1
        return await asyncio.wait_for(commit.submit_async(3), 5)

    assert asyncio.run(scenario()) == 3
    assert applied == [1, 2, 3]


def test_on_the_loop_concurrent_submissions_share_one_apply() -> None:
    batches: list[list[int]] = []

    def apply(items: list[int]) -> list[int | BaseException]:
        batches.append(items)
        return [ValueError("bad 3") if item == 3 else item * 10 for item in items]

    commit: GroupCommit[int, int] = GroupCommit(apply, "test", on_loop=True)

    async def scenario() -> list[int | BaseException]:
        return await asyncio.gather(*(commit.submit_async(i) for i in range(5)), return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:3] == [0, 10, 20] and isinstance(results[3], ValueError) and results[4] == 40
    assert batches == [[0, 1, 2, 3, 4]]


def test_on_the_loop_a_blocking_submit_is_refused() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda items: list(items), "test", on_loop=True)
    with pytest.raises(RuntimeError, match="submit_async"):
        commit.submit(1)


def test_on_the_loop_submissions_are_committed_even_when_the_loop_shuts_down() -> None:
    applied: list[int] = []

    def apply(items: list[int]) -> list[int | BaseException]:
        applied.extend(items)
        return items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test", max_batch=1, on_loop=True)

    async def scenario() -> None:
        callers = [asyncio.ensure_future(commit.submit_async(i)) for i in range(3)]
        await asyncio.sleep(0)  # the flusher has committed the first batch and yielded
        for caller in callers:
            caller.cancel()

    asyncio.run(scenario())  # cancels the flusher on the way out
    assert applied == [0, 1, 2]


def test_an_apply_that_miscounts_its_results_fails_its_batch_and_the_writer_goes_on() -> None:
    calls = {"n": 0}

    def apply(items: list[int]) -> list[int | BaseException]:
        calls["n"] += 1
        return [] if calls["n"] == 1 else items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commit.submit(1)
    assert commit.submit(2) == 2
