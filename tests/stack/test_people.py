"""People against a running service, as an operator manages them: `custody users` in its own process changes the
credentials file, and a real `custody serve` process accepts or refuses the token within a few seconds, without a
restart. A credentials file that breaks while the service runs makes it refuse everyone until it is fixed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from custody.art_studio.v1 import art_studio_pb2, art_studio_pb2_grpc
from services.cli.health import check
from services.cli.state import StateLayout, save_endpoints
from services.common import status
from services.common.identity import write_private_file
from tests.support.processes import CUSTODY, clean_environment, custody, free_port

pytestmark = pytest.mark.stack

SERVICE = "art_studio"
DEADLINE_S = 20  # generous for a loaded machine: the service checks the file about once a second


@dataclass
class Served:
    layout: StateLayout
    address: str
    process: subprocess.Popen[bytes]
    stderr: Path

    def users(self, *args: str) -> str:
        """`custody users ARGS` in a process of its own; returns its stdout (the token, for add and rotate)."""
        result = custody("users", *args, "--state-dir", str(self.layout.root), env=clean_environment())
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def answer(self, token: str) -> str:
        """How the service answers GetServiceInfo with `token`: "OK <caller>" or "<code> <reason>"."""
        with grpc.insecure_channel(self.address) as channel:
            stub = art_studio_pb2_grpc.ArtStudioServiceStub(channel)
            try:
                info = stub.GetServiceInfo(
                    art_studio_pb2.GetServiceInfoRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5
                )
            except grpc.RpcError as exc:
                error = status.decode(exc)
                return f"{error.code.name} {error.reason}"
        return f"OK {info.caller.id}"

    def eventually(self, token: str, expected: str) -> str:
        """The service's answer once it is `expected`, or the last one when the deadline passed."""
        return _poll(lambda: self.answer(token), expected)

    def credential_errors(self) -> list[str]:
        """The messages of the service's ERROR log lines about its credentials file."""
        lines = [json.loads(raw) for raw in self.stderr.read_text().splitlines() if raw.startswith("{")]
        return [x["msg"] for x in lines if x["level"] == "ERROR" and x["logger"] == "custody.credentials"]

    def still_the_same_process(self) -> bool:
        return self.process.poll() is None


def _poll(observe: Callable[[], str], expected: str) -> str:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        seen = observe()
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    layout = StateLayout(tmp_path / "var")
    result = custody("init", "--state-dir", str(layout.root), env=clean_environment())
    assert result.returncode == 0, result.stderr
    port = free_port()
    env = clean_environment(CUSTODY_ART_STUDIO_PORT=str(port), CUSTODY_ART_STUDIO_STATE_DIR=str(layout.root))
    stderr = tmp_path / f"{SERVICE}.err"
    with stderr.open("w") as log:
        command = [*CUSTODY, "serve", SERVICE, "--config", str(layout.service_config(SERVICE))]
        process = subprocess.Popen(command, env=env, stderr=log, stdout=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while check(address, "custody.art_studio.v1.ArtStudioService") != "SERVING":
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "art_studio did not start"
            time.sleep(0.1)
        yield Served(layout, address, process, stderr)
    finally:
        process.terminate()
        process.wait(timeout=15)


def operator(served: Served) -> str:
    return served.layout.operator_token.read_text().strip()


def test_a_person_added_is_accepted_and_once_revoked_refused_without_a_restart(served: Served) -> None:
    token = served.users("add", "alice", "--role", "reviewer")
    assert served.eventually(token, "OK human:alice") == "OK human:alice"
    served.users("revoke", "alice")
    assert served.eventually(token, "UNAUTHENTICATED TOKEN_INVALID") == "UNAUTHENTICATED TOKEN_INVALID"
    assert served.answer(operator(served)) == "OK human:operator"  # everyone else is unaffected
    assert served.still_the_same_process()


def test_the_cli_refusing_a_revoked_token_says_where_to_look(served: Served) -> None:
    token = served.users("add", "dora", "--role", "reviewer")
    served.users("revoke", "dora")
    assert served.eventually(token, "UNAUTHENTICATED TOKEN_INVALID") == "UNAUTHENTICATED TOKEN_INVALID"
    save_endpoints(served.layout, {SERVICE: served.address})
    env = clean_environment(CUSTODY_TOKEN=token)
    result = custody("info", SERVICE, "--state-dir", str(served.layout.root), env=env)
    assert result.returncode == 1
    assert "UNAUTHENTICATED TOKEN_INVALID" in result.stderr and "custody users list" in result.stderr


def test_a_rotated_token_is_refused_and_its_replacement_accepted_without_a_restart(served: Served) -> None:
    old = served.users("add", "bob", "--role", "operator")
    assert served.eventually(old, "OK human:bob") == "OK human:bob"
    new = served.users("rotate", "bob")
    assert served.eventually(old, "UNAUTHENTICATED TOKEN_INVALID") == "UNAUTHENTICATED TOKEN_INVALID"
    assert served.answer(new) == "OK human:bob"
    assert served.still_the_same_process()


def test_the_retired_bootstrap_operator_is_refused_while_the_named_operator_works(served: Served) -> None:
    bootstrap = operator(served)
    named = served.users("add", "carol", "--role", "operator", "--role", "reviewer")
    served.users("revoke", "operator")
    assert served.eventually(bootstrap, "UNAUTHENTICATED TOKEN_INVALID") == "UNAUTHENTICATED TOKEN_INVALID"
    assert served.eventually(named, "OK human:carol") == "OK human:carol"


def test_a_credentials_file_broken_while_serving_refuses_everyone_until_it_is_fixed(served: Served) -> None:
    token = operator(served)
    good = served.layout.credentials.read_text()
    write_private_file(served.layout.credentials, good.replace('"version": 1', '"version": 7'))
    refused = "UNAVAILABLE CREDENTIALS_UNAVAILABLE"
    assert served.eventually(token, refused) == refused
    problem = "is not format version 1"
    logged = _poll(lambda: "logged" if any(problem in m for m in served.credential_errors()) else "not yet", "logged")
    assert logged == "logged"  # (logs are written by a thread of their own, so they may trail the refusal)
    write_private_file(served.layout.credentials, good)
    assert served.eventually(token, "OK human:operator") == "OK human:operator"
    assert served.still_the_same_process()
