"""A service serving TLS, over real gRPC: server-authenticated TLS for people on its port, mutual TLS for services on
its peer port, the service principal taken from the verified certificate, a service's token refused without that
service's own certificate, certificates rotated on disk served without a restart, and the plaintext health-only
port. Each test tries what an attacker would: a stolen token, another service's certificate, another CA's, no TLS.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from services.cli.registry import settings_class
from services.cli.state import StateLayout
from services.common import status
from services.common.clients import ServiceClients
from services.common.config import ConfigError, env_prefix
from services.common.tls.certificates import CertificateAuthority, service_dns_names
from services.common.tls.credentials import TlsDirectory
from tests.support.certificates import LOOPBACK_SANS, issue, uri
from tests.support.harness import (
    ServiceHarness,
    bearer,
    operator_token,
    service_token,
    tls_channel,
    tls_settings,
)

INFO = lineage_pb2.GetServiceInfoRequest()
HEALTH = health_pb2.HealthCheckRequest(service="custody.lineage.v1.LineageService")


@pytest.fixture
def lineage(layout: StateLayout) -> Iterator[ServiceHarness]:
    with ServiceHarness("lineage", layout, settings=tls_settings(layout, "lineage", health_port="0")) as harness:
        yield harness


def _ca(layout: StateLayout) -> bytes:
    return layout.tls.client_ca.read_bytes()


def _as_person(layout: StateLayout, address: str) -> lineage_pb2_grpc.LineageServiceStub:
    return lineage_pb2_grpc.LineageServiceStub(tls_channel(address, _ca(layout)))


def _as_service(layout: StateLayout, address: str, service: str) -> lineage_pb2_grpc.LineageServiceStub:
    """A client presenting `service`'s certificate (as `custody init` issued it)."""
    directory = layout.tls.service(service)
    channel = tls_channel(address, _ca(layout), directory.key.read_bytes(), directory.certificate.read_bytes())
    return lineage_pb2_grpc.LineageServiceStub(channel)


