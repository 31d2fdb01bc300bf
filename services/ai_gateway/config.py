"""Settings of the ai_gateway service (`CUSTODY_AI_GATEWAY_*`)."""

from __future__ import annotations

from typing import ClassVar

from services.common.config import Port, StatefulServiceSettings


class AiGatewaySettings(StatefulServiceSettings):
    service: ClassVar[str] = "ai_gateway"

    port: Port = 50051
