"""Settings of the runs service (`CUSTODY_RUNS_*`)."""

from __future__ import annotations

from typing import ClassVar

from services.common.config import Port, StatefulServiceSettings


class RunsSettings(StatefulServiceSettings):
    service: ClassVar[str] = "runs"

    port: Port = 50052
    ai_gateway_address: str = "127.0.0.1:50051"
    lineage_address: str = "127.0.0.1:50054"
