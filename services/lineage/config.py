"""Settings of the lineage service (`CUSTODY_LINEAGE_*`)."""

from __future__ import annotations

from typing import ClassVar

from services.common.config import Port, StatefulServiceSettings


class LineageSettings(StatefulServiceSettings):
    service: ClassVar[str] = "lineage"

    port: Port = 50054
