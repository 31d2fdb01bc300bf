"""What each call of an outage harness answered, counted: the gRPC code, the ErrorInfo reason and whether a
google.rpc.RetryInfo came with it (decoded as every Custody client decodes it, services/common/status.py)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from services.common import status

T = TypeVar("T")

# A call that takes longer than this during an outage counts as hung (DEADLINE_EXCEEDED on the client's side).
CALL_TIMEOUT_S = 10.0
BROKEN = frozenset({"INTERNAL", "UNKNOWN"})


@dataclass(frozen=True)
class Outcome:
    code: str  # "OK" or a grpc.StatusCode name
    reason: str = ""
    retry_info: bool = False
    seconds: float = 0.0

    @property
    def label(self) -> str:
        """e.g. "UNAVAILABLE DATABASE_UNAVAILABLE +RetryInfo"."""
        parts = [self.code, self.reason, "+RetryInfo" if self.retry_info else ""]
        return " ".join(part for part in parts if part)


def attempt(call: Callable[[], T]) -> tuple[Outcome, T | None]:
    """Runs one RPC; its outcome, and its answer when it succeeded."""
    started = time.monotonic()
    try:
        answer = call()
    except grpc.RpcError as exc:
        decoded = status.decode(exc)
        elapsed = time.monotonic() - started
        return Outcome(decoded.code.name, decoded.reason, decoded.retry_after_s is not None, elapsed), None
    return Outcome("OK", seconds=time.monotonic() - started), answer


class Tally:
    """Outcomes counted by label, safe to add to from several client threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: list[Outcome] = []

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def by_label(self) -> dict[str, int]:
        with self._lock:
            return dict(Counter(outcome.label for outcome in self.outcomes).most_common())

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        with self._lock:
            return sum(1 for outcome in self.outcomes if predicate(outcome))

    @property
    def total(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def broken(self) -> int:
        """INTERNAL or UNKNOWN answers: what an outage must never produce."""
        return self.count(lambda outcome: outcome.code in BROKEN)

    def slowest_s(self) -> float:
        with self._lock:
            return round(max((outcome.seconds for outcome in self.outcomes), default=0.0), 3)
