"""Proto <-> domain conversions for the shared messages: custody.common.v1, and the well-known types a request
carries (Struct, Timestamp). This is the one place a request's Struct becomes a dict and its Timestamp a datetime,
so every Struct is held to services.common.json_limits and every Timestamp to the range datetime can hold."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format, struct_pb2, timestamp_pb2

from custody.common.v1 import common_pb2
from services.common import call_context
from services.common.catalog import SERVICES
from services.common.errors import FieldViolation, InvalidArgument
from services.common.identity import Principal, PrincipalKind
from services.common.json_limits import check_struct
from services.common.telemetry import current_trace_id
from services.common.version import CUSTODY_VERSION

_KINDS = {
    PrincipalKind.SERVICE: common_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.HUMAN: common_pb2.PRINCIPAL_KIND_HUMAN,
    PrincipalKind.SYSTEM: common_pb2.PRINCIPAL_KIND_SYSTEM,
}


def principal_to_proto(principal: Principal) -> common_pb2.Principal:
    return common_pb2.Principal(id=principal.id, kind=_KINDS[principal.kind], roles=sorted(principal.roles))


def on_behalf_of_caller() -> common_pb2.Principal | None:
    """What a service names as on_behalf_of when it calls a peer for its own authenticated caller: that caller
    (id and kind, no roles) when it is a person; None when a service or the system called (it acts for itself)."""
    caller = call_context.principal()
    if caller is None or caller.kind is not PrincipalKind.HUMAN:
        return None
    return common_pb2.Principal(id=caller.id, kind=_KINDS[caller.kind])


def principal_kind_from_proto(kind: int) -> PrincipalKind | None:
    """A request's PrincipalKind; None for PRINCIPAL_KIND_UNSPECIFIED or a value this contract does not know."""
    return next((k for k, v in _KINDS.items() if v == kind), None)


def service_info(service: str) -> common_pb2.ServiceInfo:
    """The GetServiceInfo answer every service gives: who it is, and who it thinks is calling."""
    return common_pb2.ServiceInfo(
        service=SERVICES[service].full_name,
        version=CUSTODY_VERSION,
        caller=principal_to_proto(call_context.require_principal()),
        request_id=call_context.request_id() or "",
        trace_id=current_trace_id(),
    )


def struct_to_dict(message: struct_pb2.Struct, field: str) -> dict[str, Any]:
    """A request's Struct as a dict; InvalidArgument (JSON_TOO_DEEP, JSON_NOT_FINITE, JSON_VALUE_UNSET) naming the
    path in `field`."""
    check_struct(message, field)
    return json_format.MessageToDict(message)


def dict_to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


def datetime_from_proto(stamp: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A request's Timestamp as an aware UTC datetime; InvalidArgument (TIMESTAMP_INVALID) naming `field` when it
    lies outside what google.protobuf.Timestamp allows (0001-01-01 to 9999-12-31, nanos 0..999999999)."""
    try:
        return stamp.ToDatetime(UTC)
    except (ValueError, OverflowError):
        raise InvalidArgument(
            "TIMESTAMP_INVALID",
            f"{field} (seconds={stamp.seconds}, nanos={stamp.nanos}) is not a valid timestamp",
            violations=[
                FieldViolation(field, "between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, nanos 0..999999999")
            ],
        ) from None
