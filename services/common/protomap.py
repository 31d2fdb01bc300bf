"""Proto <-> domain conversions for the shared custody.common.v1 messages."""

from __future__ import annotations

from custody.common.v1 import common_pb2
from services.common import call_context
from services.common.catalog import SERVICES
from services.common.identity import Principal, PrincipalKind
from services.common.telemetry import current_trace_id
from services.common.version import CUSTODY_VERSION

_KINDS = {
    PrincipalKind.SERVICE: common_pb2.PRINCIPAL_KIND_SERVICE,
    PrincipalKind.HUMAN: common_pb2.PRINCIPAL_KIND_HUMAN,
    PrincipalKind.SYSTEM: common_pb2.PRINCIPAL_KIND_SYSTEM,
}


def principal_to_proto(principal: Principal) -> common_pb2.Principal:
    return common_pb2.Principal(id=principal.id, kind=_KINDS[principal.kind], roles=sorted(principal.roles))


def service_info(service: str) -> common_pb2.ServiceInfo:
    """The GetServiceInfo answer every service gives: who it is, and who it thinks is calling."""
    return common_pb2.ServiceInfo(
        service=SERVICES[service].full_name,
        version=CUSTODY_VERSION,
        caller=principal_to_proto(call_context.require_principal()),
        request_id=call_context.request_id() or "",
        trace_id=current_trace_id(),
    )
