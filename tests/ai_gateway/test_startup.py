"""Start-up: an invalid policy or price table stops the process before it listens; the gateway runs on PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from custody.ai_gateway.v1 import gateway_pb2
from services.ai_gateway.config import DEFAULT_POLICY_FILE
from services.cli.state import StateLayout
from services.common.config import CONFIG_EXIT_CODE
from tests.ai_gateway.conftest import GatewayFactory, generate, stub
from tests.ai_gateway.fake_openai import FakeOpenAI
from tests.support.harness import bearer, operator_token


def serve(layout: StateLayout, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTODY_")}
    env.update({"CUSTODY_AI_GATEWAY_STATE_DIR": str(layout.root), "CUSTODY_AI_GATEWAY_PORT": "0"})
    env.update({f"CUSTODY_AI_GATEWAY_{k.upper()}": v for k, v in settings.items()})
    config = layout.service_config("ai_gateway")
    command = [sys.executable, "-m", "services.cli", "serve", "ai_gateway", "--config", str(config)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def test_an_invalid_policy_file_stops_the_gateway_with_a_clear_message(tmp_path: Path, layout: StateLayout) -> None:
    broken = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    broken["categories"]["GENERAL"]["input"]["detectors"] = ["secrets", "mind_reading"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(broken))
    result = serve(layout, policy_file=str(path))
    assert result.returncode == CONFIG_EXIT_CODE
    assert "configuration error" in result.stderr and str(path) in result.stderr and "mind_reading" in result.stderr


def test_a_missing_price_table_stops_the_gateway(tmp_path: Path, layout: StateLayout) -> None:
    result = serve(layout, price_table_file=str(tmp_path / "missing.yaml"))
    assert result.returncode == CONFIG_EXIT_CODE and "does not exist" in result.stderr


def test_an_operation_naming_a_category_the_policy_lacks_stops_the_gateway(layout: StateLayout) -> None:
    result = serve(layout, operations='{"poems": {"categories": ["POETRY"]}}')
    assert result.returncode == CONFIG_EXIT_CODE and "POETRY" in result.stderr


def test_the_gateway_audits_and_replays_on_postgresql(
    postgres_url: str, start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout
) -> None:  # postgres_url first: the gateway (and its ledger) stops before the schema is dropped
    gateway = start_gateway(fake, database_url=postgres_url)
    first = generate(gateway, layout, request_id="pg-1")
    second = generate(gateway, layout, request_id="pg-1")
    assert second.envelope.replayed and fake.calls == 1
    calls = (
        stub(gateway)
        .ListCalls(gateway_pb2.ListCallsRequest(), metadata=bearer(operator_token(layout)), timeout=5)
        .calls
    )
    assert [c.name for c in calls] == [first.envelope.call]


@pytest.mark.parametrize("verbose", ["true", "false"])
def test_the_audit_switch_is_reported_by_get_policy(
    start_gateway: GatewayFactory, layout: StateLayout, verbose: str
) -> None:
    gateway = start_gateway(audit_verbose=verbose)
    policy = stub(gateway).GetPolicy(gateway_pb2.GetPolicyRequest(), metadata=bearer(operator_token(layout)), timeout=5)
    assert policy.verbose_audit is (verbose == "true") and list(policy.providers) == ["local"]
