"""`custody demo`: the governed flow end to end against a running stack, checking every governance expectation.

brief (human) -> 3 candidates (AI, through the gateway), each with a concept image -> their SVGs and images carry
trusted content credentials (C2PA) -> bind the first (ALLOW) -> add a second reviewer -> the
operator cannot approve what they wrote or requested (four eyes) -> the second reviewer approves the chain -> revise
the brief -> the candidate and the run are stale -> approving a stale run is refused, with every reason ->
regenerate, bind, approve -> verify every run. Each step records whether its expectation held; the command exits 0
only if all did.

The operator (the token `custody init` saved) writes, generates and binds; a second person, added to the
credentials as `custody users add` does, approves. Running services pick the new person up without a restart.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.sdk.trace import TracerProvider

from custody.art_studio.v1 import art_studio_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2
from services.cli.people import add_user
from services.cli.state import StateLayout
from services.common import call_context, status
from services.common.clients import ServiceClients
from services.common.content_credentials import read_credentials
from services.common.identity import (
    REVIEWER_ROLE,
)
from services.common.protomap import dict_to_struct
from services.common.telemetry import current_trace_id
from services.common.tls.credentials import ChannelSecurity

DESIGN_PROMPT = "a classic guitar rosette with 12 petals, a rope band and an outer ring"
REVISED_PROMPT = "a classic guitar rosette with 16 petals, a herringbone band and an outer ring"
DIAMETER_MM = 100.0
DELIVERY_TIMEOUT_S = 30.0
# How long the running services may take to accept the reviewer the demo adds (they re-read credentials live).
REVIEWER_ACCEPTED_TIMEOUT_S = 15.0

# Adds a person with the reviewer role and returns (principal id, token): `custody users add NAME --role reviewer`.
AddReviewer = Callable[[], tuple[str, str]]


def add_demo_reviewer(layout: StateLayout) -> tuple[str, str]:
    """A new person with the reviewer role, `human:reviewer-<4 hex>` (a new one each run: a token is shown once,
    and only its hash is kept). Returns (principal id, token)."""
    name = f"reviewer-{secrets.token_hex(2)}"
    return f"human:{name}", add_user(layout, name, [REVIEWER_ROLE])


class ExpectationFailed(Exception):
    """A governance expectation did not hold; the step says which."""


@dataclass
class DemoReport:
    ok: bool = True
    request_ids: list[str] = field(default_factory=list)
    trace_ids: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    brief: str = ""
    runs: list[str] = field(default_factory=list)
    stale_after_revision: list[str] = field(default_factory=list)
    approval_refused_reasons: list[str] = field(default_factory=list)
    reviewer: str = ""
    self_approval_refusals: list[str] = field(default_factory=list)
    verified: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "request_ids": self.request_ids,
            "trace_ids": self.trace_ids,
            "steps": self.steps,
            "brief": self.brief,
            "runs": self.runs,
            "stale_after_revision": self.stale_after_revision,
            "approval_refused_reasons": self.approval_refused_reasons,
            "reviewer": self.reviewer,
            "self_approval_refusals": self.self_approval_refusals,
            "verified": self.verified,
        }


class Demo:
    def __init__(
        self,
        addresses: dict[str, str],
        operator_token: str,
        add_reviewer: AddReviewer,
        service_token: str | None = None,
        *,
        security: ChannelSecurity | None = None,
        service_addresses: dict[str, str] | None = None,
        service_security: ChannelSecurity | None = None,
        trust_anchors: bytes | None = None,
    ) -> None:
        self._tracer_provider = TracerProvider()
        self._tracer = self._tracer_provider.get_tracer("custody.demo")
        self._addresses = addresses
        self._security = security
        self._clients = ServiceClients(
            addresses, operator_token, tracer_provider=self._tracer_provider, security=security
        )
        self._add_reviewer = add_reviewer
        # The content-credentials root (`custody init`'s c2pa/anchors.pem) the signed assets are checked against.
        self._trust_anchors = trust_anchors
        self._reviewer_clients: ServiceClients | None = None
        # Optional: a service token, to show that a service can never approve (with TLS: with the service's
        # certificate, at the peers' mutual-TLS addresses, since its token alone is refused before authorization).
        self._service_clients = (
            ServiceClients(
                service_addresses or addresses,
                service_token,
                tracer_provider=self._tracer_provider,
                security=service_security,
            )
            if service_token
            else None
        )
        self.report = DemoReport()
        self.project = f"demo-{time.strftime('%Y%m%d')}-{secrets.token_hex(3)}"
        self._unique = secrets.token_hex(4)

    async def close(self) -> None:
        await self._clients.close()
        for clients in (self._service_clients, self._reviewer_clients):
            if clients is not None:
                await clients.close()

    async def step(self, name: str, action: Callable[[], Awaitable[str]]) -> bool:
        """Runs one step in its own trace and request id; records its outcome (never raises)."""
        request_id = f"req-demo-{self._unique}-{len(self.report.steps) + 1:02d}"
        call_context.bind_request_id(request_id)
        with self._tracer.start_as_current_span(f"demo: {name}"):
            trace_id = current_trace_id()
            try:
                detail, ok = await action(), True
            except ExpectationFailed as exc:
                detail, ok = str(exc), False
            except grpc.RpcError as exc:
                decoded = status.decode(exc)
                detail, ok = f"{decoded.code.name} {decoded.reason}: {decoded.message}", False
        self.report.request_ids.append(request_id)
        self.report.trace_ids.append(trace_id)
        self.report.steps.append({"name": name, "ok": ok, "detail": detail})
        self.report.ok = self.report.ok and ok
        return ok

    # ---- the building blocks ------------------------------------------------------------------------------------

    async def create_brief(self, prompt: str) -> str:
        response = await self._clients.stub("lineage").CreateVersion(
            lineage_pb2.CreateVersionRequest(
                parent=f"projects/{self.project}/artifacts/design_brief/brief",
                data=dict_to_struct({"prompt": prompt, "constraints": {"diameter_mm": DIAMETER_MM}}),
                metadata=lineage_pb2.VersionMetadata(
                    intent="a rosette for the customer's guitar",
                    rationale="written by the operator from the customer's request",
                    confidence=1.0,
                    source=lineage_pb2.SOURCE_HUMAN,
                ),
            )
        )
        return str(response.version.name)

    async def generate(self, prompt: str, brief: str, seed: str) -> art_studio_pb2.GenerateCandidatesResponse:
        """Three candidates in a new design session, which art_studio creates and owns."""
        answer = await self._clients.stub("art_studio").GenerateCandidates(
            art_studio_pb2.GenerateCandidatesRequest(
                prompt=prompt,
                diameter_mm=DIAMETER_MM,
                count=3,
                new_session=True,
                lineage_parent=brief,
                variant_seed=seed,
                concept_image=True,
            )
        )
        if answer.succeeded != 3:
            failures = "; ".join(
                f"{c.index}: {c.failure.reason} {c.failure.message}" for c in answer.candidates if not c.ok
            )
            raise ExpectationFailed(f"expected 3 candidates, {answer.succeeded} succeeded ({failures})")
        generated: art_studio_pb2.GenerateCandidatesResponse = answer
        return generated

    async def credentials(self, candidate: art_studio_pb2.Candidate) -> str:
        """The candidate's SVG and concept image, as they leave the system, carry trusted content credentials that
        name exactly the bytes binding checks."""
        if self._trust_anchors is None:
            raise ExpectationFailed("no content-credentials trust anchors (c2pa/anchors.pem); run `custody init`")
        checked = []
        for attachment, media_type, digest in (
            (candidate.svg_attachment, "image/svg+xml", candidate.svg_sha256),
            (candidate.concept_image_attachment, "image/png", candidate.concept_image_sha256),
        ):
            stream = self._clients.stub("runs").ReadAttachment(
                runs_pb2.ReadAttachmentRequest(name=attachment, signed=True)
            )
            signed = b"".join([message.chunk async for message in stream])
            report = await asyncio.to_thread(read_credentials, signed, media_type, self._trust_anchors)
            if not report.trusted or report.assertion is None or report.assertion.unsigned_sha256 != digest:
                raise ExpectationFailed(f"{attachment}: credentials not trusted ({'; '.join(report.problems)})")
            checked.append(f"{media_type} {report.source_type.rsplit('/', 1)[-1]}")
        recorded = (await self.version(candidate.lineage_version)).data.fields
        if recorded["concept_image_sha256"].string_value != candidate.concept_image_sha256:
            raise ExpectationFailed(f"{candidate.lineage_version} does not record the concept image's digest")
        return "trusted C2PA manifests signed by runs: " + ", ".join(checked) + "; the image is in lineage too"

    async def bind(self, session: str, candidate: art_studio_pb2.Candidate) -> runs_pb2.Run:
        response = await self._clients.stub("runs").BindCandidate(
            runs_pb2.BindCandidateRequest(
                run=session,
                attachments=[candidate.svg_attachment, candidate.spec_attachment, candidate.envelope_attachment],
                operator_notes="bound by custody demo",
                lineage_candidate=candidate.lineage_version,
            )
        )
        self.report.runs.append(response.run.name)
        if response.decision != runs_pb2.FEASIBILITY_DECISION_ALLOW:
            raise ExpectationFailed(f"expected ALLOW, got BLOCK: {'; '.join(response.reasons)}")
        return await self.lineage_recorded(response.run.name)

    async def lineage_recorded(self, run_name: str) -> runs_pb2.Run:
        """Waits for the outbox to deliver the run's feasibility_run version to lineage."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while True:
            run: runs_pb2.Run = await self._clients.stub("runs").GetRun(runs_pb2.GetRunRequest(name=run_name))
            if run.lineage.state == "DELIVERED":
                return run
            if run.lineage.state == "FAILED" or time.monotonic() > deadline:
                raise ExpectationFailed(
                    f"{run_name} was not recorded in lineage: {run.lineage.state} {run.lineage.error}"
                )
            await asyncio.sleep(0.2)

    async def approve(self, version: str, rationale: str, as_operator: bool = False) -> lineage_pb2.Version:
        """As the second reviewer (four eyes), or as the operator to show that they cannot."""
        clients = self._clients if as_operator else self._reviewer_clients
        if clients is None:
            raise ExpectationFailed("no second reviewer: the step adding one did not succeed")
        approved: lineage_pb2.Version = await clients.stub("lineage").Approve(
            lineage_pb2.ApproveRequest(name=version, rationale=rationale)
        )
        return approved

    async def add_second_reviewer(self) -> str:
        """Adds a reviewer and waits until lineage authenticates their token (the services reload credentials)."""
        principal, token = self._add_reviewer()
        self.report.reviewer = principal
        self._reviewer_clients = ServiceClients(
            self._addresses, token, tracer_provider=self._tracer_provider, security=self._security
        )
        deadline = time.monotonic() + REVIEWER_ACCEPTED_TIMEOUT_S
        while True:
            try:
                info = await self._reviewer_clients.stub("lineage").GetServiceInfo(lineage_pb2.GetServiceInfoRequest())
            except grpc.RpcError as exc:
                decoded = status.decode(exc)
                if decoded.code is not grpc.StatusCode.UNAUTHENTICATED or time.monotonic() > deadline:
                    raise ExpectationFailed(
                        f"lineage did not accept {principal}'s token within {REVIEWER_ACCEPTED_TIMEOUT_S:.0f} s "
                        f"({decoded.code.name} {decoded.reason}); services re-read the credentials file while they run"
                    ) from None
                await asyncio.sleep(0.2)
                continue
            if info.caller.id != principal:
                raise ExpectationFailed(f"lineage authenticated the new token as {info.caller.id}, not {principal}")
            return principal

    async def self_approval_refused(self, version: str) -> str:
        """The operator approving `version` must be refused as SELF_APPROVAL; returns the refusal's first entry."""
        try:
            await self.approve(version, "approving my own work", as_operator=True)
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            if decoded.reason != "SELF_APPROVAL":
                raise
            own = next((v.description for v in decoded.violations if v.description.startswith("SELF_APPROVAL")), "")
            self.report.self_approval_refusals.append(own or decoded.message)
            return f"{decoded.code.name} {decoded.reason}"
        raise ExpectationFailed(f"the operator was allowed to approve {version}, which they created or requested")

    async def version(self, name: str) -> lineage_pb2.Version:
        found: lineage_pb2.Version = await self._clients.stub("lineage").GetVersion(
            lineage_pb2.GetVersionRequest(name=name)
        )
        return found

    # ---- the flow -----------------------------------------------------------------------------------------------

    async def run(self) -> DemoReport:
        state: dict[str, Any] = {}

        async def brief() -> str:
            state["brief"] = self.report.brief = await self.create_brief(DESIGN_PROMPT)
            return f"{state['brief']} written by the operator (source human)"

        async def candidates() -> str:
            state["first"] = await self.generate(DESIGN_PROMPT, state["brief"], "demo")
            state["session"] = state["first"].run
            first = state["first"].candidates[0]
            return f"3 candidates attached to {state['session']}; candidate 0 is {first.lineage_version}"

        async def credentials() -> str:
            return await self.credentials(state["first"].candidates[0])

        async def bind_first() -> str:
            state["run"] = await self.bind(state["session"], state["first"].candidates[0])
            return f"{state['run'].name}: ALLOW, recorded in lineage as {state['run'].lineage.version}"

        async def explain() -> str:
            run = await self._clients.stub("runs").SuggestExplanation(
                runs_pb2.SuggestExplanationRequest(name=state["run"].name)
            )
            advisories = [a for a in run.advisory_inputs if a.kind == runs_pb2.ADVISORY_KIND_EXPLANATION]
            if run.explanation.status != runs_pb2.EXPLANATION_STATUS_READY or not advisories:
                raise ExpectationFailed(f"explanation {run.explanation.status}: {run.explanation.error}")
            reviewer = advisories[0].reviewed_by
            if advisories[0].review_status != runs_pb2.REVIEW_STATUS_AUTO_APPROVED or reviewer.kind != 3:
                raise ExpectationFailed("a GREEN explanation must be auto-approved by a system principal")
            return f"GREEN explanation auto-approved by {reviewer.id} (kind system), never mistaken for a human"

        async def service_cannot_approve() -> str:
            if self._service_clients is None:
                return "skipped: no service token available to try"
            try:
                await self._service_clients.stub("lineage").Approve(
                    lineage_pb2.ApproveRequest(name=state["brief"], rationale="a service trying to approve")
                )
            except grpc.RpcError as exc:
                decoded = status.decode(exc)
                if decoded.code is grpc.StatusCode.PERMISSION_DENIED:
                    return f"refused: {decoded.code.name} {decoded.reason}"
                raise
            raise ExpectationFailed("a service token was allowed to approve")

        async def second_reviewer() -> str:
            principal = await self.add_second_reviewer()
            return f"{principal} (role reviewer) added, as `custody users add` does; the running services accept it"

        async def own_work_refused() -> str:
            brief = await self.self_approval_refused(state["brief"])
            run = await self.self_approval_refused(state["run"].lineage.version)
            return (
                f"{brief} for the brief, which human:operator created, and {run} for the verdict, whose binding "
                "human:operator requested: another reviewer must approve them"
            )

        async def approve_chain() -> str:
            candidate = state["first"].candidates[0].lineage_version
            chain = [state["brief"], candidate, state["run"].lineage.version]
            for name in chain:
                approved = await self.approve(name, "reviewed in custody demo")
                if approved.status.status != lineage_pb2.STATUS_APPROVED:
                    raise ExpectationFailed(f"{name} is not APPROVED after approval")
                if approved.status.actor.id != self.report.reviewer:
                    raise ExpectationFailed(f"{name} was approved by {approved.status.actor.id}")
            return f"approved by {self.report.reviewer}: " + ", ".join(chain)

        async def revise() -> str:
            state["brief2"] = await self.create_brief(REVISED_PROMPT)
            return f"brief revised: {state['brief2']}"

        async def stale() -> str:
            watched = [state["first"].candidates[0].lineage_version, state["run"].lineage.version]
            for name in watched:
                version = await self.version(name)
                if version.health.health != lineage_pb2.HEALTH_STALE:
                    raise ExpectationFailed(f"{name} should be stale after the brief's revision")
            self.report.stale_after_revision = watched
            return "stale: " + ", ".join(watched)

        async def refused() -> str:
            late = await self.bind(state["session"], state["first"].candidates[1])
            state["late"] = late
            try:
                await self.approve(late.lineage.version, "trying to approve a run derived from a superseded brief")
            except grpc.RpcError as exc:
                decoded = status.decode(exc)
                if decoded.code is not grpc.StatusCode.FAILED_PRECONDITION:
                    raise
                self.report.approval_refused_reasons = [v.description for v in decoded.violations] or [decoded.message]
                return f"refused ({decoded.reason}): " + "; ".join(self.report.approval_refused_reasons)
            raise ExpectationFailed(f"approving {late.lineage.version} (stale lineage) was allowed")

        async def regenerate() -> str:
            # A new session: the first one has been bound from, so it is sealed against new geometry.
            state["second"] = await self.generate(REVISED_PROMPT, state["brief2"], "demo-2")
            state["run2"] = await self.bind(state["second"].run, state["second"].candidates[0])
            return f"{state['run2'].name}: ALLOW from the revised brief"

        async def approve_again() -> str:
            chain = [state["brief2"], state["second"].candidates[0].lineage_version, state["run2"].lineage.version]
            for name in chain:
                approved = await self.approve(name, "reviewed in custody demo after the revision")
                if approved.status.actor.id != self.report.reviewer:
                    raise ExpectationFailed(f"{name} was approved by {approved.status.actor.id}")
            return f"approved by {self.report.reviewer}: " + ", ".join(chain)

        async def verify() -> str:
            names = [*self.report.runs, state["session"], state["second"].run]
            for name in names:
                report = await self._clients.stub("runs").VerifyRun(runs_pb2.VerifyRunRequest(name=name))
                if not report.ok:
                    raise ExpectationFailed(f"{name} failed verification: {list(report.problems)}")
                self.report.verified += 1
            return f"{self.report.verified} runs verified (artifact hashes and attachment digests)"

        steps: list[tuple[str, Callable[[], Awaitable[str]]]] = [
            ("create design brief (human)", brief),
            ("generate 3 candidates", candidates),
            ("content credentials on the SVG and concept image", credentials),
            ("bind first candidate (ALLOW)", bind_first),
            ("explain the run (GREEN: system auto-approval)", explain),
            ("a service cannot approve", service_cannot_approve),
            ("add a second reviewer", second_reviewer),
            ("the operator cannot approve their own work", own_work_refused),
            ("approve the chain as the second reviewer", approve_chain),
            ("revise the brief", revise),
            ("candidate and run are stale", stale),
            ("approving a stale run is refused", refused),
            ("regenerate and bind again", regenerate),
            ("approve the new chain", approve_again),
            ("verify every run", verify),
        ]
        for name, action in steps:
            if not await self.step(name, action):
                break  # later steps depend on earlier ones
        return self.report
