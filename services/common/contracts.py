"""Where each service's generated contract lives: descriptors and stubs, by catalog name."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from custody.ai_gateway.v1 import gateway_pb2, gateway_pb2_grpc
from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.common.catalog import SERVICES

_MODULES: dict[str, tuple[ModuleType, ModuleType]] = {
    "ai_gateway": (gateway_pb2, gateway_pb2_grpc),
    "runs": (runs_pb2, runs_pb2_grpc),
    "art_studio": (art_studio_pb2, art_studio_pb2_grpc),
    "lineage": (lineage_pb2, lineage_pb2_grpc),
}


def service_descriptor(service: str) -> ServiceDescriptor:
    messages, _ = _MODULES[service]
    short_name = SERVICES[service].full_name.rsplit(".", 1)[-1]
    descriptor: ServiceDescriptor = messages.DESCRIPTOR.services_by_name[short_name]
    return descriptor


def stub_class(service: str) -> Any:
    _, grpc_module = _MODULES[service]
    return getattr(grpc_module, service_descriptor(service).name + "Stub")


def is_retry_safe(method: MethodDescriptor) -> bool:
    """Declared in the .proto with `option idempotency_level = NO_SIDE_EFFECTS | IDEMPOTENT;`."""
    return method.GetOptions().idempotency_level in (
        method.GetOptions().NO_SIDE_EFFECTS,
        method.GetOptions().IDEMPOTENT,
    )


def messages(service: str) -> ModuleType:
    """The generated `_pb2` module of a service (its request and response messages)."""
    return _MODULES[service][0]
