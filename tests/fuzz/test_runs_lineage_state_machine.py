"""A model-based test of runs and lineage together (hypothesis RuleBasedStateMachine) against real in-process
servers over real gRPC: people write and revise design briefs, art_studio records SVG candidates (also revised),
the operator opens design sessions, attaches geometry and binds a candidate (runs mints the verdict and records a
feasibility_run in lineage through its outbox), and a second reviewer approves. The model says what must exist and
what each version's status and health are; after every step every record is read back and compared with it.

Invariants after every step: every version reads back with the digests it was created with, its status and
health are the model's (stale = downstream of a version that is no longer its entity's latest), ListStale lists
exactly the model's stale set, an approved version is stale only if something upstream was revised; every run
reads back with its artifact digest and VerifyRun finds nothing wrong; each verdict is delivered to lineage as
the model's feasibility_run version. Approvals succeed exactly when the model finds no violation, and are refused
with the model's violation codes otherwise (stale, superseded or unapproved lineage, self-approval, missing).

CUSTODY_STATEFUL_EXAMPLES and CUSTODY_STATEFUL_STEPS make the run longer (defaults keep it within seconds).
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from custody.lineage.v1 import lineage_pb2 as lpb
from custody.lineage.v1 import lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common import status
from services.common.hashing import sha256_bytes
from tests.runs.candidates import CLEAN_SPEC, compiled, spec
from tests.runs.conftest import run_input
from tests.support.harness import (
    ServiceHarness,
    bearer,
    operator_token,
    second_reviewer_token,
    service_token,
    state_layout,
)

EXAMPLES = int(os.environ.get("CUSTODY_STATEFUL_EXAMPLES", "5"))
STEPS = int(os.environ.get("CUSTODY_STATEFUL_STEPS", "15"))
_SPECS = [CLEAN_SPEC, spec({"kind": "ring", "inner_r": 30, "outer_r": 40}, {"kind": "circle", "r": 5})]
VARIANTS = [(compiled(s), s) for s in _SPECS]  # (svg, spec) pairs a session can hold
_projects = itertools.count()
# What the steps did, over all examples: printed at the end so a run shows it exercised binds and approvals.
TALLY: Counter[str] = Counter()


def event(what: str) -> None:
    TALLY[what] += 1


@dataclass
class Stack:
    lineage: Any
    runs: Any
    operator: tuple[tuple[str, str], ...]
    reviewer: tuple[tuple[str, str], ...]
    art_studio: tuple[tuple[str, str], ...]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    layout = state_layout(tmp_path / "var")
    reviewer = second_reviewer_token(layout)
    lineage_settings = {"database_url": f"sqlite:///{tmp_path}/lineage.db"}
    with ServiceHarness("lineage", layout, settings=lineage_settings) as lineage:
        runs_settings = {
            "database_url": f"sqlite:///{tmp_path}/runs.db",
            "blob_dir": str(tmp_path / "blobs"),
            "lineage_address": lineage.address,
        }
        with ServiceHarness("runs", layout, settings=runs_settings) as runs:
            yield Stack(
                lineage=lineage_pb2_grpc.LineageServiceStub(lineage.channel()),
                runs=runs_pb2_grpc.RunsServiceStub(runs.channel()),
                operator=bearer(operator_token(layout)),
                reviewer=bearer(reviewer),
                art_studio=bearer(service_token(layout, "art_studio")),
            )


@dataclass
class VersionModel:
    name: str
    entity: tuple[str, str]  # (artifact type, entity)
    upstream: list[str]
    data_sha256: str
    snapshot_sha256: str
    approved: bool = False


@dataclass
class SessionModel:
    name: str
    svg: str = ""  # attachment names, once attached
    spec: str = ""
    variant: int = -1
    verdict: str = ""  # the run minted by binding it


@dataclass
class Model:
    versions: dict[str, VersionModel] = field(default_factory=dict)
    latest: dict[tuple[str, str], str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)  # run -> artifact_sha256
    verdict_versions: dict[str, str] = field(default_factory=dict)  # verdict run -> feasibility_run version

    def add(self, version: lpb.Version, entity: tuple[str, str], upstream: list[str]) -> None:
        self.versions[version.name] = VersionModel(
            version.name, entity, upstream, version.data_sha256, version.snapshot_sha256
        )
        self.latest[entity] = version.name

    def stale(self) -> set[str]:
        """Every version downstream of one that is no longer its entity's latest (birth staleness included)."""
        children: dict[str, list[str]] = {}
        for version in self.versions.values():
            for parent in version.upstream:
                children.setdefault(parent, []).append(version.name)
        queue = deque(v.name for v in self.versions.values() if self.latest[v.entity] != v.name)
        found: set[str] = set()
        while queue:
            for child in children.get(queue.popleft(), ()):
                if child not in found:
                    found.add(child)
                    queue.append(child)
        return found

    def ancestors(self, name: str) -> set[str]:
        found, queue = set(), deque(self.versions[name].upstream)
        while queue:
            parent = queue.popleft()
            if parent not in found:
                found.add(parent)
                queue.extend(self.versions[parent].upstream)
        return found

    def approval_violations(self, name: str) -> list[str]:
        """What the approval gate must name when the second reviewer (who creates and requests nothing) approves."""
        version, stale = self.versions[name], self.stale()
        if version.approved:
            return ["STATUS_TRANSITION_INVALID"]
        codes = []
        for parent in version.upstream:
            upstream = self.versions[parent]
            if self.latest[upstream.entity] != parent:
                codes.append("UPSTREAM_NOT_LATEST")
            if not upstream.approved:
                codes.append("UPSTREAM_NOT_APPROVED")
            if parent in stale:
                codes.append("LINEAGE_STALE")
        if name in stale:
            codes.append("LINEAGE_STALE")
        return codes


