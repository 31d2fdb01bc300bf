"""Every (caller, RPC) combination across the four services is allowed or denied exactly as the access tables say.

Each service runs over real gRPC and every RPC of its contract is called with an empty request by every kind of
caller: each service's own token, the bootstrap operator, and people holding each single role (and none).
Authorization happens before any request is read, so an allowed call fails later (INVALID_ARGUMENT, NOT_FOUND) or
succeeds, and a denied one is PERMISSION_DENIED with reason PRINCIPAL_NOT_ALLOWED and nothing else. The number of
combinations tried is printed in the terminal summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory

from services.ai_gateway import access as ai_gateway_access
from services.art_studio import access as art_studio_access
from services.cli.state import StateLayout
from services.common import status
from services.common.catalog import SERVICE_NAMES
from services.common.contracts import service_descriptor
from services.common.identity import (
    MIGRATOR_ROLE,
    OPERATOR_ROLE,
    REVIEWER_ROLE,
    AccessTable,
    CredentialEntry,
    Credentials,
    Principal,
    PrincipalKind,
    new_token,
    token_digest,
)
from services.lineage import access as lineage_access
from services.runs import access as runs_access
from tests.support import matrix_report
from tests.support.fuzz import Rpc, rpcs
from tests.support.harness import ServiceHarness, bearer, operator_token, service_token, state_layout


@dataclass(frozen=True)
class Caller:
    label: str
    principal: Principal
    token: str


PEOPLE = {
    "reviewer only": frozenset({REVIEWER_ROLE}),
    "operator only": frozenset({OPERATOR_ROLE}),
    "migrator only": frozenset({MIGRATOR_ROLE}),
    "no role": frozenset(),
}


def _callers(layout: StateLayout) -> list[Caller]:
    credentials = Credentials.load(layout.credentials)
    by_id = {entry.principal.id: entry.principal for entry in credentials.entries}
    callers = [Caller(f"service:{s}", by_id[f"service:{s}"], service_token(layout, s)) for s in SERVICE_NAMES]
    callers.append(Caller("bootstrap operator", by_id["human:operator"], operator_token(layout)))
    entries = list(credentials.entries)
    for index, (label, roles) in enumerate(PEOPLE.items()):
        token = new_token()
        person = Principal(f"human:matrix-{index}", PrincipalKind.HUMAN, roles)
        entries.append(CredentialEntry(person, token_digest(token)))
        callers.append(Caller(label, person, token))
    Credentials(entries).save(layout.credentials)
    return callers


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, ServiceHarness], list[Caller]]]:
    layout = state_layout(Path(tmp_path_factory.mktemp("matrix")) / "var")
    callers = _callers(layout)
    harnesses = {service: ServiceHarness(service, layout) for service in SERVICE_NAMES}
    for harness in harnesses.values():
        harness.__enter__()
    try:
        yield harnesses, callers
    finally:
        for harness in harnesses.values():
            harness.__exit__(None, None, None)


ACCESS_TABLES: dict[str, AccessTable] = {
    "ai_gateway": ai_gateway_access.ACCESS,
    "runs": runs_access.ACCESS,
    "art_studio": art_studio_access.ACCESS,
    "lineage": lineage_access.ACCESS,
}


def _call(channel: grpc.Channel, rpc: Rpc, token: str | None) -> grpc.RpcError | None:
    """Calls `rpc` with an empty request (an empty stream when it streams requests) and the bearer token, if any;
    the error, or None if OK."""
    metadata = bearer(token) if token else ()
    codec = {
        "request_serializer": rpc.request_type.SerializeToString,
        "response_deserializer": rpc.response_type.FromString,
    }
    request = rpc.request_type()
    try:
        if rpc.client_streaming and rpc.server_streaming:
            list(channel.stream_stream(rpc.path, **codec)(iter(()), metadata=metadata, timeout=10))
        elif rpc.client_streaming:
            channel.stream_unary(rpc.path, **codec)(iter(()), metadata=metadata, timeout=10)
        elif rpc.server_streaming:
            list(channel.unary_stream(rpc.path, **codec)(request, metadata=metadata, timeout=10))
        else:
            channel.unary_unary(rpc.path, **codec)(request, metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        return error
    return None


def _verdict(error: grpc.RpcError | None) -> str:
    """ "denied" (the access table refused), "unauthenticated", or "allowed" (OK or any later refusal)."""
    if error is None:
        return "allowed"
    decoded = status.decode(error)
    if decoded.code is grpc.StatusCode.UNAUTHENTICATED:
        return "unauthenticated"
    if decoded.code is grpc.StatusCode.PERMISSION_DENIED and decoded.reason == "PRINCIPAL_NOT_ALLOWED":
        return "denied"
    return "allowed"


def test_every_rpc_of_every_contract_has_an_access_rule() -> None:
    """Default deny would refuse an unlisted RPC to everyone; a contract RPC nobody may call is a mistake."""
    missing = [
        f"{service}.{method.name}"
        for service in SERVICE_NAMES
        for method in service_descriptor(service).methods
        if method.name not in ACCESS_TABLES[service].rules
    ]
    assert not missing


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_caller_gets_exactly_what_the_access_table_grants(
    stack: tuple[dict[str, ServiceHarness], list[Caller]], service: str
) -> None:
    harnesses, callers = stack
    table = ACCESS_TABLES[service]
    channel = harnesses[service].channel()
    mismatches: list[str] = []
    for rpc in rpcs(service_descriptor(service), message_factory.GetMessageClass):
        rule = table.rules.get(rpc.name)
        for caller in callers:
            expected = "allowed" if rule is not None and rule.allows(caller.principal) else "denied"
            got = _verdict(_call(channel, rpc, caller.token))
            matrix_report.record(service, allowed=got == "allowed")
            if got != expected:
                mismatches.append(f"{service}.{rpc.name} as {caller.label}: {got}, the access table says {expected}")
    assert not mismatches, "\n".join(mismatches)
