"""Every RunsService RPC with generated hostile requests (message sequences for the upload stream): none may end
INTERNAL or UNKNOWN, and the service still answers SERVING afterwards. runs talks to a real ai_gateway (offline
local provider) and a real lineage, so explanations and lineage records take their real paths."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from custody.runs.v1 import runs_pb2 as pb
from services.cli.state import StateLayout
from tests.runs.candidates import CLEAN_SPEC, CLEAN_SVG
from tests.runs.conftest import run_input
from tests.support.fuzz import Fuzzer
from tests.support.harness import ServiceHarness


@pytest.fixture
def runs(layout: StateLayout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServiceHarness]:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the gateway answers with its offline local provider
    with (
        ServiceHarness("ai_gateway", layout, settings={"database_url": f"sqlite:///{tmp_path}/gw.db"}) as gateway,
        ServiceHarness("lineage", layout, settings={"database_url": f"sqlite:///{tmp_path}/lineage.db"}) as lineage,
    ):
        settings = {
            "database_url": f"sqlite:///{tmp_path}/runs.db",
            "blob_dir": str(tmp_path / "blobs"),
            "ai_gateway_address": gateway.address,
            "lineage_address": lineage.address,
        }
        with ServiceHarness("runs", layout, settings=settings) as harness:
            yield harness


def _run(rng: random.Random, names: list[str]) -> str:
    runs = [n for n in names if n.startswith("runs/") and "/attachments/" not in n]
    return rng.choice(runs) if runs else "runs/run_" + "0" * 32


def _attachment(rng: random.Random, names: list[str]) -> str:
    attachments = [n for n in names if "/attachments/" in n]
    return rng.choice(attachments) if attachments else _run(rng, names) + "/attachments/a"


def _upload(rng: random.Random, names: list[str]) -> list[pb.UploadAttachmentRequest]:
    body = rng.choice([CLEAN_SVG, CLEAN_SPEC, b"notes"])
    header = pb.AttachmentHeader(
        run=_run(rng, names),
        kind=rng.choice(["geometry_svg", "geometry_spec_json", "other"]),
        filename="candidate.svg",
        content_type="image/svg+xml",
        sha256=hashlib.sha256(body).hexdigest(),
    )
    cut = rng.randrange(len(body))
    return [
        pb.UploadAttachmentRequest(header=header),
        pb.UploadAttachmentRequest(chunk=body[:cut]),
        pb.UploadAttachmentRequest(chunk=body[cut:]),
    ]


def _batch(rng: random.Random, names: list[str]) -> pb.BatchCreateAttachmentsRequest:
    return pb.BatchCreateAttachmentsRequest(
        run=_run(rng, names),
        attachments=[
            pb.NewAttachment(kind="geometry_svg", filename="c.svg", content_type="image/svg+xml", data=CLEAN_SVG),
            pb.NewAttachment(kind="geometry_spec_json", filename="c.json", data=CLEAN_SPEC),
        ],
    )


SEEDS = {
    "CreateRun": lambda rng, names: pb.CreateRunRequest(
        run=run_input(mode=rng.choice(["design_session", "cnc_rosette"]))
    ),
    "GetRun": lambda rng, names: pb.GetRunRequest(name=_run(rng, names)),
    "ListRuns": lambda rng, names: pb.ListRunsRequest(page_size=1),
    "UploadAttachment": _upload,
    "BatchCreateAttachments": _batch,
    "FindMissingBlobs": lambda rng, names: pb.FindMissingBlobsRequest(sha256=[hashlib.sha256(CLEAN_SVG).hexdigest()]),
    "ReadAttachment": lambda rng, names: pb.ReadAttachmentRequest(name=_attachment(rng, names)),
    "ListAttachments": lambda rng, names: pb.ListAttachmentsRequest(run=_run(rng, names), page_size=1),
    "AttachAdvisory": lambda rng, names: pb.AttachAdvisoryRequest(
        run=_run(rng, names), advisory_id="adv-1", kind=pb.ADVISORY_KIND_NOTE, engine_id="e", summary="s"
    ),
    "ListAdvisories": lambda rng, names: pb.ListAdvisoriesRequest(run=_run(rng, names), page_size=1),
    "SuggestExplanation": lambda rng, names: pb.SuggestExplanationRequest(name=_run(rng, names)),
    "ReviewExplanation": lambda rng, names: pb.ReviewExplanationRequest(
        run=_run(rng, names), decision=pb.REVIEW_DECISION_APPROVE, rationale="reads right", expected_version=3
    ),
    "BindCandidate": lambda rng, names: pb.BindCandidateRequest(run=_run(rng, names)),
    "DiffRuns": lambda rng, names: pb.DiffRunsRequest(left=_run(rng, names), right=_run(rng, names)),
    "VerifyRun": lambda rng, names: pb.VerifyRunRequest(name=_run(rng, names)),
    "WithdrawMigrationBatch": lambda rng, names: pb.WithdrawMigrationBatchRequest(
        batch=_run(rng, names), reason="the mapping was wrong"
    ),
}


def test_no_generated_request_reaches_internal_and_the_service_keeps_serving(
    runs: ServiceHarness, layout: StateLayout
) -> None:
    fuzzer = Fuzzer(runs, layout, pb.DESCRIPTOR.services_by_name["RunsService"], SEEDS)
    fuzzer.assert_survives()
