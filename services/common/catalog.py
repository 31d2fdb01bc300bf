"""The four services: names, contracts, default ports and the call graph (the README draws it).

Everything that needs to know "which services exist and who may call whom" reads it from here: the stack
launcher, the client factory, the access tables' tests and the deployment checks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    full_name: str
    default_port: int
    # Services this one calls over gRPC, and nothing else.
    calls: tuple[str, ...]
    # Whether it owns a database.
    stateful: bool


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("ai_gateway", "custody.ai_gateway.v1.AiGatewayService", 50051, (), True),
        ServiceSpec("runs", "custody.runs.v1.RunsService", 50052, ("ai_gateway", "lineage"), True),
        ServiceSpec(
            "art_studio", "custody.art_studio.v1.ArtStudioService", 50053, ("ai_gateway", "runs", "lineage"), False
        ),
        ServiceSpec("lineage", "custody.lineage.v1.LineageService", 50054, (), True),
    )
}

SERVICE_NAMES: tuple[str, ...] = tuple(SERVICES)

# The review console (services/console/): an HTTP process for people, neither a gRPC service nor a principal. It
# calls every service's public port with the signed-in person's own token, as the CLI does.
CONSOLE = "console"
CONSOLE_DEFAULT_PORT = 50080
# Every process `custody up` starts and `custody serve` runs.
PROCESS_NAMES: tuple[str, ...] = (*SERVICE_NAMES, CONSOLE)


def callers_of(service: str) -> tuple[str, ...]:
    return tuple(name for name, spec in SERVICES.items() if service in spec.calls)
