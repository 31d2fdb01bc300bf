"""`custody up --tls` as a user runs it: the four services as real processes, people on server-authenticated TLS,
services calling each other over mutual TLS only, and the CLI (health, info, the governed flow of `custody demo`)
working against it unchanged; and a service that refuses to serve plaintext beyond loopback."""

from __future__ import annotations

import json
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from custody.lineage.v1 import lineage_pb2, lineage_pb2_grpc
from services.cli.state import StateLayout
from services.common import status
from services.common.catalog import SERVICE_NAMES
from tests.support.console_stack import sign_in
from tests.support.harness import bearer, service_token, tls_channel
from tests.support.processes import RunningStack, clean_environment, custody, free_port, running_stack

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("tls-stack"), tls=True) as running:
        yield running
        running.stop()


def test_up_says_it_serves_tls_and_records_the_ca_for_the_cli(stack: RunningStack) -> None:
    assert "Custody is up (TLS)" in stack.stdout_path.read_text()
    saved = json.loads((stack.state_dir / "endpoints.json").read_text())
    assert {s: saved[s] for s in SERVICE_NAMES} == {s: stack.address(s) for s in SERVICE_NAMES}
    assert Path(saved["tls"]["ca_file"]) == StateLayout(stack.state_dir).tls.client_ca.resolve()
    assert saved["tls"]["peer_addresses"] == {s: stack.peer_address(s) for s in SERVICE_NAMES}


def test_health_reports_every_service_serving_over_tls(stack: RunningStack) -> None:
    result = custody("health", "--state-dir", str(stack.state_dir), "--json", env=clean_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert {n: e["status"] for n, e in json.loads(result.stdout).items()} == dict.fromkeys(SERVICE_NAMES, "SERVING")


def test_health_in_plaintext_finds_nothing_listening_in_plaintext(stack: RunningStack) -> None:
    result = custody("health", "--state-dir", str(stack.state_dir), "--plaintext", "--json", env=clean_environment())
    assert result.returncode == 1
    assert {e["status"] for e in json.loads(result.stdout).values()} == {"UNREACHABLE"}


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_no_port_of_any_service_speaks_plaintext(stack: RunningStack, service: str) -> None:
    for address in (stack.address(service), stack.peer_address(service)):
        with grpc.insecure_channel(address) as channel, pytest.raises(grpc.RpcError) as raised:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE, address


def test_the_operator_cli_is_the_operator_over_tls(stack: RunningStack) -> None:
    result = custody("info", "runs", "--state-dir", str(stack.state_dir), "--json", env=clean_environment())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["caller"]["id"] == "human:operator"


def test_a_stolen_service_token_is_refused_by_the_running_stack(stack: RunningStack) -> None:
    layout = StateLayout(stack.state_dir)
    channel = tls_channel(stack.address("lineage"), layout.tls.client_ca.read_bytes())
    stub = lineage_pb2_grpc.LineageServiceStub(channel)
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetServiceInfo(lineage_pb2.GetServiceInfoRequest(), metadata=bearer(service_token(layout, "runs")))
    decoded = status.decode(raised.value)
    assert (decoded.code, decoded.reason) == (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CERTIFICATE_REQUIRED")


def test_the_governed_flow_holds_every_expectation_over_tls(stack: RunningStack) -> None:
    result = custody("demo", "--json", "--state-dir", str(stack.state_dir), env=clean_environment(), timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True, report["steps"]
    assert all(step["ok"] for step in report["steps"]) and len(report["steps"]) >= 12
    steps = {s["name"]: s["detail"] for s in report["steps"]}
    # With TLS the demo tries with art_studio's certificate and token: authenticated, and still not allowed.
    assert "PERMISSION_DENIED" in steps["a service cannot approve"]
    assert report["verified"] == len(report["runs"]) + 2
    # Every call a service made reached its peer over mutual TLS: its certificate named it (the access log says).
    service_calls = _service_call_lines(stack)
    callers = {str(line["caller"]) for line in service_calls}
    assert {"service:art_studio", "service:runs"} <= callers
    assert all(line["via_service"] == str(line["caller"]).removeprefix("service:") for line in service_calls)


def _service_call_lines(stack: RunningStack) -> list[dict[str, object]]:
    deadline = time.monotonic() + 10
    while True:
        lines = [
            line
            for line in stack.log_lines()
            if line.get("logger") == "custody.rpc" and str(line.get("caller", "")).startswith("service:")
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


# --- plaintext beyond loopback ------------------------------------------------------------------------------------


def test_a_service_refuses_to_listen_beyond_loopback_without_tls(tmp_path: Path) -> None:
    env = clean_environment(CUSTODY_RUNS_HOST="0.0.0.0", CUSTODY_RUNS_PORT=str(free_port()))
    env["CUSTODY_RUNS_STATE_DIR"] = str(tmp_path / "var")
    result = custody("serve", "runs", env=env)
    assert result.returncode == 2
    assert re.search(r"CUSTODY_RUNS_HOST is '0\.0\.0\.0', not a loopback address", result.stderr)
    assert "CUSTODY_RUNS_TLS_DIR" in result.stderr and "CUSTODY_RUNS_ALLOW_PLAINTEXT=true" in result.stderr


def test_up_refuses_tls_for_some_services_only(tmp_path: Path) -> None:
    state = tmp_path / "var"
    env = clean_environment(CUSTODY_LINEAGE_TLS_DIR=str(state / "tls" / "lineage"))
    result = custody("up", "--state-dir", str(state), env=env)
    assert result.returncode == 2
    assert "TLS is configured for lineage only" in result.stderr


def test_the_console_serves_https_with_its_own_certificate_and_secure_cookies(stack: RunningStack) -> None:
    ca = StateLayout(stack.state_dir).tls.client_ca
    assert stack.console_url.startswith("https://")
    trust = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(base_url=stack.console_url, verify=trust, timeout=30) as client:
        response = sign_in(client, StateLayout(stack.state_dir).operator_token.read_text().strip())
        queue = client.get("/queue")  # the console calls the services over TLS on their public ports
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("custody_session="))
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]
    assert queue.status_code == 200
    assert "Review queue" in queue.text
    assert queue.headers["strict-transport-security"].startswith("max-age=")


def test_the_console_speaks_no_plaintext_http(stack: RunningStack) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(stack.console_url.replace("https://", "http://") + "/healthz", timeout=5)
