"""`custody gateway spend` as an operator runs it (a subprocess against a served gateway): tokens and known cost by
caller, person, operation or model; calls with an unknown cost counted on their own, never summed as 0."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from custody.common.v1 import common_pb2
from services.cli.state import StateLayout, save_endpoints
from tests.ai_gateway.conftest import GatewayFactory, as_operator, as_runs, stub, text_request
from tests.ai_gateway.fake_openai import FakeOpenAI, ok
from tests.support.harness import ServiceHarness, bearer, service_token
from tests.support.processes import clean_environment, custody

OPERATOR = common_pb2.Principal(id="human:operator", kind=common_pb2.PRINCIPAL_KIND_HUMAN)
Spend = Callable[..., Any]


def generate(harness: ServiceHarness, metadata: Any, **fields: Any) -> Any:
    return stub(harness).GenerateText(text_request(**fields), metadata=metadata, timeout=10)


@pytest.fixture
def calls(start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout) -> dict[str, Any]:
    """Five calls: runs for the operator (priced, then an unpriced model), art_studio for the operator, runs for
    itself, and the operator directly with no usage reported (cost unknown)."""
    gateway = start_gateway(fake)
    save_endpoints(layout, {"ai_gateway": gateway.address})
    art_studio = bearer(service_token(layout, "art_studio"))
    made = {"runs_for_operator": generate(gateway, as_runs(layout), on_behalf_of=OPERATOR)}
    fake.script(ok(model="brand-new-model"))
    made["runs_unpriced"] = generate(gateway, as_runs(layout), on_behalf_of=OPERATOR, model="brand-new-model")
    made["studio_for_operator"] = generate(gateway, art_studio, on_behalf_of=OPERATOR)
    made["runs_for_itself"] = generate(gateway, as_runs(layout))
    fake.script(ok(usage=None))
    made["operator_no_usage"] = generate(gateway, as_operator(layout))
    assert not made["runs_unpriced"].cost.HasField("estimate_usd")
    assert not made["operator_no_usage"].cost.HasField("estimate_usd")
    return made


@pytest.fixture
def spend(layout: StateLayout) -> Spend:
    def run(*args: str, expect: int = 0) -> Any:
        result = custody("gateway", "spend", *args, "--state-dir", str(layout.root), env=clean_environment())
        assert result.returncode == expect, result.stdout + result.stderr
        return json.loads(result.stdout) if "--json" in args else result.stdout + result.stderr

    return run


def usd(*responses: Any) -> float:
    return sum(response.cost.estimate_usd for response in responses)


def by_group(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["group"]: row for row in report["groups"]}


def test_spend_by_person_names_who_each_call_was_for(calls: dict[str, Any], spend: Spend) -> None:
    groups = by_group(spend("--by", "person", "--json"))
    assert set(groups) == {"human:operator", "(none)"}
    operator = groups["human:operator"]
    assert (operator["calls"], operator["unknown_cost_calls"]) == (4, 2)
    expected = usd(calls["runs_for_operator"], calls["studio_for_operator"])
    assert operator["known_cost_usd"] == pytest.approx(expected) and expected > 0
    assert groups["(none)"]["calls"] == 1 and groups["(none)"]["unknown_cost_calls"] == 0


def test_spend_by_caller_counts_unknown_costs_apart_and_never_as_zero(calls: dict[str, Any], spend: Spend) -> None:
    report = spend("--json")  # by caller is the default
    groups = by_group(report)
    assert {group: row["calls"] for group, row in groups.items()} == {
        "service:runs": 3,
        "service:art_studio": 1,
        "human:operator": 1,
    }
    assert groups["service:runs"]["unknown_cost_calls"] == 1
    known = usd(calls["runs_for_operator"], calls["runs_for_itself"])
    assert groups["service:runs"]["known_cost_usd"] == pytest.approx(known)
    # The operator's only call has no usage: its cost is unknown, not 0.
    assert (groups["human:operator"]["known_cost_usd"], groups["human:operator"]["unknown_cost_calls"]) == (None, 1)
    assert (report["total"]["calls"], report["total"]["unknown_cost_calls"]) == (5, 2)
    tokens = sum(response.cost.usage.total_tokens for response in calls.values())
    assert report["total"]["tokens"] == tokens > 0


def test_spend_by_model_and_operation(calls: dict[str, Any], spend: Spend) -> None:
    models = by_group(spend("--by", "model", "--json"))
    assert models["openai/brand-new-model"]["calls"] == 1
    assert models["openai/brand-new-model"]["known_cost_usd"] is None
    operations = by_group(spend("--by", "operation", "--json"))
    assert list(operations) == ["general_text"] and operations["general_text"]["calls"] == 5


def test_spend_since_counts_only_later_calls(calls: dict[str, Any], spend: Spend) -> None:
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    report = spend("--since", future, "--json")
    assert report["groups"] == [] and report["total"]["calls"] == 0
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert spend("--since", past, "--json")["total"]["calls"] == 5


def test_spend_for_one_person_counts_only_their_calls(calls: dict[str, Any], spend: Spend) -> None:
    groups = by_group(spend("--by", "caller", "--person", "human:operator", "--json"))
    assert {group: row["calls"] for group, row in groups.items()} == {
        "service:runs": 2,
        "service:art_studio": 1,
        "human:operator": 1,
    }


def test_spend_prints_a_table_with_the_unknown_cost_column(calls: dict[str, Any], spend: Spend) -> None:
    printed = spend("--by", "person")
    assert "unknown cost" in printed and "human:operator" in printed and "total" in printed


def test_spend_refuses_an_unknown_grouping(calls: dict[str, Any], spend: Spend) -> None:
    assert "--by must be one of" in spend("--by", "colour", expect=2)


def test_calls_show_names_the_caller_and_the_person(calls: dict[str, Any], layout: StateLayout) -> None:
    name = calls["studio_for_operator"].envelope.call
    result = custody("gateway", "calls", "show", name, "--state-dir", str(layout.root), env=clean_environment())
    assert result.returncode == 0, result.stderr
    assert "caller: service:art_studio  on behalf of: human:operator" in result.stdout
