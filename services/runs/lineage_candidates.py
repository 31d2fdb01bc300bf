"""Reads svg_candidate versions from lineage for BindCandidate, so a verdict can be checked against its candidate."""

from __future__ import annotations

import grpc
from google.protobuf import struct_pb2

from custody.lineage.v1 import lineage_pb2
from services.common import status
from services.common.clients import ServiceClients
from services.common.errors import NotFound, Unavailable
from services.runs.domain.ports import CandidateRecord

# What a caller is told to wait before binding again when lineage could not be asked (RetryInfo).
RETRY_AFTER_S = 2.0


class LineageCandidates:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def read(self, name: str) -> CandidateRecord:
        try:
            version = await self._clients.stub("lineage").GetVersion(lineage_pb2.GetVersionRequest(name=name))
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            if decoded.code is grpc.StatusCode.NOT_FOUND:
                raise NotFound(
                    "CANDIDATE_NOT_FOUND",
                    f"lineage has no version {name}; name the svg_candidate version art_studio recorded",
                    metadata={"lineage_candidate": name},
                ) from None
            answer = " ".join(part for part in (decoded.code.name, decoded.reason) if part)
            raise Unavailable(
                "LINEAGE_UNAVAILABLE",
                f"the lineage candidate could not be read (lineage answered {answer}: {decoded.message}); "
                "nothing was minted, try again",
                metadata={"lineage_candidate": name},
                retry_after_s=RETRY_AFTER_S,
            ) from None
        return CandidateRecord(name, _digest(version.data, "svg_sha256"), _digest(version.data, "spec_sha256"))


def _digest(data: struct_pb2.Struct, key: str) -> str:
    """A recorded digest, or "" when it is missing or not a string (which the binding then refuses)."""
    value = data.fields.get(key)
    return value.string_value if value is not None else ""
