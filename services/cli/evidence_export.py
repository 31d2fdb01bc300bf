"""Gathering an evidence bundle's inputs from the authorities over gRPC, for `custody evidence export`.

A run's provenance: the run (runs GetRun, and VerifyRun: its stored record must still hash to its digest), every
attachment and its bytes (ListAttachments, ReadAttachment), the AI calls its ai_provenance_json attachments name
(ai_gateway GetCall: the envelope art_studio attaches names the gateway's call), and the lineage versions its
lineage record names (the candidate and the feasibility_run version, lineage GetVersion). An approval summary:
the approved version, the status change that approved it, the type registration it was checked against and its
upstream versions. Every record the statement relies on gets its inclusion proof from its own authority
(GetInclusionProof by record name, at the latest checkpoint), waiting as RetryInfo says while a record is newer
than the last checkpoint, up to a bounded total.

Digests come from the record's own authority: artifact, attachment and snapshot digests from the records, a call's
record_sha256 and a type's definition_sha256 from their leaves (the gateway and lineage expose them nowhere else).
Nothing here decides what a bundle proves: services/common/evidence builds, writes and verifies it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

from custody.ai_gateway.v1 import gateway_pb2
from custody.common.v1 import ledger_pb2
from custody.lineage.v1 import lineage_pb2
from custody.runs.v1 import runs_pb2
from services.common import status
from services.common.evidence import records, statement
from services.common.evidence.bundle import LedgerRecord
from services.common.evidence.records import RecordKind
from services.common.resource_names import VERSION_NAME

AI_PROVENANCE_KIND = "ai_provenance_json"
NOT_YET_CHECKPOINTED = "NOT_YET_CHECKPOINTED"
DEFAULT_WAIT_S = 30.0
# When RetryInfo says "now" (or nothing), ask again after this long rather than at once.
MIN_RETRY_S = 0.05
ATTACHMENT_PAGE = 500
# What an attached envelope must say as the gateway's record of its call does (proto field names, as attached).
ENVELOPE_FIELDS = ("request_id", "operation", "provider", "model", "prompt_sha256", "response_sha256")
_RUN_PREFIX = "runs/"


class ExportError(Exception):
    """Why nothing was exported, in words a person can act on (the command exits 1 with it)."""


@dataclass(frozen=True)
class Export:
    """What the bundle will hold: the statement, the ledger records it relies on (with proofs), the subjects'
    bytes and the verifier key each origin's checkpoints name."""

    record: str
    claims: dict[str, Any]
    ledger_records: tuple[LedgerRecord, ...]
    subject_files: tuple[bytes, ...] = ()
    verifier_keys: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


Stubs = Callable[[str], Any]  # service name -> its async stub (ServiceClients.stub)


