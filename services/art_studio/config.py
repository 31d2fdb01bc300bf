"""Settings of the art_studio service (`CUSTODY_ART_STUDIO_*`)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.config import PEER_ADDRESS_DEFAULT, Port, ServiceAddress, ServiceSettings


class ArtStudioSettings(ServiceSettings):
    service: ClassVar[str] = "art_studio"

    port: Port = 50053
    ai_gateway_address: ServiceAddress = Field(default=None, description=PEER_ADDRESS_DEFAULT)
    runs_address: ServiceAddress = Field(default=None, description=PEER_ADDRESS_DEFAULT)
    lineage_address: ServiceAddress = Field(default=None, description=PEER_ADDRESS_DEFAULT)
