"""Explanations through ai_gateway: runs never talks to an AI provider itself."""

from __future__ import annotations

import grpc

from custody.ai_gateway.v1 import gateway_pb2
from services.common import status
from services.common.clients import ServiceClients
from services.common.errors import Unavailable
from services.common.protomap import on_behalf_of_caller
from services.runs.domain.ports import ExplainerAnswer

OPERATION = "explain_run_decision"
CATEGORY = "EXPLANATION"
SYSTEM_PROMPT = (
    "You explain manufacturing feasibility decisions to the operator accountable for approving them. "
    "Be factual and brief (at most 120 words); say what blocked or limited the run and what would change it."
)
MAX_TOKENS = 300


class GatewayExplainer:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def explain(self, prompt: str) -> ExplainerAnswer:
        request = gateway_pb2.GenerateTextRequest(
            operation=OPERATION,
            category=CATEGORY,
            prompt=prompt,
            system_prompt=SYSTEM_PROMPT,
            max_tokens=MAX_TOKENS,
            # The reviewer (or operator) who asked for the explanation: the gateway records them next to service:runs.
            on_behalf_of=on_behalf_of_caller(),
        )
        try:
            response = await self._clients.stub("ai_gateway").GenerateText(request)
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            answer = " ".join(part for part in (decoded.code.name, decoded.reason) if part)
            raise Unavailable("AI_GATEWAY_FAILED", f"ai_gateway answered {answer}: {decoded.message}") from None
        envelope = response.envelope
        return ExplainerAnswer(
            content=response.content,
            call=envelope.call,
            engine_id=f"{envelope.provider}/{envelope.model}",
            engine_version=envelope.engine_version,
        )
