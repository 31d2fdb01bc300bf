"""ai_gateway down: the callers that need it must answer clearly and write nothing half. art_studio's
GenerateCandidates (into a new session, and into an existing one) must answer UNAVAILABLE DEPENDENCY_UNAVAILABLE
with a RetryInfo, creating no session run, attaching nothing and recording no candidate; runs' SuggestExplanation
answers with the run, its explanation ERROR with the reason and no advisory added. Once ai_gateway is back (runs and
art_studio are never restarted) both succeed again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.faults.calls import CALL_TIMEOUT_S, Outcome, attempt
from bench.faults.stack import Stack, run_input
from custody.art_studio.v1 import art_studio_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2

RECOVER_TIMEOUT_S = 60.0


def run(root: Path, **options: Any) -> dict[str, Any]:
    with Stack(root) as stack:
        return scenario(stack, **options)


def scenario(stack: Stack, *, down_calls: int = 5, project: str = "gateway-outage") -> dict[str, Any]:
    brief = stack.brief(project)
    # Healthy first: a peer restarted by an earlier scenario on this stack may still be in its reconnect backoff.
    outcome, first = _generate(stack, brief, new_session=True)
    started = time.monotonic()
    while first is None and time.monotonic() - started < RECOVER_TIMEOUT_S:
        time.sleep(0.2)
        outcome, first = _generate(stack, brief, new_session=True)
    assert first is not None, f"GenerateCandidates failed before the outage: {outcome.label}"
    session = first.run
    explained = stack.runs().CreateRun(runs_pb2.CreateRunRequest(run=run_input(0)), metadata=stack.auth).name
    before = _written(stack, brief, session, explained)

    gateway = stack.processes["ai_gateway"]
    gateway.kill()
    answers: dict[str, dict[str, int]] = {"new_session": {}, "existing_session": {}, "explanation": {}}
    explanation_errors: set[str] = set()
    for _ in range(down_calls):
        for key, new_session in (("new_session", True), ("existing_session", False)):
            outcome, _ = _generate(stack, brief, new_session=new_session, run=None if new_session else session)
            answers[key][outcome.label] = answers[key].get(outcome.label, 0) + 1
        outcome, run = attempt(
            lambda: stack.runs().SuggestExplanation(
                runs_pb2.SuggestExplanationRequest(name=explained), metadata=stack.auth, timeout=CALL_TIMEOUT_S
            )
        )
        label = (
            outcome.label
            if run is None
            else f"OK explanation {runs_pb2.ExplanationStatus.Name(run.explanation.status)}"
        )
        answers["explanation"][label] = answers["explanation"].get(label, 0) + 1
        if run is not None:
            explanation_errors.add(run.explanation.error.split(":", 1)[0])
    after = _written(stack, brief, session, explained)

    gateway.start()
    back_at = time.monotonic()
    recovered = None
    while time.monotonic() - back_at < RECOVER_TIMEOUT_S:
        if _generate(stack, brief, new_session=True)[1] is not None:
            recovered = round(time.monotonic() - back_at, 3)
            break
        time.sleep(0.2)
    # runs has a channel of its own to ai_gateway, reconnecting on its own schedule: explain until it answers.
    explanation_after, explained_in = "", None
    while time.monotonic() - back_at < RECOVER_TIMEOUT_S:
        again = stack.runs().SuggestExplanation(
            runs_pb2.SuggestExplanationRequest(name=explained), metadata=stack.auth, timeout=60
        )
        explanation_after = runs_pb2.ExplanationStatus.Name(again.explanation.status)
        if again.explanation.status == runs_pb2.EXPLANATION_STATUS_READY:
            explained_in = round(time.monotonic() - back_at, 3)
            break
        time.sleep(0.2)
    every = [label for calls in answers.values() for label in calls]
    return {
        "scenario": "gateway",
        "calls_during_outage": sum(sum(calls.values()) for calls in answers.values()),
        "generate_new_session": answers["new_session"],
        "generate_existing_session": answers["existing_session"],
        "suggest_explanation": answers["explanation"],
        "explanation_error_reasons": sorted(explanation_errors),
        "internal_or_unknown": sum(1 for label in every if label.split()[0] in ("INTERNAL", "UNKNOWN")),
        "sessions_created_during_outage": after["sessions"] - before["sessions"],
        "attachments_added_during_outage": after["attachments"] - before["attachments"],
        "candidates_recorded_during_outage": after["candidates"] - before["candidates"],
        "advisories_added_during_outage": after["advisories"] - before["advisories"],
        "seconds_to_recover": recovered,
        "explanation_after_return": explanation_after,
        "seconds_to_explain_after_return": explained_in,
        "services_restarted": sum(1 for s, p in stack.processes.items() if s != "ai_gateway" and not p.alive()),
    }


def _generate(
    stack: Stack, brief: str, *, new_session: bool, run: str | None = None
) -> tuple[Outcome, art_studio_pb2.GenerateCandidatesResponse | None]:
    request = art_studio_pb2.GenerateCandidatesRequest(
        prompt="a rosette with 12 petals and a rope band",
        diameter_mm=100,
        count=2,
        new_session=new_session,
        run=run or "",
        lineage_parent=brief,
    )
    return attempt(lambda: stack.studio().GenerateCandidates(request, metadata=stack.auth, timeout=60))


def _written(stack: Stack, brief: str, session: str, explained: str) -> dict[str, int]:
    """What the outage could have half-written: sessions, attachments, candidates in lineage, advisories."""
    runs = stack.runs()
    downstream = stack.lineage().GetDownstream(
        lineage_pb2.GetDownstreamRequest(name=brief, page_size=1000), metadata=stack.auth, timeout=CALL_TIMEOUT_S
    )
    attachments = runs.ListAttachments(
        runs_pb2.ListAttachmentsRequest(run=session, page_size=1000), metadata=stack.auth, timeout=CALL_TIMEOUT_S
    )
    advisories = runs.ListAdvisories(
        runs_pb2.ListAdvisoriesRequest(run=explained, page_size=1000), metadata=stack.auth, timeout=CALL_TIMEOUT_S
    )
    return {
        "sessions": len(stack.runs_created_by("service:art_studio")),
        "attachments": len(attachments.attachments),
        "candidates": len(downstream.nodes),
        "advisories": len(advisories.advisories),
    }
