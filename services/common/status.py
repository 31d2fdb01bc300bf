"""The one mapping between Custody errors and gRPC statuses (google.rpc.Status with ErrorInfo, BadRequest and
RetryInfo details), in both directions: servers encode, clients and the CLI decode.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

from services.common.errors import CustodyError, ErrorCode, FieldViolation

STATUS_DETAILS_KEY = "grpc-status-details-bin"
INTERNAL_MESSAGE = "internal error; the server logged it with this call's request id"


def error_domain(service: str) -> str:
    """ErrorInfo.domain for a service, e.g. "runs.custody"."""
    return f"{service}.custody"


def grpc_code(code: ErrorCode) -> grpc.StatusCode:
    return grpc.StatusCode[code.value]


def encode(error: CustodyError, service: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, bytes], ...]]:
    """(code, message, trailing metadata) for aborting a call with `error`."""
    code = grpc_code(error.code)
    details: list[any_pb2.Any] = []
    info = error_details_pb2.ErrorInfo(reason=error.reason, domain=error_domain(service), metadata=error.metadata)
    details.append(_pack(info))
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    if error.retry_after_s is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_s * 1000))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    status = status_pb2.Status(code=code.value[0], message=error.message, details=details)
    return code, error.message, ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


@dataclass(frozen=True)
class DecodedError:
    """What a caller needs from a failed RPC: code, message, ErrorInfo reason/domain, field violations."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: tuple[FieldViolation, ...] = ()
    retry_after_s: float | None = None


def decode(error: grpc.RpcError) -> DecodedError:
    """Reads the rich status a Custody server (or any AIP-style server) attached to a failed call."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or ""
    # grpc hands trailers over as (key, value) pairs; its type stubs call them _Metadatum.
    trailers = cast("Iterable[tuple[str, Any]]", error.trailing_metadata() or ())
    raw = next((value for key, value in trailers if key == STATUS_DETAILS_KEY), None)
    if raw is None:
        return DecodedError(code, message)
    status = status_pb2.Status.FromString(raw)
    reason, domain, retry = "", "", None
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend(FieldViolation(v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info_retry = error_details_pb2.RetryInfo()
            detail.Unpack(info_retry)
            retry = info_retry.retry_delay.ToMilliseconds() / 1000
    return DecodedError(code, status.message or message, reason, domain, metadata, tuple(violations), retry)
