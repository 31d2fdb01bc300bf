"""Settings of the runs service (`CUSTODY_RUNS_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from services.common.config import Port, ServiceSettings


class RunsSettings(ServiceSettings):
    service: ClassVar[str] = "runs"

    port: Port = 50052
    ai_gateway_address: str = "127.0.0.1:50051"
    lineage_address: str = "127.0.0.1:50054"
    database_url: str | None = None  # default: sqlite under state_dir
    blob_dir: Path | None = None  # default: <state_dir>/blobs
