"""Settings of the lineage service (`CUSTODY_LINEAGE_*`)."""

from __future__ import annotations

from typing import ClassVar

from services.common.config import Port, ServiceSettings


class LineageSettings(ServiceSettings):
    service: ClassVar[str] = "lineage"

    port: Port = 50054
    database_url: str | None = None  # default: sqlite under state_dir
