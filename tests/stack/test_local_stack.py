"""`custody up`, `custody serve` and `custody health` as a user runs them: real processes on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.request import urlopen

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from custody.runs.v1 import runs_pb2, runs_pb2_grpc
from services.cli.state import StateLayout, initialize
from services.common.catalog import CONSOLE, PROCESS_NAMES, SERVICE_NAMES, SERVICES
from tests.support.processes import RunningStack, clean_environment, custody, free_port, running_stack

pytestmark = pytest.mark.stack

PLANTED_PROVIDER_KEY = "sk-canary-for-the-stack-test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with running_stack(tmp_path_factory.mktemp("stack"), OPENAI_API_KEY=PLANTED_PROVIDER_KEY) as running:
        yield running
        running.stop()


def _listed_services(address: str) -> set[str]:
    with grpc.insecure_channel(address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        return {service.name for answer in answers for service in answer.list_services_response.service}


def test_all_four_services_report_serving(stack: RunningStack) -> None:
    result = custody("health", "--state-dir", str(stack.state_dir), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = json.loads(result.stdout)
    assert {name: entry["status"] for name, entry in statuses.items()} == dict.fromkeys(SERVICE_NAMES, "SERVING")


@pytest.mark.parametrize("service", SERVICE_NAMES)
def test_reflection_lists_the_service_health_and_reflection(stack: RunningStack, service: str) -> None:
    assert _listed_services(stack.address(service)) == {
        SERVICES[service].full_name,
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    }


def test_each_service_and_the_console_is_a_separate_process(stack: RunningStack) -> None:
    pids = stack.service_pids()
    assert set(pids) == set(PROCESS_NAMES)
    assert len(set(pids.values())) == 5


def test_only_ai_gateway_receives_provider_keys(stack: RunningStack) -> None:
    for service, pid in stack.service_pids().items():
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert (PLANTED_PROVIDER_KEY.encode() in environ) is (service == "ai_gateway"), service


def test_each_service_receives_only_its_own_settings(stack: RunningStack) -> None:
    for service, pid in stack.service_pids().items():
        names = [e.split(b"=", 1)[0].decode() for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if e]
        foreign = [n for n in names if n.startswith("CUSTODY_") and not n.startswith(f"CUSTODY_{service.upper()}_")]
        assert foreign == [], service


def test_operator_cli_call_is_authenticated_as_the_operator(stack: RunningStack) -> None:
    result = custody("info", "runs", "--state-dir", str(stack.state_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["caller"]["id"] == "human:operator"


def test_cli_with_a_wrong_token_prints_the_status_and_reason(stack: RunningStack) -> None:
    env = clean_environment(CUSTODY_TOKEN="cst_wrong")
    result = custody("info", "lineage", "--state-dir", str(stack.state_dir), env=env)
    assert result.returncode == 1
    assert "UNAUTHENTICATED TOKEN_INVALID" in result.stderr


def test_request_id_comes_back_and_is_in_the_servers_log_line(stack: RunningStack) -> None:
    token = StateLayout(stack.state_dir).operator_token.read_text().strip()
    with grpc.insecure_channel(stack.address("runs")) as channel:
        _, call = runs_pb2_grpc.RunsServiceStub(channel).GetServiceInfo.with_call(
            runs_pb2.GetServiceInfoRequest(),
            metadata=(("authorization", f"Bearer {token}"), ("x-request-id", "req-stack-log-check")),
            timeout=10,
        )
    assert dict(call.trailing_metadata())["x-request-id"] == "req-stack-log-check"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        matching = [line for line in stack.log_lines() if line.get("request_id") == "req-stack-log-check"]
        if matching:
            break
        time.sleep(0.1)
    assert matching, "no log line carries the request id"
    (line,) = matching
    assert (line["service"], line["code"], line["caller"]) == ("runs", "OK", "human:operator")
    assert len(str(line["trace_id"])) == 32


def test_up_writes_the_endpoints_the_cli_uses(stack: RunningStack) -> None:
    saved = json.loads((stack.state_dir / "endpoints.json").read_text())
    assert saved == {**{service: stack.address(service) for service in SERVICE_NAMES}, CONSOLE: stack.console_url}


def test_the_console_answers_and_holds_no_token_of_its_own(stack: RunningStack) -> None:
    with urlopen(f"{stack.console_url}/healthz", timeout=10) as response:
        assert response.read() == b"ok"
    pid = stack.service_pids()[CONSOLE]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    operator_token = StateLayout(stack.state_dir).operator_token.read_text().strip()
    assert operator_token.encode() not in environ
    assert b"TOKEN" not in environ


def test_ctrl_c_stops_every_process_within_10_seconds(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        pids = stack.service_pids()
        started = time.monotonic()
        assert stack.stop(timeout_s=10) == 0
        assert time.monotonic() - started < 10
        for service, pid in pids.items():
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"{service} still running"


def _is_zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_a_dying_service_stops_the_rest_and_up_exits_non_zero(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        pids = stack.service_pids()
        os.kill(pids["lineage"], signal.SIGKILL)
        assert stack.process.wait(timeout=15) == 1
        assert "lineage exited" in stack.stderr_path.read_text()
        for service, pid in pids.items():
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"{service} still running"


def test_health_exits_non_zero_when_nothing_is_running(tmp_path: Path) -> None:
    result = custody("health", "--service", "runs", "--address", f"127.0.0.1:{free_port()}", timeout=30)
    assert result.returncode == 1
    assert "UNREACHABLE" in result.stdout


def test_up_refuses_an_invalid_setting_before_starting_anything(tmp_path: Path) -> None:
    env = clean_environment(CUSTODY_LINEAGE_PORT="not-a-port")
    result = custody("up", "--state-dir", str(tmp_path / "var"), env=env)
    assert result.returncode == 2
    assert "CUSTODY_LINEAGE_PORT" in result.stderr


@pytest.fixture
def serve_env(tmp_path: Path) -> dict[str, str]:
    initialize(StateLayout(tmp_path / "var"))
    return clean_environment(CUSTODY_RUNS_STATE_DIR=str(tmp_path / "var"))


def test_serve_with_an_unknown_setting_exits_2_naming_it(serve_env: dict[str, str]) -> None:
    result = custody("serve", "runs", env={**serve_env, "CUSTODY_RUNS_LOG_LEVL": "DEBUG"})
    assert result.returncode == 2
    assert "CUSTODY_RUNS_LOG_LEVL: unknown setting" in result.stderr


def test_serve_on_a_port_in_use_exits_with_one_clear_line(serve_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = custody("serve", "runs", env={**serve_env, "CUSTODY_RUNS_PORT": str(port)})
    assert result.returncode == 3
    lines = [line for line in result.stderr.splitlines() if not line.startswith(("{", "E", "W", "I"))]
    assert lines == [
        f"custody runs: cannot listen on 127.0.0.1:{port} (CUSTODY_RUNS_PORT): "
        "the address is already in use or not available on this host"
    ]


def test_serve_with_an_unreachable_database_exits_3(tmp_path: Path) -> None:
    initialize(StateLayout(tmp_path / "var"))
    env = clean_environment(
        CUSTODY_LINEAGE_STATE_DIR=str(tmp_path / "var"),
        CUSTODY_LINEAGE_PORT=str(free_port()),
        CUSTODY_LINEAGE_DATABASE_URL=f"postgresql://custody:pw-not-shown@127.0.0.1:{free_port()}/custody",
    )
    result = custody("serve", "lineage", env=env)
    assert result.returncode == 3
    assert "cannot open database" in result.stderr and "pw-not-shown" not in result.stderr