def _refusal(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    decoded = status.decode(raised.value)
    return decoded.code, decoded.reason


# --- who the caller is --------------------------------------------------------------------------------------------


def test_a_service_with_its_certificate_is_the_service_its_san_names(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    caller = _as_service(layout, lineage.peer_address, "runs").GetServiceInfo(INFO, timeout=10).caller
    assert caller.id == "service:runs"


def test_a_service_token_with_its_own_certificate_is_that_service(layout: StateLayout, lineage: ServiceHarness) -> None:
    stub = _as_service(layout, lineage.peer_address, "art_studio")
    caller = stub.GetServiceInfo(INFO, metadata=bearer(service_token(layout, "art_studio")), timeout=10).caller
    assert caller.id == "service:art_studio"


def test_a_stolen_service_token_alone_is_refused_on_the_public_port(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    stub = _as_person(layout, lineage.address)
    stolen = bearer(service_token(layout, "runs"))
    assert _refusal(lambda: stub.GetServiceInfo(INFO, metadata=stolen, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SERVICE_CERTIFICATE_REQUIRED",
    )


def test_a_service_certificate_brought_to_the_public_port_is_not_asked_for_so_the_token_is_still_refused(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    stub = _as_service(layout, lineage.address, "runs")
    token = bearer(service_token(layout, "runs"))
    assert _refusal(lambda: stub.GetServiceInfo(INFO, metadata=token, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "SERVICE_CERTIFICATE_REQUIRED",
    )


def test_the_token_of_one_service_with_the_certificate_of_another_is_refused(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    stub = _as_service(layout, lineage.peer_address, "runs")
    token = bearer(service_token(layout, "art_studio"))
    assert _refusal(lambda: stub.GetServiceInfo(INFO, metadata=token, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "CERTIFICATE_MISMATCH",
    )


def test_a_certificate_authenticates_but_does_not_authorize(layout: StateLayout, lineage: ServiceHarness) -> None:
    stub = _as_service(layout, lineage.peer_address, "ai_gateway")  # ai_gateway does not call lineage
    assert _refusal(lambda: stub.GetServiceInfo(INFO, timeout=10)) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "PRINCIPAL_NOT_ALLOWED",
    )


def test_a_persons_token_on_the_public_port_over_tls_is_that_person(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    stub = _as_person(layout, lineage.address)
    caller = stub.GetServiceInfo(INFO, metadata=bearer(operator_token(layout)), timeout=10).caller
    assert caller.id == "human:operator"


def test_a_persons_token_through_a_service_connection_is_the_person_and_the_log_names_the_service(
    layout: StateLayout, lineage: ServiceHarness, caplog: pytest.LogCaptureFixture
) -> None:
    stub = _as_service(layout, lineage.peer_address, "art_studio")
    metadata = (*bearer(operator_token(layout)), ("x-request-id", "req-via-service"))
    with caplog.at_level(logging.INFO, logger="custody.rpc"):
        caller = stub.GetServiceInfo(INFO, metadata=metadata, timeout=10).caller
        lineage.stop()  # flushes the access log line
    assert caller.id == "human:operator"
    (line,) = [r for r in caplog.records if r.name == "custody.rpc" and getattr(r, "caller", "") == "human:operator"]
    assert line.via_service == "art_studio"


def test_no_token_and_no_certificate_is_token_missing(layout: StateLayout, lineage: ServiceHarness) -> None:
    stub = _as_person(layout, lineage.address)
    assert _refusal(lambda: stub.GetServiceInfo(INFO, timeout=10)) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")


# --- who may connect at all ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["public", "peer"])
def test_a_plaintext_client_cannot_talk_to_a_tls_port(layout: StateLayout, lineage: ServiceHarness, port: str) -> None:
    address = lineage.address if port == "public" else lineage.peer_address
    stub = lineage_pb2_grpc.LineageServiceStub(grpc.insecure_channel(address))
    code, _ = _refusal(lambda: stub.GetServiceInfo(INFO, metadata=bearer(operator_token(layout)), timeout=10))
    assert code is grpc.StatusCode.UNAVAILABLE


def test_the_peer_port_refuses_a_client_without_a_certificate(layout: StateLayout, lineage: ServiceHarness) -> None:
    stub = _as_person(layout, lineage.peer_address)
    code, _ = _refusal(lambda: stub.GetServiceInfo(INFO, metadata=bearer(operator_token(layout)), timeout=10))
    assert code is grpc.StatusCode.UNAVAILABLE


def test_a_certificate_from_another_ca_is_refused_at_the_handshake(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    forged = CertificateAuthority.create().issue("runs", dns_names=service_dns_names("runs"))
    stub = lineage_pb2_grpc.LineageServiceStub(
        tls_channel(lineage.peer_address, _ca(layout), forged.key_pem, forged.certificate_pem)
    )
    code, _ = _refusal(lambda: stub.GetServiceInfo(INFO, timeout=10))
    assert code is grpc.StatusCode.UNAVAILABLE


def test_a_client_trusting_another_ca_does_not_talk_to_the_server(layout: StateLayout, lineage: ServiceHarness) -> None:
    stranger = CertificateAuthority.create()
    stub = lineage_pb2_grpc.LineageServiceStub(tls_channel(lineage.address, stranger.certificate_pem))
    code, _ = _refusal(lambda: stub.GetServiceInfo(INFO, metadata=bearer(operator_token(layout)), timeout=10))
    assert code is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    "spiffe_id", ["spiffe://custody/service/mallory", "spiffe://elsewhere/service/runs"], ids=["unknown", "domain"]
)
def test_a_certificate_of_this_ca_naming_no_service_of_this_trust_domain_is_refused(
    layout: StateLayout, lineage: ServiceHarness, spiffe_id: str
) -> None:
    """The CA signed it (say, by mistake, or for something else): the handshake passes, the identity does not."""
    ca_dir = layout.tls
    authority = CertificateAuthority.from_pem(ca_dir.ca_certificate.read_bytes(), ca_dir.ca_key.read_bytes())
    certificate, key = issue(authority, [*LOOPBACK_SANS, uri(spiffe_id)])
    stub = lineage_pb2_grpc.LineageServiceStub(tls_channel(lineage.peer_address, _ca(layout), key, certificate))
    assert _refusal(lambda: stub.GetServiceInfo(INFO, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED,
        "CERTIFICATE_IDENTITY_INVALID",
    )


# --- certificates rotated on disk ---------------------------------------------------------------------------------


def _replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    """As cert-manager and the kubelet do: a new file swapped in whole."""
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(data)
    tmp.chmod(mode)
    os.replace(tmp, path)


def _health_over_tls(address: str, ca: bytes, key: bytes | None = None, certificate: bytes | None = None) -> str:
    stub = health_pb2_grpc.HealthStub(tls_channel(address, ca, key, certificate))
    try:
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(stub.Check(HEALTH, timeout=10).status))
    except grpc.RpcError as exc:
        return exc.code().name


def test_a_certificate_rotated_on_disk_is_served_on_new_handshakes(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    old_ca = _ca(layout)
    assert _health_over_tls(lineage.address, old_ca) == "SERVING"
    new_authority = CertificateAuthority.create()
    rotated = new_authority.issue("lineage", dns_names=service_dns_names("lineage"))
    directory = layout.tls.service("lineage")
    _replace(directory.key, rotated.key_pem, 0o600)
    _replace(directory.certificate, rotated.certificate_pem)
    _replace(directory.ca, new_authority.certificate_pem)
    assert _health_over_tls(lineage.address, new_authority.certificate_pem) == "SERVING"
    assert _health_over_tls(lineage.address, old_ca) == "UNAVAILABLE"
    # The peer port too, and it now trusts client certificates of the new CA only.
    client = new_authority.issue("runs", dns_names=service_dns_names("runs"))
    new_ca = new_authority.certificate_pem
    assert _health_over_tls(lineage.peer_address, new_ca, client.key_pem, client.certificate_pem) == "SERVING"
    old_client = layout.tls.service("runs")
    assert (
        _health_over_tls(lineage.peer_address, new_ca, old_client.key.read_bytes(), old_client.certificate.read_bytes())
        == "UNAVAILABLE"
    )


def test_a_rotation_caught_half_written_keeps_the_current_certificate(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    directory = layout.tls.service("lineage")
    new_authority = CertificateAuthority.create()
    rotated = new_authority.issue("lineage", dns_names=service_dns_names("lineage"))
    _replace(directory.key, rotated.key_pem, 0o600)  # the new key, the old certificate: not a pair
    assert _health_over_tls(lineage.address, _ca(layout)) == "SERVING"
    _replace(directory.certificate, rotated.certificate_pem)
    assert _health_over_tls(lineage.address, new_authority.certificate_pem) == "SERVING"


def test_a_client_picks_up_its_rotated_certificate_on_its_next_call(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    """art_studio's client factory, as the service runs it: mutual TLS with its certificate and its token. Its
    certificate files are then replaced (here, wrongly, by runs' certificate): the next call presents them."""
    prefix = env_prefix("art_studio")
    settings = settings_class("art_studio").load(
        layout.service_config("art_studio"),
        {
            prefix + "STATE_DIR": str(layout.root),
            prefix + "TLS_DIR": str(layout.tls.service("art_studio").root),
            prefix + "LINEAGE_ADDRESS": lineage.peer_address,
        },
    )
    mine, theirs = layout.tls.service("art_studio"), layout.tls.service("runs")

    async def calls() -> tuple[str, str]:
        clients = ServiceClients.for_service(settings, None)
        try:
            first = (await clients.stub("lineage").GetServiceInfo(INFO)).caller.id
            _replace(mine.key, theirs.key.read_bytes(), 0o600)
            _replace(mine.certificate, theirs.certificate.read_bytes())
            try:
                await clients.stub("lineage").GetServiceInfo(INFO)
            except grpc.RpcError as exc:
                return first, status.decode(exc).reason
            return first, "accepted"
        finally:
            await clients.close()

    assert asyncio.run(calls()) == ("service:art_studio", "CERTIFICATE_MISMATCH")


# --- start-up -----------------------------------------------------------------------------------------------------


def test_a_tls_key_others_can_read_stops_the_start_naming_the_setting(layout: StateLayout) -> None:
    layout.tls.service("lineage").key.chmod(0o644)
    settings = tls_settings(layout, "lineage")
    with (
        pytest.raises(ConfigError, match=r"CUSTODY_LINEAGE_TLS_DIR: private key .* readable by others"),
        ServiceHarness("lineage", layout, settings=settings),
    ):
        pass


def test_a_tls_directory_without_the_files_stops_the_start(layout: StateLayout, tmp_path: Path) -> None:
    settings = tls_settings(layout, "lineage", tls_dir=str(tmp_path / "nothing"))
    with (
        pytest.raises(ConfigError, match=r"CUSTODY_LINEAGE_TLS_DIR: .*tls\.key"),
        ServiceHarness("lineage", layout, settings=settings),
    ):
        pass


def test_the_server_reads_the_directory_as_tls_directory_reads_it(layout: StateLayout) -> None:
    assert TlsDirectory(layout.tls.service("lineage").root).read().private_key.startswith(b"-----BEGIN PRIVATE KEY")


# --- the health-only port -----------------------------------------------------------------------------------------


def test_the_health_port_answers_health_in_plaintext(lineage: ServiceHarness) -> None:
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(lineage.health_address))
    assert stub.Check(HEALTH, timeout=10).status == health_pb2.HealthCheckResponse.SERVING


def test_the_health_port_serves_neither_reflection_nor_the_service(
    layout: StateLayout, lineage: ServiceHarness
) -> None:
    channel = grpc.insecure_channel(lineage.health_address)
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    listing = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    assert _refusal(lambda: list(listing))[0] is grpc.StatusCode.UNIMPLEMENTED
    stub = lineage_pb2_grpc.LineageServiceStub(channel)
    code, _ = _refusal(lambda: stub.GetServiceInfo(INFO, metadata=bearer(operator_token(layout)), timeout=10))
    assert code is grpc.StatusCode.UNIMPLEMENTED


def test_a_draining_server_reads_not_serving_on_the_health_port(lineage: ServiceHarness) -> None:
    assert lineage.running is not None
    health = lineage.running.health
    lineage.run(health.enter_graceful_shutdown)
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(lineage.health_address))
    assert stub.Check(HEALTH, timeout=10).status == health_pb2.HealthCheckResponse.NOT_SERVING


def test_a_service_calls_a_list_of_replicas_over_mutual_tls_and_both_serve(layout: StateLayout) -> None:
    """A `<PEER>_ADDRESS` listing two replicas' peer ports: the channel's authority is the first entry (gRPC would
    take the whole list), which every replica's certificate names (127.0.0.1), so both TLS handshakes verify."""
    settings = {"health_port": "0"}
    with (
        ServiceHarness("lineage", layout, settings=tls_settings(layout, "lineage", **settings)) as one,
        ServiceHarness("lineage", layout, settings=tls_settings(layout, "lineage", **settings)) as two,
    ):
        prefix = env_prefix("art_studio")
        art_studio = settings_class("art_studio").load(
            layout.service_config("art_studio"),
            {
                prefix + "STATE_DIR": str(layout.root),
                prefix + "TLS_DIR": str(layout.tls.service("art_studio").root),
                prefix + "LINEAGE_ADDRESS": f"{one.peer_address},{two.peer_address}",
            },
        )

        async def calls() -> list[str]:
            clients = ServiceClients.for_service(art_studio, None)
            try:
                return [(await clients.stub("lineage").GetServiceInfo(INFO)).caller.id for _ in range(10)]
            finally:
                await clients.close()

        callers = asyncio.run(calls())
        served = [sum("GetServiceInfo" in span.name for span in h.spans.get_finished_spans()) for h in (one, two)]
    assert set(callers) == {"service:art_studio"}
    assert all(count > 0 for count in served), served
