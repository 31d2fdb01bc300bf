"""Records minted runs in lineage (a feasibility_run version derived from the bound candidate), for the outbox."""

from __future__ import annotations

import grpc
from google.protobuf import json_format
from opentelemetry import context as otel_context
from opentelemetry import propagate

from custody.lineage.v1 import lineage_pb2
from services.common import status
from services.common.clients import ServiceClients
from services.runs.model import OutboxMessage
from services.runs.outbox import Refused, RetryLater
from services.runs.witnessing import CheckpointWitness

KIND = "lineage.create_version"
# Codes that mean "not now" rather than "never".
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)


class LineageRecorder:
    def __init__(self, clients: ServiceClients, witness: CheckpointWitness | None = None) -> None:
        self._clients = clients
        self._witness = witness

    async def deliver(self, message: OutboxMessage) -> str:
        if message.kind != KIND:
            raise Refused(f"unknown outbox message kind {message.kind!r}")
        request = json_format.ParseDict(
            {**message.payload, "request_id": message.idempotency_key}, lineage_pb2.CreateVersionRequest()
        )
        # The lineage write joins the trace of the mint that asked for it.
        token = otel_context.attach(propagate.extract({"traceparent": message.traceparent}))
        try:
            response = await self._clients.stub("lineage").CreateVersion(request)
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            detail = f"lineage answered {decoded.code.name} {decoded.reason}: {decoded.message}"
            if decoded.code in TRANSIENT:
                raise RetryLater(detail) from None
            raise Refused(detail) from None
        finally:
            otel_context.detach(token)
        if self._witness is not None:  # each delivery hands lineage runs' latest checkpoint too
            await self._witness.hand_over()
        return str(response.version.name)
