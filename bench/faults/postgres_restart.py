"""PostgreSQL restarted under load: a private cluster (bench/faults/pg_cluster.py) holds the databases of runs,
lineage and ai_gateway; clients write to each service continuously; the cluster is stopped as a crash would stop
it, stays down a few seconds, and is started again. The services are never restarted.

While it is down every write must be answered UNAVAILABLE with a RetryInfo (nothing hangs, nothing is INTERNAL);
once it is back each service must answer again by itself; and every write that was acknowledged must be there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import struct_pb2

from bench.faults.calls import CALL_TIMEOUT_S, Outcome, Tally, attempt
from bench.faults.pg_cluster import PrivateCluster
from bench.faults.stack import Stack, run_input
from custody.ai_gateway.v1 import gateway_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2

SERVICES = ("runs", "lineage", "ai_gateway")


@dataclass
class _Load:
    """One client thread writing to one service; its outcomes split by the phase each call started in."""

    service: str
    write: Callable[[int], tuple[Outcome, str | None]]
    phases: dict[str, Tally] = field(default_factory=lambda: {p: Tally() for p in ("before", "down", "after")})
    acknowledged: list[str] = field(default_factory=list)
    first_ok_after: float | None = None
    # When calls started during the outage succeeded (monotonic end times): PostgreSQL was back by then.
    ok_while_down_at: list[float] = field(default_factory=list)


def _writers(stack: Stack) -> dict[str, Callable[[int], tuple[Outcome, str | None]]]:
    def runs(i: int) -> tuple[Outcome, str | None]:
        request = runs_pb2.CreateRunRequest(run=run_input(i), request_id=f"pg-outage-{i}")
        outcome, run = attempt(lambda: stack.runs().CreateRun(request, metadata=stack.auth, timeout=CALL_TIMEOUT_S))
        return outcome, None if run is None else run.name

    def lineage(i: int) -> tuple[Outcome, str | None]:
        data = struct_pb2.Struct()
        data.update({"prompt": f"brief {i}"})
        request = lineage_pb2.CreateVersionRequest(
            parent=f"projects/pg-outage/artifacts/design_brief/brief-{i}",
            data=data,
            metadata=lineage_pb2.VersionMetadata(
                intent="load", rationale="outage", confidence=1.0, source=lineage_pb2.SOURCE_HUMAN
            ),
            request_id=f"pg-outage-{i}",
        )
        outcome, answer = attempt(
            lambda: stack.lineage().CreateVersion(request, metadata=stack.auth, timeout=CALL_TIMEOUT_S)
        )
        return outcome, None if answer is None else answer.version.name

    def ai_gateway(i: int) -> tuple[Outcome, str | None]:
        request = gateway_pb2.GenerateTextRequest(
            operation="prompt_to_svg_spec",
            category="ROSETTE_DESIGN",
            prompt=f"a rosette with {8 + i % 8} petals",
            variant_seed=f"pg-outage-{i}",
            request_id=f"pg-outage-{i}",
        )
        outcome, answer = attempt(
            lambda: stack.gateway().GenerateText(request, metadata=stack.auth, timeout=CALL_TIMEOUT_S)
        )
        return outcome, None if answer is None else answer.envelope.call

    found = {"runs": runs, "lineage": lineage, "ai_gateway": ai_gateway}
    return {service: found[service] for service in stack.processes}


def _present(stack: Stack, service: str, name: str) -> bool:
    """Whether an acknowledged write can be read back."""
    reads: dict[str, Callable[[], Any]] = {
        "runs": lambda: stack.runs().GetRun(runs_pb2.GetRunRequest(name=name), metadata=stack.auth),
        "lineage": lambda: stack.lineage().GetVersion(lineage_pb2.GetVersionRequest(name=name), metadata=stack.auth),
        "ai_gateway": lambda: stack.gateway().GetCall(gateway_pb2.GetCallRequest(name=name), metadata=stack.auth),
    }
    outcome, _ = attempt(reads[service])
    return outcome.code == "OK"


def run(
    root: Path,
    *,
    services: tuple[str, ...] = SERVICES,
    before_s: float = 2.0,
    down_s: float = 4.0,
    recover_timeout_s: float = 60.0,
    pause_s: float = 0.02,
) -> dict[str, Any]:
    with PrivateCluster() as cluster:
        settings = {service: {"database_url": cluster.create_database(service)} for service in services}
        with Stack(root, services, settings) as stack:
            return _under_load(stack, cluster, before_s, down_s, recover_timeout_s, pause_s)


def _under_load(
    stack: Stack, cluster: PrivateCluster, before_s: float, down_s: float, recover_timeout_s: float, pause_s: float
) -> dict[str, Any]:
    loads = [_Load(service, write) for service, write in _writers(stack).items()]
    phase: dict[str, Any] = {"now": "before", "ready_at": 0.0}
    stop = threading.Event()

    def client(load: _Load) -> None:
        i = 0
        while not stop.is_set():
            started_in, started = phase["now"], time.monotonic()
            outcome, name = load.write(i)
            load.phases[started_in].add(outcome)
            if name is not None:
                load.acknowledged.append(name)
                if started_in == "down":
                    load.ok_while_down_at.append(started + outcome.seconds)
                if started_in == "after" and load.first_ok_after is None:
                    load.first_ok_after = started + outcome.seconds - phase["ready_at"]
            i += 1
            time.sleep(pause_s)

    threads = [threading.Thread(target=client, args=(load,), daemon=True) for load in loads]
    for thread in threads:
        thread.start()
    time.sleep(before_s)
    cluster.crash()
    phase["now"] = "down"
    crashed_at = time.monotonic()
    time.sleep(down_s)
    restarting_at = time.monotonic()
    restart_s = cluster.start()
    phase["ready_at"], phase["now"] = time.monotonic(), "after"
    deadline = time.monotonic() + recover_timeout_s
    while any(load.first_ok_after is None for load in loads) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # a little load after recovery too
    stop.set()
    for thread in threads:
        thread.join(CALL_TIMEOUT_S * 2)
    down_total = phase["ready_at"] - crashed_at

    per_service: dict[str, Any] = {}
    for load in loads:
        down = load.phases["down"]
        lost = [name for name in load.acknowledged if not _present(stack, load.service, name)]
        per_service[load.service] = {
            "calls": sum(t.total for t in load.phases.values()),
            "calls_during_outage": down.total,
            "unavailable_with_retry_info": down.count(lambda o: o.code == "UNAVAILABLE" and o.retry_info),
            "answers_during_outage": down.by_label(),
            # Successes among them came after the restart began (PostgreSQL accepts connections a little before
            # the harness's 50 ms poll sees it); one before it would mean a write acknowledged without a database.
            "ok_before_restart_began": sum(1 for at in load.ok_while_down_at if at < restarting_at),
            "internal_or_unknown": sum(t.broken() for t in load.phases.values()),
            "slowest_call_during_outage_s": down.slowest_s(),
            "seconds_to_recover": None if load.first_ok_after is None else round(load.first_ok_after, 3),
            "acknowledged_writes": len(load.acknowledged),
            "lost": len(lost),
        }
    return {
        "scenario": "postgres",
        "postgres_down_s": round(down_total, 3),
        "postgres_start_s": round(restart_s, 3),
        "services_restarted": sum(1 for process in stack.processes.values() if not process.alive()),
        "services": per_service,
    }
