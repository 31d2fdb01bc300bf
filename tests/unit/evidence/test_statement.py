"""in-toto Statement v1 builders: the run provenance and approval summary carry what the issue names, in the
shapes SLSA Provenance v1 and Verification Summary v1 define."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from services.common.evidence import anchors, records, statement
from tests.unit.evidence import samples


def test_run_provenance_subjects_are_the_artifact_and_each_attachment() -> None:
    claims = statement.run_provenance(samples.RUN)
    assert claims["_type"] == "https://in-toto.io/Statement/v1"
    assert claims["predicateType"] == "https://slsa.dev/provenance/v1"
    assert claims["subject"] == [
        {"name": "runs/r1", "digest": {"sha256": samples.sha(samples.ARTIFACT)}},
        {"name": "runs/r1/attachments/a1/rosette.svg", "digest": {"sha256": samples.sha(samples.SVG)}},
        {"name": "runs/r1/attachments/a2/job.gcode", "digest": {"sha256": samples.sha(samples.GCODE)}},
    ]


def test_run_provenance_names_parameters_engine_builder_and_invocation() -> None:
    predicate = statement.run_provenance(samples.RUN)["predicate"]
    definition = predicate["buildDefinition"]
    assert definition["buildType"] == statement.RUN_BUILD_TYPE
    assert definition["externalParameters"] == {"mode": "feasibility", "toolId": "cnc-router"}
    assert definition["internalParameters"] == {"feasibilityEngine": {"id": "feasibility", "version": "2.1.0"}}
    assert predicate["runDetails"] == {
        "builder": {"id": statement.RUNS_BUILDER_ID, "version": {"custody": "1.2.3"}},
        "metadata": {"invocationId": "req-1", "startedOn": "2025-03-04T05:06:07.890123Z"},
    }


def test_run_provenance_resolves_upstream_versions_and_ai_calls() -> None:
    dependencies = statement.run_provenance(samples.RUN)["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dependencies == [
        {
            "uri": samples.UPSTREAM.name,
            "digest": {"sha256": samples.UPSTREAM.sha256},
            "annotations": {"ledgerKind": "version"},
        },
        {
            "uri": "calls/c1",
            "digest": {"sha256": samples.CALL.record_sha256},
            "annotations": {"ledgerKind": "call", "model": "local-echo", "provider": "local", "requestId": "req-ai-1"},
        },
    ]


def test_a_run_without_an_engine_has_no_internal_parameters() -> None:
    run = dataclasses.replace(samples.RUN, engine_id="", engine_version="")
    assert "internalParameters" not in statement.run_provenance(run)["predicate"]["buildDefinition"]


def test_approval_summary_names_reviewer_policy_and_approved_lineage() -> None:
    claims = statement.approval_summary(samples.APPROVAL)
    assert claims["predicateType"] == "https://slsa.dev/verification_summary/v1"
    assert claims["subject"] == [{"name": samples.APPROVED.name, "digest": {"sha256": samples.APPROVED.sha256}}]
    predicate = claims["predicate"]
    assert predicate["verifier"]["id"] == "https://custody.dev/reviewers/human:alice"
    assert predicate["timeVerified"] == "2025-03-05T09:00:00.000001Z"
    assert predicate["resourceUri"] == samples.APPROVED.name
    assert predicate["policy"] == {"uri": "types/feasibility_run@2", "digest": {"sha256": samples.sha(b"policy")}}
    assert predicate["verificationResult"] == "PASSED"
    assert predicate["verifiedLevels"] == ["CUSTODY_HUMAN_APPROVAL"]
    extension = predicate[statement.APPROVAL_EXTENSION]
    assert extension["reviewer"] == "human:alice"
    assert extension["approval"] == {"name": samples.APPROVAL.record_name, "ledgerKind": "status"}
    assert extension["upstream"] == [
        {
            "uri": samples.UPSTREAM.name,
            "digest": {"sha256": samples.UPSTREAM.sha256},
            "annotations": {"ledgerKind": "version"},
        }
    ]


def test_the_payload_is_canonical_json() -> None:
    claims = statement.run_provenance(samples.RUN)
    payload = statement.payload(claims)
    assert json.loads(payload) == claims
    assert payload == json.dumps(claims, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def test_inputs_that_would_make_a_wrong_statement_are_refused() -> None:
    with pytest.raises(ValueError, match="not a lowercase hex sha256"):
        statement.run_provenance(dataclasses.replace(samples.RUN, artifact_sha256="ABC"))
    stray = statement.AttachmentInput("runs/other/attachments/a1", "x", samples.sha(b"x"))
    with pytest.raises(ValueError, match="does not belong"):
        statement.run_provenance(dataclasses.replace(samples.RUN, attachments=(stray,)))
    with pytest.raises(ValueError, match="timezone-aware"):
        statement.run_provenance(dataclasses.replace(samples.RUN, created_at=datetime(2025, 1, 1)))
    with pytest.raises(ValueError, match="at least one approved"):
        statement.approval_summary(dataclasses.replace(samples.APPROVAL, approved=()))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
        (lambda s: s.update(subject=[]), "subject is missing"),
        (lambda s: s["subject"][0].pop("name"), r"subject\[0\]: name"),
        (lambda s: s["subject"][1]["digest"].update(sha256="00"), r"subject\[1\]: digest has no"),
        (lambda s: s.pop("predicateType"), "predicateType"),
        (lambda s: s.update(predicate=[]), "predicate is"),
    ],
)
def test_problems_names_what_is_not_in_toto_v1(change: Callable[[dict[str, Any]], object], problem: str) -> None:
    claims = statement.run_provenance(samples.RUN)
    assert statement.problems(claims) == []
    change(claims)
    assert any(re.search(problem, p) for p in statement.problems(claims))


def test_a_run_statement_anchors_every_subject_and_dependency_in_its_authoritys_ledger() -> None:
    found, problems = anchors.anchors(statement.run_provenance(samples.RUN))
    assert problems == []
    assert [(a.kind, a.name, a.sha256) for a in found] == [
        (records.RUN, "runs/r1", samples.RUN.artifact_sha256),
        (records.ATTACHMENT, "runs/r1/attachments/a1", samples.sha(samples.SVG)),
        (records.ATTACHMENT, "runs/r1/attachments/a2", samples.sha(samples.GCODE)),
        (records.VERSION, samples.UPSTREAM.name, samples.UPSTREAM.sha256),
        (records.AI_CALL, "calls/c1", samples.CALL.record_sha256),
    ]
    assert (found[0].request_id, found[0].time_us) == ("req-1", 1741064767890123)
    assert found[4].request_id == "req-ai-1"


def test_an_approval_statement_anchors_the_versions_and_the_reviewers_decision() -> None:
    found, problems = anchors.anchors(statement.approval_summary(samples.APPROVAL))
    assert problems == []
    assert [(a.kind, a.name) for a in found] == [
        (records.VERSION, samples.APPROVED.name),
        (records.APPROVAL, samples.APPROVAL.record_name),
        (records.TYPE, "types/feasibility_run@2"),
        (records.VERSION, samples.UPSTREAM.name),
    ]
    decision = found[1]
    assert (decision.principal, decision.request_id, decision.sha256) == ("human:alice", "req-approve-1", None)
    assert found[2].sha256 == samples.APPROVAL.policy_sha256


def test_an_approval_whose_policy_is_not_a_type_registration_is_a_problem() -> None:
    claims = statement.approval_summary(dataclasses.replace(samples.APPROVAL, policy_name="policies/feasibility"))
    found, problems = anchors.anchors(claims)
    assert [p for p in problems if p.startswith("predicate.policy")] == [
        "predicate.policy must name the lineage type registration the approval was checked against "
        "(types/<type>@<schema version>) by uri and sha256"
    ]
    assert records.TYPE not in {a.kind for a in found}


def test_a_dependency_that_names_no_known_ledger_kind_is_a_problem() -> None:
    claims = statement.run_provenance(samples.RUN)
    claims["predicate"]["buildDefinition"]["resolvedDependencies"].append(
        {"uri": "https://example.com/x", "digest": {"sha256": samples.sha(b"x")}}
    )
    _, problems = anchors.anchors(claims)
    assert problems == [
        "predicate.buildDefinition.resolvedDependencies[2] (https://example.com/x) names no ledger record kind "
        "Custody knows"
    ]
