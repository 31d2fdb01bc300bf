"""Group commit: concurrent writers share one apply; each caller gets its own result or its own error."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.common.group_commit import GroupCommit, GroupCommitClosed


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


def test_a_cancelled_callers_item_is_still_committed_and_the_writer_goes_on() -> None:
    gate = threading.Event()
    applied: list[int] = []

    def apply(items: list[int]) -> list[int | BaseException]:
        gate.wait(5)  # hold the first batch so the second submission queues behind it
        applied.extend(items)
        return items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")

    async def scenario() -> int:
        first = asyncio.ensure_future(commit.submit_async(1))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(commit.submit_async(2))
        await asyncio.sleep(0.05)
        second.cancel()  # e.g. the client's deadline passed while the write was queued
        gate.set()
        assert await first == 1
        return await asyncio.wait_for(commit.submit_async(3), 5)

    assert asyncio.run(scenario()) == 3
    assert applied == [1, 2, 3]


def test_the_event_loop_keeps_serving_while_a_batch_is_being_committed() -> None:
    gate = threading.Event()

    def apply(items: list[int]) -> list[int | BaseException]:
        gate.wait(5)  # a slow fsync
        return items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")

    async def scenario() -> list[str]:
        order: list[str] = []
        pending = asyncio.ensure_future(commit.submit_async(1))
        await asyncio.sleep(0.05)
        order.append("loop served another call")  # would not happen before the commit if it ran on the loop
        gate.set()
        await pending
        order.append("committed")
        return order

    assert asyncio.run(scenario()) == ["loop served another call", "committed"]


def test_an_apply_that_miscounts_its_results_fails_its_batch_and_the_writer_goes_on() -> None:
    calls = {"n": 0}

    def apply(items: list[int]) -> list[int | BaseException]:
        calls["n"] += 1
        return [] if calls["n"] == 1 else items

    commit: GroupCommit[int, int] = GroupCommit(apply, "test")
    with pytest.raises(RuntimeError, match="0 results for 1 items"):
        commit.submit(1)
    assert commit.submit(2) == 2


def test_close_returns_once_everything_submitted_before_it_is_committed() -> None:
    gate = threading.Event()
    applied: list[int] = []

    def apply(items: list[int]) -> list[int | BaseException]:
        gate.wait(5)
        applied.extend(items)
        return list(items)

    commit: GroupCommit[int, int] = GroupCommit(apply, "test", max_batch=2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(commit.submit, i) for i in range(6)]
        deadline = time.monotonic() + 5
        while commit._queue.qsize() < 4 and time.monotonic() < deadline:  # the writer holds at most max_batch=2
            time.sleep(0.01)
        threading.Timer(0.3, gate.set).start()
        commit.close()
        assert sorted(applied) == list(range(6))  # nothing queued before close was dropped
        assert [f.result(timeout=5) for f in futures] == list(range(6))


def test_nothing_is_accepted_after_close() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda items: list(items), "test")
    assert commit.submit(1) == 1
    commit.close()
    commit.close()  # closing twice is harmless
    with pytest.raises(GroupCommitClosed):
        commit.submit(2)


def test_closing_an_unused_group_commit_returns_at_once() -> None:
    GroupCommit(lambda items: list(items), "test").close(timeout_s=0.1)