def metadata(source: int) -> lpb.VersionMetadata:
    return lpb.VersionMetadata(intent="model", rationale="model-based test", confidence=0.9, source=source)


def decoded(call: Any) -> status.DecodedError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return status.decode(raised.value)


def test_runs_and_lineage_follow_the_model_after_every_step(stack: Stack) -> None:
    class RunsAndLineage(RuleBasedStateMachine):
        briefs = Bundle("briefs")
        candidates = Bundle("candidates")
        sessions = Bundle("sessions")

        def __init__(self) -> None:
            super().__init__()
            self.project = f"sm{next(_projects)}"
            self.model = Model()
            self.entities = itertools.count()

        # ---- lineage: briefs (people) and candidates (art_studio), created and revised ----------------------------

        def _create(self, kind: str, entity: str, data: dict[str, str], upstream: list[str], caller: Any) -> str:
            request = lpb.CreateVersionRequest(
                parent=f"projects/{self.project}/artifacts/{kind}/{entity}",
                metadata=metadata(lpb.SOURCE_HUMAN if kind == "design_brief" else lpb.SOURCE_AI),
                upstream=upstream,
            )
            request.data.update(data)
            created = stack.lineage.CreateVersion(request, metadata=caller, timeout=30)
            self.model.add(created.version, (kind, entity), upstream)
            return str(created.version.name)

        @initialize(target=briefs)
        def first_brief(self) -> str:
            return self.write_brief()

        @rule(target=briefs)
        def write_brief(self) -> str:
            entity = f"brief-{next(self.entities)}"
            self._create("design_brief", entity, {"prompt": "12 petals"}, [], stack.operator)
            return entity

        @rule(brief=briefs)
        def revise_brief(self, brief: str) -> None:
            self._create("design_brief", brief, {"prompt": "a rope band too"}, [], stack.operator)

        @rule(target=candidates, brief=briefs, variant=st.sampled_from(range(len(VARIANTS))), old=st.booleans())
        def record_candidate(self, brief: str, variant: int, old: bool) -> tuple[str, int]:
            """art_studio records a candidate on the brief's latest version (or on its first: stale at birth when
            that one was revised since)."""
            parent = self.model.latest[("design_brief", brief)]
            if old:
                parent = min((v for v in self.model.versions.values() if v.entity == ("design_brief", brief)),
                             key=lambda v: int(v.name.rsplit("/", 1)[1])).name  # fmt: skip
            svg, spec_bytes = VARIANTS[variant]
            data = {"svg_sha256": sha256_bytes(svg), "spec_sha256": sha256_bytes(spec_bytes)}
            entity = f"candidate-{next(self.entities)}"
            self._create("svg_candidate", entity, data, [parent], stack.art_studio)
            return entity, variant

        @rule(candidate=candidates)
        def revise_candidate(self, candidate: tuple[str, int]) -> None:
            entity, variant = candidate
            latest = self.model.versions[self.model.latest[("svg_candidate", entity)]]
            svg, spec_bytes = VARIANTS[variant]
            data = {"svg_sha256": sha256_bytes(svg), "spec_sha256": sha256_bytes(spec_bytes)}
            brief = self.model.versions[latest.upstream[0]].entity
            self._create("svg_candidate", entity, data, [self.model.latest[brief]], stack.art_studio)

        # ---- runs: sessions, geometry, binding -------------------------------------------------------------------

        @rule(target=sessions, candidate=candidates)
        def open_session(self, candidate: tuple[str, int]) -> SessionModel:
            """The operator opens a design session and attaches a candidate's geometry (SVG and spec)."""
            variant = candidate[1]
            run = stack.runs.CreateRun(
                runs_pb2.CreateRunRequest(run=run_input(mode="design_session")), metadata=stack.operator, timeout=30
            )
            self.model.runs[run.name] = run.artifact_sha256
            session = SessionModel(run.name)
            self.attach_geometry(session, variant)
            return session

        @rule(session=sessions, variant=st.sampled_from(range(len(VARIANTS))))
        def attach_geometry(self, session: SessionModel, variant: int) -> None:
            """New geometry replaces the session's latest, until it is bound from: then it is refused."""
            svg, spec_bytes = VARIANTS[variant]
            items = [
                runs_pb2.NewAttachment(kind="geometry_svg", filename="c.svg", data=svg),
                runs_pb2.NewAttachment(kind="geometry_spec_json", filename="c.json", data=spec_bytes),
            ]
            request = runs_pb2.BatchCreateAttachmentsRequest(run=session.name, attachments=items)
            if session.verdict:
                error = decoded(lambda: stack.runs.BatchCreateAttachments(request, metadata=stack.operator, timeout=30))
                assert (error.code, error.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "RUN_SEALED")
                event("attach refused: RUN_SEALED")
                return
            attached = stack.runs.BatchCreateAttachments(request, metadata=stack.operator, timeout=30).attachments
            session.svg, session.spec, session.variant = attached[0].name, attached[1].name, variant

        @rule(
            session=sessions, candidates=st.lists(candidates, min_size=1, max_size=4, unique=True), match=st.booleans()
        )
        def bind(self, session: SessionModel, candidates: list[tuple[str, int]], match: bool) -> None:
            """Binds the session's geometry to a candidate's latest version (one whose digests match, when `match`
            and there is one): runs mints a verdict and records it in lineage as a feasibility_run derived from that
            version. A session is bound once; geometry the candidate did not record is refused, minting nothing."""
            if session.verdict:
                return
            matching = [c for c in candidates if c[1] == session.variant]
            entity, variant = (matching or candidates)[0] if match else candidates[0]
            version = self.model.latest[("svg_candidate", entity)]
            request = runs_pb2.BindCandidateRequest(
                run=session.name, attachments=[session.svg, session.spec], lineage_candidate=version
            )
            if variant != session.variant:
                before = len(self.model.runs)
                error = decoded(lambda: stack.runs.BindCandidate(request, metadata=stack.operator, timeout=30))
                assert error.code in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT), error
                assert len(self.model.runs) == before
                event(f"bind refused: {error.reason}")
                return
            verdict = stack.runs.BindCandidate(request, metadata=stack.operator, timeout=30).run
            session.verdict = verdict.name
            self.model.runs[verdict.name] = verdict.artifact_sha256
            delivered = self._delivered(verdict.name)
            assert delivered.lineage.candidate == version
            recorded = stack.lineage.GetVersion(
                lpb.GetVersionRequest(name=delivered.lineage.version), metadata=stack.operator, timeout=30
            )
            assert recorded.data["run"] == verdict.name and list(recorded.upstream) == [version]
            self.model.add(recorded, ("feasibility_run", entity), [version])
            self.model.verdict_versions[verdict.name] = recorded.name
            event("bound" + (" (stale at birth)" if recorded.name in self.model.stale() else ""))

        @rule(target=candidates, brief=briefs, variant=st.sampled_from(range(len(VARIANTS))))
        def design_and_bind(self, brief: str, variant: int) -> tuple[str, int]:
            """The whole governed flow in one step: a candidate on the brief, a session with its geometry, bound."""
            candidate = self.record_candidate(brief, variant, old=False)
            self.bind(self.open_session(candidate), [candidate], match=True)
            return candidate

        def _delivered(self, run: str) -> runs_pb2.Run:
            """The verdict once the outbox delivered it (a wait for the state, not a timing assertion)."""
            deadline = time.monotonic() + 30
            while True:
                found = stack.runs.GetRun(runs_pb2.GetRunRequest(name=run), metadata=stack.operator, timeout=30)
                if found.lineage.state != "PENDING" or time.monotonic() > deadline:
                    assert found.lineage.state == "DELIVERED", found.lineage
                    return found
                time.sleep(0.05)

        # ---- approvals ---------------------------------------------------------------------------------------------

        @precondition(lambda self: bool(self.model.versions))
        @rule(data=st.data())
        def approve(self, data: st.DataObject) -> None:
            # Mostly a version the model says can be approved (so chains get approved far enough to go stale), else
            # any undecided one, now and then one already approved.
            approvable = sorted(n for n in self.model.versions if not self.model.approval_violations(n))
            undecided = sorted(n for n, v in self.model.versions.items() if not v.approved)
            pick = data.draw(st.integers(0, 5))
            pool = approvable if pick < 3 and approvable else undecided if pick < 5 and undecided else None
            name = data.draw(st.sampled_from(pool or sorted(self.model.versions)))
            expected = self.model.approval_violations(name)
            request = lpb.ApproveRequest(name=name, rationale="looks right")
            if not expected:
                approved = stack.lineage.Approve(request, metadata=stack.reviewer, timeout=30)
                assert approved.status.status == lpb.STATUS_APPROVED
                self.model.versions[name].approved = True
                event(f"approved a {self.model.versions[name].entity[0]}")
                return
            error = decoded(lambda: stack.lineage.Approve(request, metadata=stack.reviewer, timeout=30))
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION and error.reason == expected[0], (error, expected)
            event(f"approval refused: {error.reason}")
            if expected != ["STATUS_TRANSITION_INVALID"]:
                assert sorted(error.metadata["violations"].split(",")) == sorted(expected)

        @precondition(lambda self: any(v.entity[0] == "design_brief" for v in self.model.versions.values()))
        @rule(data=st.data())
        def operator_approves_own_brief(self, data: st.DataObject) -> None:
            """Four eyes: the person who wrote a brief never approves it, whatever else holds."""
            briefs = sorted(n for n, v in self.model.versions.items() if v.entity[0] == "design_brief")
            name = data.draw(st.sampled_from(briefs))
            request = lpb.ApproveRequest(name=name, rationale="mine")
            error = decoded(lambda: stack.lineage.Approve(request, metadata=stack.operator, timeout=30))
            assert error.code == grpc.StatusCode.FAILED_PRECONDITION
            if not self.model.versions[name].approved:
                assert error.reason == "SELF_APPROVAL"

        @rule()
        def approve_a_version_that_does_not_exist(self) -> None:
            missing = f"projects/{self.project}/artifacts/design_brief/nobody/versions/1"
            request = lpb.ApproveRequest(name=missing, rationale="x")
            error = decoded(lambda: stack.lineage.Approve(request, metadata=stack.reviewer, timeout=30))
            assert error.code == grpc.StatusCode.NOT_FOUND

        # ---- invariants, after every step ------------------------------------------------------------------------

        @invariant()
        def every_version_reads_back_as_the_model_says(self) -> None:
            stale = self.model.stale()
            for name, expected in self.model.versions.items():
                version = stack.lineage.GetVersion(
                    lpb.GetVersionRequest(name=name), metadata=stack.operator, timeout=30
                )
                assert (version.data_sha256, version.snapshot_sha256) == (
                    expected.data_sha256,
                    expected.snapshot_sha256,
                )
                assert list(version.upstream) == expected.upstream
                assert version.latest == (self.model.latest[expected.entity] == name)
                wanted = lpb.STATUS_APPROVED if expected.approved else lpb.STATUS_DRAFT
                assert version.status.status == wanted, name
                assert (version.health.health == lpb.HEALTH_STALE) == (name in stale), name
                if expected.approved and name in stale:  # approved work goes stale only when its lineage moved on
                    assert any(
                        self.model.latest[self.model.versions[a].entity] != a for a in self.model.ancestors(name)
                    )

        @invariant()
        def list_stale_is_the_models_stale_set(self) -> None:
            found, token = set(), ""
            while True:
                page = stack.lineage.ListStale(
                    lpb.ListStaleRequest(parent=f"projects/{self.project}", page_size=100, page_token=token),
                    metadata=stack.operator,
                    timeout=30,
                )
                found |= {v.name for v in page.versions}
                token = page.next_page_token
                if not token:
                    break
            assert found == self.model.stale()

        @invariant()
        def every_run_reads_back_and_verifies(self) -> None:
            for name, digest in self.model.runs.items():
                run = stack.runs.GetRun(runs_pb2.GetRunRequest(name=name), metadata=stack.operator, timeout=30)
                assert run.artifact_sha256 == digest
                if name in self.model.verdict_versions:
                    assert (run.lineage.state, run.lineage.version) == ("DELIVERED", self.model.verdict_versions[name])
                verified = stack.runs.VerifyRun(
                    runs_pb2.VerifyRunRequest(name=name), metadata=stack.operator, timeout=30
                )
                assert verified.ok, verified.problems

    run_state_machine_as_test(
        RunsAndLineage,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    print("steps that decided something:", dict(sorted(TALLY.items())))
