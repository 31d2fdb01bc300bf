"""Settings of the lineage service (`CUSTODY_LINEAGE_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.common.config import Port, StatefulServiceSettings

SHIPPED_POLICIES = Path(__file__).resolve().parent / "policies"


class LineageSettings(StatefulServiceSettings):
    service: ClassVar[str] = "lineage"

    port: Port = 50054
    policies_dir: Path = Field(
        default=SHIPPED_POLICIES, description="directory of policy YAML files, all loaded and validated at start"
    )
