"""Settings of the art_studio service (`CUSTODY_ART_STUDIO_*`)."""

from __future__ import annotations

from typing import ClassVar

from services.common.config import Port, ServiceSettings


class ArtStudioSettings(ServiceSettings):
    service: ClassVar[str] = "art_studio"

    port: Port = 50053
    ai_gateway_address: str = "127.0.0.1:50051"
    runs_address: str = "127.0.0.1:50052"
    lineage_address: str = "127.0.0.1:50054"
