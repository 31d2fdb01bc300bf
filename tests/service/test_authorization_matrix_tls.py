"""The authorization matrix again with TLS, adding the certificate dimension: every (caller, certificate or none,
RPC) combination across the four services, each served with TLS, over real gRPC.

A person's token is that person with or without a service's certificate (on the port for people, or through a
service's mutual-TLS connection). A service is its certificate: alone or with its own token it gets what its access
table grants; its token without its certificate, or with another service's, is UNAUTHENTICATED before any access
rule is read. The combinations are counted into the same terminal summary as the plaintext matrix.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory

from services.cli.state import StateLayout
from services.common import status
from services.common.catalog import SERVICE_NAMES
from services.common.contracts import service_descriptor
from services.common.identity import Principal
from tests.service.test_authorization_matrix import ACCESS_TABLES, Caller, _call, _callers, _verdict
from tests.support import matrix_report
from tests.support.fuzz import rpcs
from tests.support.harness import ServiceHarness, state_layout, tls_channel, tls_settings


@dataclass(frozen=True)
class Way:
    """How a call arrives: whose token (if any), over whose certificate (if any), and what must come of it."""

    label: str
    token: str | None
    certificate_of: str | None
    principal: Principal | None  # None: refused before authorization
    reason: str = ""  # the UNAUTHENTICATED reason when principal is None


def _ways(callers: list[Caller]) -> list[Way]:
    services = [c for c in callers if c.principal.service_name]
    people = [c for c in callers if not c.principal.service_name]
    ways = []
    for caller in services:
        name = caller.principal.service_name
        assert name is not None
        other = next(s for s in SERVICE_NAMES if s != name)
        ways += [
            Way(f"{caller.label}: certificate only", None, name, caller.principal),
            Way(f"{caller.label}: certificate and its token", caller.token, name, caller.principal),
            Way(f"{caller.label}: token, no certificate", caller.token, None, None, "SERVICE_CERTIFICATE_REQUIRED"),
            Way(f"{caller.label}: token, {other}'s certificate", caller.token, other, None, "CERTIFICATE_MISMATCH"),
        ]
    for caller in people:
        ways += [
            Way(f"{caller.label}: no certificate", caller.token, None, caller.principal),
            Way(f"{caller.label}: through art_studio's certificate", caller.token, "art_studio", caller.principal),
        ]
    return ways


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[StateLayout, dict[str, ServiceHarness], list[Way]]]:
    layout = state_layout(Path(tmp_path_factory.mktemp("matrix-tls")) / "var")
    ways = _ways(_callers(layout))
    harnesses = {s: ServiceHarness(s, layout, settings=tls_settings(layout, s)) for s in SERVICE_NAMES}
    for harness in harnesses.values():
        harness.__enter__()
    try:
        yield layout, harnesses, ways
    finally:
        for harness in harnesses.values():
            harness.__exit__(None, None, None)


def _channel(layout: StateLayout, harness: ServiceHarness, certificate_of: str | None) -> grpc.Channel:
    ca = layout.tls.client_ca.read_bytes()
    if certificate_of is None:
        return tls_channel(harness.address, ca)
    directory = layout.tls.service(certificate_of)
    return tls_channel(harness.peer_address, ca, directory.key.read_bytes(), directory.certificate.read_bytes())


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_every_caller_and_certificate_gets_exactly_what_the_access_table_grants(
    stack: tuple[StateLayout, dict[str, ServiceHarness], list[Way]], service: str
) -> None:
    layout, harnesses, ways = stack
    table = ACCESS_TABLES[service]
    mismatches: list[str] = []
    for way in ways:
        channel = _channel(layout, harnesses[service], way.certificate_of)
        for rpc in rpcs(service_descriptor(service), message_factory.GetMessageClass):
            rule = table.rules.get(rpc.name)
            error = _call(channel, rpc, way.token)
            if way.principal is None:
                got = status.decode(error).reason if error is not None else "allowed"
                expected = way.reason
            else:
                got = _verdict(error)
                expected = "allowed" if rule is not None and rule.allows(way.principal) else "denied"
            matrix_report.record(service, allowed=got == "allowed")
            if got != expected:
                mismatches.append(f"{service}.{rpc.name} as {way.label}: {got}, expected {expected}")
        channel.close()
    assert not mismatches, "\n".join(mismatches)
