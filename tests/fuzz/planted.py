"""A fuzz target with a planted crash, to prove the runner reports one (and its reproducer replays)."""

from __future__ import annotations


def crashes_on_three_bytes(data: bytes) -> None:
    if len(data) >= 3:
        raise ValueError("planted crash")
