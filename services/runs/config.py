"""Settings of the runs service (`CUSTODY_RUNS_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from services.common.config import PEER_ADDRESS_DEFAULT, Port, ServiceAddress, StatefulServiceSettings
from services.common.content_credentials.layout import anchors_file, signer_directory


class RunsSettings(StatefulServiceSettings):
    service: ClassVar[str] = "runs"

    port: Port = 50052
    # Measured with bench.runs.bench_runs, 3 alternating rounds (BENCH_SERVICE_SETTINGS): 64 MiB uploads reach 0.42x
    # the sha256 rate with it and 0.33x without (medians); mints and attaches did not change. The GIL interval and
    # gc.freeze knobs showed no gain here and stay off.
    keep_freed_memory: bool = True
    ai_gateway_address: ServiceAddress = Field(default=None, description=PEER_ADDRESS_DEFAULT)
    lineage_address: ServiceAddress = Field(default=None, description=PEER_ADDRESS_DEFAULT)
    # filesystem: blobs under blob_dir (the default). database: blobs in the runs database, for replicas that
    # share a database but no filesystem. s3: blobs in an S3-compatible bucket (services/runs/blobs/s3.py).
    blob_backend: Literal["filesystem", "database", "s3"] = "filesystem"
    blob_dir: Path | None = Field(default=None, description="default: <state_dir>/blobs (also the upload staging area)")
    # The s3 backend: objects <s3_prefix>/sha256/<hex> in s3_bucket at s3_endpoint_url (unset: AWS's own endpoint
    # for s3_region). Credentials: s3_access_key_id and s3_secret_access_key (secrets, like `token`: environment or
    # config file), else boto3's standard chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, a workload
    # identity). Path-style addressing unless told otherwise: S3-compatible servers rarely have bucket DNS names.
    s3_endpoint_url: str | None = Field(default=None, description="default: AWS S3 for s3_region")
    s3_bucket: str = Field(default="custody-blobs", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    s3_prefix: str = Field(default="custody", pattern=r"^[A-Za-z0-9._/-]{0,200}$")
    s3_region: str | None = Field(default=None, description="default: AWS_REGION, else us-east-1")
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    # Parts of one multipart upload sent at once (blobs over 8 MiB); each holds an 8 MiB part in memory.
    s3_part_uploads: int = Field(default=4, ge=1, le=16)
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