class Exporter:
    def __init__(
        self,
        stubs: Stubs,
        *,
        wait_s: float = DEFAULT_WAIT_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stubs = stubs
        self._wait_s = wait_s
        self._sleep = sleep
        self._clock = clock
        self._verifier_keys: dict[str, str] = {}

    async def export(self, record: str) -> Export:
        """The bundle of `record`: a run (runs/<id>) or an approved lineage version."""
        if record.startswith(_RUN_PREFIX) and "/" not in record.removeprefix(_RUN_PREFIX):
            return await self.run(record)
        if VERSION_NAME.fullmatch(record):
            return await self.approval(record)
        raise ExportError(_not_exportable(record))

    # ---- a run's provenance -------------------------------------------------------------------------------------

    async def run(self, name: str) -> Export:
        runs = self._stubs("runs")
        run = await runs.GetRun(runs_pb2.GetRunRequest(name=name))
        # The statement repeats the run's fields; its leaf holds only their digest, which runs recomputes here.
        verified = await runs.VerifyRun(runs_pb2.VerifyRunRequest(name=run.name))
        if not verified.ok:
            problems = "; ".join(f"{p.subject}: {p.problem}" for p in verified.problems)
            raise ExportError(f"{run.name} fails VerifyRun, so its record cannot be vouched for: {problems}")
        attachments = await self._attachments(run.name)
        contents = {a.digest.sha256: await self._read(a) for a in _unique_blobs(attachments)}
        notes: list[str] = []
        call_names = _calls_named(attachments, contents, notes)
        lineage = [n for n in dict.fromkeys((run.lineage.candidate, run.lineage.version)) if n]
        if run.lineage.candidate and not run.lineage.version:
            notes.append(
                f"{run.name}'s feasibility_run version is not in lineage: the bundle names only its candidate ("
                + (
                    f"lineage refused the record: {run.lineage.error})"
                    if run.lineage.state == "FAILED"
                    else f"delivery {run.lineage.state or 'pending'}: export again once it is delivered)"
                )
            )
        versions, calls = await asyncio.gather(
            asyncio.gather(*(self._version(v) for v in lineage)),
            asyncio.gather(*(self._call(c, *named) for c, named in call_names.items())),
        )
        wanted = [
            ("runs", records.RUN, run.name),
            *(("runs", records.ATTACHMENT, a.name) for a in attachments),
            *(("lineage", records.VERSION, v.name) for v in versions),
            *(("ai_gateway", records.AI_CALL, c.name) for c in calls),
        ]
        proven = await self._prove_all(wanted)
        leaves = {(r.kind, r.record_name): r for r in proven}
        claims = statement.run_provenance(
            statement.RunInput(
                name=run.name,
                artifact_sha256=run.artifact_sha256,
                mode=run.mode,
                tool_id=run.tool_id,
                request_id=run.request_id,
                created_at=run.create_time.ToDatetime(tzinfo=UTC),
                engine_id=run.tool_id if run.engine_version else "",
                engine_version=run.engine_version,
                attachments=[statement.AttachmentInput(a.name, a.filename, a.digest.sha256) for a in attachments],
                lineage=[statement.Digested(v.name, v.snapshot_sha256) for v in versions],
                ai_calls=[
                    statement.AiCallInput(
                        name=c.name,
                        record_sha256=_leaf_digest(leaves[(records.AI_CALL.leaf_kind, c.name)], records.AI_CALL),
                        model=c.envelope.model,
                        provider=c.envelope.provider,
                        request_id=c.envelope.request_id,
                    )
                    for c in calls
                ],
            )
        )
        return Export(name, claims, tuple(proven), tuple(contents.values()), dict(self._verifier_keys), tuple(notes))

    async def _attachments(self, run: str) -> list[runs_pb2.Attachment]:
        """Every attachment of the run, in ledger order (the order they were recorded in)."""
        found: list[runs_pb2.Attachment] = []
        request = runs_pb2.ListAttachmentsRequest(run=run, page_size=ATTACHMENT_PAGE)
        while True:
            page = await self._stubs("runs").ListAttachments(request)
            found.extend(page.attachments)
            if not page.next_page_token:
                return sorted(found, key=lambda a: (a.ledger.leaf_index, a.create_time.ToMicroseconds(), a.name))
            request.page_token = page.next_page_token

    async def _read(self, attachment: runs_pb2.Attachment) -> bytes:
        chunks = [
            message.chunk
            async for message in self._stubs("runs").ReadAttachment(
                runs_pb2.ReadAttachmentRequest(name=attachment.name)
            )
        ]
        data = b"".join(chunks)
        if hashlib.sha256(data).hexdigest() != attachment.digest.sha256:  # runs re-verifies; so do we
            raise ExportError(f"the bytes runs served for {attachment.name} do not hash to its digest")
        return data

    async def _call(self, name: str, attachment: runs_pb2.Attachment, attached: dict[str, Any]) -> gateway_pb2.Call:
        """The gateway's record of a call an attached envelope names; the envelope must agree with it."""
        try:
            call: gateway_pb2.Call = await self._stubs("ai_gateway").GetCall(gateway_pb2.GetCallRequest(name=name))
        except grpc.RpcError as exc:
            error = status.decode(exc)
            if error.code is not grpc.StatusCode.NOT_FOUND:
                raise
            raise ExportError(
                f"{attachment.name} ({attachment.filename}) names the AI call {name}, which ai_gateway does not "
                f"have ({error.reason or error.code.name}: {error.message})"
            ) from None
        for key in ENVELOPE_FIELDS:
            recorded = getattr(call.envelope, key)
            if attached.get(key, "") != recorded:
                raise ExportError(
                    f"{attachment.name} ({attachment.filename}) says {key} {attached.get(key, '')!r} for {name}; "
                    f"ai_gateway's record of the call says {recorded!r}"
                )
        return call

    # ---- an approval --------------------------------------------------------------------------------------------

    async def approval(self, name: str) -> Export:
        version = await self._version(name)
        decision = version.status
        if decision.status != lineage_pb2.STATUS_APPROVED:
            raise ExportError(
                f"{name} is not approved (its status is {lineage_pb2.Status.Name(decision.status)} at revision "
                f"{decision.revision}); only an approved version has an approval to export"
            )
        decision_record = f"{name}/status/{decision.revision}"
        type_record = records.type_record(version.artifact_type, version.metadata.schema_version)
        upstream = await asyncio.gather(*(self._version(u) for u in version.upstream))
        proven = await self._prove_all(
            [
                ("lineage", records.VERSION, name),
                ("lineage", records.APPROVAL, decision_record),
                ("lineage", records.TYPE, type_record),
                *(("lineage", records.VERSION, u.name) for u in upstream),
            ]
        )
        registration = next(r for r in proven if r.record_name == type_record)
        claims = statement.approval_summary(
            statement.ApprovalInput(
                record_name=decision_record,
                reviewer=decision.actor.id,
                decided_at=datetime.fromisoformat(decision.update_time),
                policy_name=type_record,
                policy_sha256=_leaf_digest(registration, records.TYPE),
                approved=[statement.Digested(name, version.snapshot_sha256)],
                request_id=decision.request_id,
                upstream=[statement.Digested(u.name, u.snapshot_sha256) for u in upstream],
                rationale=decision.rationale,
            )
        )
        return Export(name, claims, tuple(proven), (), dict(self._verifier_keys))

    async def _version(self, name: str) -> lineage_pb2.Version:
        version: lineage_pb2.Version = await self._stubs("lineage").GetVersion(lineage_pb2.GetVersionRequest(name=name))
        return version

    # ---- proofs -------------------------------------------------------------------------------------------------

    async def _prove_all(self, wanted: Sequence[tuple[str, RecordKind, str]]) -> list[LedgerRecord]:
        return list(await asyncio.gather(*(self._prove(service, kind, name) for service, kind, name in wanted)))

    async def _prove(self, service: str, kind: RecordKind, record_name: str) -> LedgerRecord:
        """The record's inclusion proof at its authority's latest checkpoint; a record newer than that checkpoint
        is asked for again when RetryInfo says the next one is due, for at most the export's wait in total."""
        request = ledger_pb2.GetInclusionProofRequest(record_name=record_name)
        deadline = self._clock() + self._wait_s
        while True:
            try:
                proof: ledger_pb2.InclusionProof = await self._stubs(service).GetInclusionProof(request)
                break
            except grpc.RpcError as exc:
                error = status.decode(exc)
                if error.reason != NOT_YET_CHECKPOINTED:
                    raise
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise ExportError(
                        f"{service} has not signed a checkpoint covering {record_name} after {self._wait_s:g} s "
                        f"({error.message}); it signs every ledger_checkpoint_interval_s seconds: export again "
                        "shortly, or pass a longer --wait"
                    ) from None
                await self._sleep(min(max(error.retry_after_s or 0.0, MIN_RETRY_S), remaining))
        if proof.kind != kind.leaf_kind or proof.record_name != record_name:
            raise ExportError(
                f"{service} proved its {proof.kind} record {proof.record_name} when asked for the {kind.leaf_kind} "
                f"record {record_name}"
            )
        checkpoint = proof.checkpoint
        if checkpoint.verifier_key:
            self._verifier_keys[checkpoint.origin] = checkpoint.verifier_key
        return LedgerRecord(
            service=service,
            origin=checkpoint.origin,
            kind=proof.kind,
            record_name=proof.record_name,
            leaf=proof.leaf.decode("utf-8"),
            leaf_index=proof.leaf_index,
            tree_size=checkpoint.tree_size,
            inclusion_proof=tuple(proof.hashes),
            checkpoint=checkpoint.note,
        )


def _not_exportable(record: str) -> str:
    if record.startswith(_RUN_PREFIX) and "/attachments/" in record:
        run = record.split("/attachments/", 1)[0]
        return f"{record} is an attachment: export its run ({run}), whose statement names every attachment"
    if record.startswith("calls/"):
        return f"{record} is an AI call: export the run that relies on it, whose statement names the call"
    return (
        f"{record!r} is not a record Custody exports: name a run (runs/<id>) or an approved lineage version "
        "(projects/<project>/artifacts/<type>/<entity>/versions/<n>)"
    )


def _unique_blobs(attachments: Sequence[runs_pb2.Attachment]) -> list[runs_pb2.Attachment]:
    """One attachment per distinct blob: a subject file is named by its digest, so it is read once."""
    return list({a.digest.sha256: a for a in reversed(attachments)}.values())


def _calls_named(
    attachments: Sequence[runs_pb2.Attachment], contents: dict[str, bytes], notes: list[str]
) -> dict[str, tuple[runs_pb2.Attachment, dict[str, Any]]]:
    """The gateway calls the run's AI provenance envelopes name (art_studio attaches each call's envelope, as
    proto JSON, with `call` = the gateway's call name), each with the first attachment naming it and its envelope."""
    found: dict[str, tuple[runs_pb2.Attachment, dict[str, Any]]] = {}
    for attachment in attachments:
        if attachment.kind != AI_PROVENANCE_KIND:
            continue
        try:
            envelope = json.loads(contents[attachment.digest.sha256])
        except (json.JSONDecodeError, UnicodeDecodeError):
            envelope = None
        call = envelope.get("call") if isinstance(envelope, dict) else None
        if not isinstance(call, str) or not call.startswith("calls/"):
            notes.append(
                f"{attachment.name} ({attachment.filename}) is not a gateway envelope naming its call: it is a "
                "subject, but no AI call is resolved from it"
            )
            continue
        found.setdefault(call, (attachment, envelope))
    return found


def _leaf_digest(record: LedgerRecord, kind: RecordKind) -> str:
    assert kind.digest_key is not None
    digest = json.loads(record.leaf).get("digests", {}).get(kind.digest_key)
    if not isinstance(digest, str):
        raise ExportError(f"the {record.service} leaf of {record.record_name} carries no {kind.digest_key}")
    return digest
