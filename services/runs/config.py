"""Settings of the runs service (`CUSTODY_RUNS_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field

from services.common.config import PEER_ADDRESS_DEFAULT, Port, StatefulServiceSettings
from services.common.content_credentials.layout import anchors_file, signer_directory


class RunsSettings(StatefulServiceSettings):
    service: ClassVar[str] = "runs"

    port: Port = 50052
    # Measured with bench.runs.bench_runs, 3 alternating rounds (BENCH_SERVICE_SETTINGS): 64 MiB uploads reach 0.42x
    # the sha256 rate with it and 0.33x without (medians); mints and attaches did not change. The GIL interval and
    # gc.freeze knobs showed no gain here and stay off.
    keep_freed_memory: bool = True
    ai_gateway_address: str | None = Field(default=None, description=PEER_ADDRESS_DEFAULT)
    lineage_address: str | None = Field(default=None, description=PEER_ADDRESS_DEFAULT)
    # filesystem: blobs under blob_dir (the default). database: blobs in the runs database, for replicas that
    # share a database but no filesystem.
    blob_backend: Literal["filesystem", "database"] = "filesystem"
    blob_dir: Path | None = Field(default=None, description="default: <state_dir>/blobs (also the upload staging area)")
    max_attachment_bytes: int = Field(default=64 * 1024 * 1024, ge=1, le=4 * 1024 * 1024 * 1024)
    # Feasibility engine: the narrowest feature the cutting tool can make, and whether path/text are refused.
    tool_diameter_mm: float = Field(default=0.5, gt=0, le=50, allow_inf_nan=False)
    cnc_safe: bool = True
    # Content credentials (services/runs/domain/credentials.py): the signer's key and chain, and the trust anchors
    # VerifyRun checks credentialed assets against; both written by `custody init`. Without the signer directory,
    # an attachment that asks for credentials is refused (CONTENT_CREDENTIALS_UNAVAILABLE).
    content_credentials_dir: Path | None = Field(default=None, description="default: <state_dir>/c2pa/runs")
    content_credentials_anchors: Path | None = Field(default=None, description="default: <state_dir>/c2pa/anchors.pem")

    @property
    def resolved_blob_dir(self) -> Path:
        return self.blob_dir or self.state_dir / "blobs"

    @property
    def resolved_content_credentials_dir(self) -> Path:
        return self.content_credentials_dir or signer_directory(self.state_dir, self.service)

    @property
    def resolved_content_credentials_anchors(self) -> Path:
        return self.content_credentials_anchors or anchors_file(self.state_dir)
