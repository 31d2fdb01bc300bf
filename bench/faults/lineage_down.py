"""lineage down under load: candidates are bound (each mint writes an outbox message that records its verdict in
lineage) by several clients while lineage is killed with SIGKILL right after a share of them were acknowledged,
stays down, and starts again on the same port; runs is never restarted.

Counted: the acknowledged mints (outbox messages enqueued), how many were not yet delivered when lineage died, the
binds refused while it was down (they must mint nothing), and, once it is back, how many messages were delivered
and how many feasibility_run records lineage holds for each mint (exactly one: nothing lost, nothing doubled).
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from bench.faults.calls import CALL_TIMEOUT_S, Outcome, Tally, attempt
from bench.faults.stack import Stack, wait_until
from custody.art_studio.v1 import art_studio_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2

Candidate = tuple[str, art_studio_pb2.Candidate]  # (design session, candidate)
BATCH = 10  # GenerateCandidates' largest count


def candidates(stack: Stack, count: int, project: str) -> list[Candidate]:
    """`count` candidates recorded in lineage under a new brief, in design sessions art_studio created."""
    brief = stack.brief(project)
    found: list[Candidate] = []
    while len(found) < count:
        request = art_studio_pb2.GenerateCandidatesRequest(
            prompt="a rosette with 12 petals and a rope band",
            diameter_mm=100,
            count=min(BATCH, count - len(found)),
            new_session=True,
            lineage_parent=brief,
        )
        answer = stack.studio().GenerateCandidates(request, metadata=stack.auth, timeout=120)
        found += [(answer.run, c) for c in answer.candidates if c.ok]
    return found[:count]


def bind_request(session: str, candidate: art_studio_pb2.Candidate, key: str) -> runs_pb2.BindCandidateRequest:
    return runs_pb2.BindCandidateRequest(
        run=session,
        attachments=[candidate.svg_attachment, candidate.spec_attachment],
        lineage_candidate=candidate.lineage_version,
        request_id=key,
    )


def run(root: Path, **options: Any) -> dict[str, Any]:
    with Stack(root) as stack:
        return scenario(stack, **options)


def scenario(
    stack: Stack,
    *,
    mints: int = 30,
    clients: int = 3,
    kill_after: float = 0.4,
    down_s: float = 3.0,
    drain_timeout_s: float = 90.0,
    project: str = "lineage-outage",
) -> dict[str, Any]:
    lineage = stack.processes["lineage"]
    work: queue.SimpleQueue[tuple[int, Candidate]] = queue.SimpleQueue()
    for index, candidate in enumerate(candidates(stack, mints, project)):
        work.put((index, candidate))
    kill_at = max(1, int(mints * kill_after))
    acknowledged: list[runs_pb2.Run] = []
    lock = threading.Lock()
    killed, back = threading.Event(), threading.Event()
    # Refusals while lineage was down, and after it was serving again while runs' channel to it reconnected.
    while_down, reconnecting, other = Tally(), Tally(), Tally()
    first_bind_after_return: list[float] = []

    def binder() -> None:
        while True:
            try:
                index, (session, candidate) = work.get_nowait()
            except queue.Empty:
                return
            request = bind_request(session, candidate, f"{project}-bind-{index}")
            while True:  # the same request_id each time: a retried bind mints once
                outcome, answer = _bind(stack, request)
                if answer is not None:
                    with lock:
                        acknowledged.append(answer.run)
                        if back.is_set():
                            first_bind_after_return.append(time.monotonic())
                        if len(acknowledged) >= kill_at and not killed.is_set():
                            lineage.kill()  # at once: the latest mints' messages are still on their way
                            killed.set()
                    break
                if outcome.code != "UNAVAILABLE":
                    other.add(outcome)
                    break
                (reconnecting if back.is_set() else while_down).add(outcome)
                time.sleep(0.2)

    threads = [threading.Thread(target=binder, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    killed.wait(300)
    killed_at = time.monotonic()
    with lock:
        enqueued_before_kill = list(acknowledged)
    undelivered_at_kill = sum(1 for run in enqueued_before_kill if _state(stack, run.name) != "DELIVERED")
    time.sleep(max(0.0, down_s - (time.monotonic() - killed_at)))
    lineage.start()
    back_at = time.monotonic()
    back.set()
    for thread in threads:
        thread.join(300)
    drained = wait_until(
        lambda: all(_state(stack, run.name) == "DELIVERED" for run in acknowledged), drain_timeout_s, 0.3
    )
    drain_s = time.monotonic() - back_at
    delivered = [_get(stack, run.name) for run in acknowledged]
    records = [_records_of(stack, run) for run in delivered]
    minted_by_operator = stack.runs_created_by("human:operator")
    return {
        "scenario": "lineage",
        "acknowledged_mints": len(acknowledged),
        "outbox_messages_enqueued": len(acknowledged),
        "undelivered_when_lineage_was_killed": undelivered_at_kill,
        "binds_refused_while_lineage_down": while_down.by_label(),
        "binds_refused_after_lineage_returned": reconnecting.by_label(),
        "other_answers": other.by_label(),
        "internal_or_unknown": while_down.broken() + reconnecting.broken() + other.broken(),
        "lineage_down_s": round(back_at - killed_at, 3),
        "seconds_to_first_bind_after_return": (
            round(min(first_bind_after_return) - back_at, 3) if first_bind_after_return else None
        ),
        "delivered_after_return": sum(1 for run in delivered if run.lineage.state == "DELIVERED"),
        "seconds_to_deliver_after_return": round(drain_s, 3) if drained else None,
        "lineage_records": sum(records),
        "mints_without_a_record": sum(1 for n in records if n == 0),
        "duplicate_records": sum(n - 1 for n in records if n > 1),
        "runs_minted_by_refused_binds": len(minted_by_operator) - len(acknowledged),
        "runs_restarted": 0 if stack.processes["runs"].alive() else 1,
    }


def _bind(stack: Stack, request: runs_pb2.BindCandidateRequest) -> tuple[Outcome, Any]:
    return attempt(lambda: stack.runs().BindCandidate(request, metadata=stack.auth, timeout=CALL_TIMEOUT_S))


def _get(stack: Stack, name: str) -> Any:
    return stack.runs().GetRun(runs_pb2.GetRunRequest(name=name), metadata=stack.auth, timeout=CALL_TIMEOUT_S)


def _state(stack: Stack, name: str) -> str:
    return str(_get(stack, name).lineage.state)


def _records_of(stack: Stack, run: runs_pb2.Run) -> int:
    """How many feasibility_run versions in lineage record this run (its record's entity holds only its own)."""
    if not run.lineage.version:
        return 0
    entity = run.lineage.version.rsplit("/versions/", 1)[0]
    listed = stack.lineage().ListVersions(
        lineage_pb2.ListVersionsRequest(parent=entity, page_size=100), metadata=stack.auth, timeout=CALL_TIMEOUT_S
    )
    return sum(1 for version in listed.versions if version.data["run"] == run.name)
