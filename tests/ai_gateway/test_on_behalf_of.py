"""Who caused an AI call: a service of the call graph names the person it calls for (on_behalf_of), the gateway
records both; anyone else naming a person is refused and nothing is written (issue 24)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from custody.ai_gateway.v1 import gateway_pb2
from custody.common.v1 import common_pb2
from services.ai_gateway.config import AiGatewaySettings
from services.ai_gateway.ledger_audit import audit
from services.ai_gateway.store import CallStore
from services.cli.state import StateLayout
from services.common import migrations
from services.common.db import create_engine
from services.common.gateway_images import collect_images_sync
from tests.ai_gateway.conftest import (
    GatewayFactory,
    as_operator,
    as_runs,
    rpc_error,
    stub,
    text_request,
)
from tests.ai_gateway.fake_openai import FakeOpenAI
from tests.ai_gateway.records import record
from tests.support.harness import ServiceHarness, bearer, service_token

OPERATOR = common_pb2.Principal(id="human:operator", kind=common_pb2.PRINCIPAL_KIND_HUMAN)


def person(name: str, kind: int = common_pb2.PRINCIPAL_KIND_HUMAN) -> common_pb2.Principal:
    return common_pb2.Principal(id=name, kind=kind)  # type: ignore[arg-type]


def calls(harness: ServiceHarness, layout: StateLayout) -> list[gateway_pb2.Call]:
    request = gateway_pb2.ListCallsRequest()
    return list(stub(harness).ListCalls(request, metadata=as_operator(layout), timeout=10).calls)


def get_call(harness: ServiceHarness, layout: StateLayout, name: str) -> gateway_pb2.Call:
    return stub(harness).GetCall(gateway_pb2.GetCallRequest(name=name), metadata=as_operator(layout), timeout=10)


def as_art_studio(layout: StateLayout) -> tuple[tuple[str, str], ...]:
    return bearer(service_token(layout, "art_studio"))


def generate_as(harness: ServiceHarness, metadata: Any, **fields: Any) -> gateway_pb2.GenerateTextResponse:
    return stub(harness).GenerateText(text_request(**fields), metadata=metadata, timeout=10)


def test_a_service_naming_a_person_is_recorded_with_both(gateway: ServiceHarness, layout: StateLayout) -> None:
    response = generate_as(gateway, as_runs(layout), on_behalf_of=OPERATOR)
    envelope = response.envelope
    assert (envelope.caller.id, envelope.on_behalf_of.id) == ("service:runs", "human:operator")
    assert envelope.on_behalf_of.kind == common_pb2.PRINCIPAL_KIND_HUMAN
    stored = get_call(gateway, layout, envelope.call).envelope
    assert (stored.caller.id, stored.on_behalf_of.id) == ("service:runs", "human:operator")


def test_the_named_persons_roles_are_not_recorded(gateway: ServiceHarness, layout: StateLayout) -> None:
    claimed = common_pb2.Principal(id="human:operator", kind=common_pb2.PRINCIPAL_KIND_HUMAN, roles=["operator"])
    envelope = generate_as(gateway, as_runs(layout), on_behalf_of=claimed).envelope
    assert list(get_call(gateway, layout, envelope.call).envelope.on_behalf_of.roles) == []


def test_a_call_for_itself_has_no_on_behalf_of(gateway: ServiceHarness, layout: StateLayout) -> None:
    envelope = generate_as(gateway, as_runs(layout)).envelope
    assert not envelope.HasField("on_behalf_of")
    assert not get_call(gateway, layout, envelope.call).envelope.HasField("on_behalf_of")


def test_a_stream_records_the_person_too(gateway: ServiceHarness, layout: StateLayout) -> None:
    request = gateway_pb2.StreamTextRequest(operation="general_text", prompt="A rosette.", on_behalf_of=OPERATOR)
    *_, last = stub(gateway).StreamText(request, metadata=as_art_studio(layout), timeout=10)
    envelope = last.end.envelope
    assert (envelope.caller.id, envelope.on_behalf_of.id) == ("service:art_studio", "human:operator")


def test_an_image_call_records_the_person_too(start_gateway: GatewayFactory, layout: StateLayout) -> None:
    local = start_gateway()
    request = gateway_pb2.GenerateImageRequest(
        operation="concept_image", prompt="A rosette with eight petals.", size="256x256", on_behalf_of=OPERATOR
    )
    received = collect_images_sync(list(stub(local).GenerateImage(request, metadata=as_art_studio(layout), timeout=30)))
    stored = get_call(local, layout, received.envelope.call).envelope
    assert (stored.caller.id, stored.on_behalf_of.id) == ("service:art_studio", "human:operator")


def test_a_person_naming_someone_else_is_permission_denied_and_writes_nothing(
    gateway: ServiceHarness, fake: FakeOpenAI, layout: StateLayout
) -> None:
    error = rpc_error(lambda: generate_as(gateway, as_operator(layout), on_behalf_of=person("human:rita")))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ON_BEHALF_OF_NOT_ALLOWED")
    assert "a person calls as themselves" in error.message
    assert fake.calls == 0 and calls(gateway, layout) == []


def test_a_person_naming_themselves_is_refused_too(gateway: ServiceHarness, layout: StateLayout) -> None:
    error = rpc_error(lambda: generate_as(gateway, as_operator(layout), on_behalf_of=OPERATOR))
    assert error.reason == "ON_BEHALF_OF_NOT_ALLOWED"


def test_a_person_naming_someone_in_an_image_call_is_refused(start_gateway: GatewayFactory, layout) -> None:
    local = start_gateway()
    request = gateway_pb2.GenerateImageRequest(operation="concept_image", prompt="A rosette.", on_behalf_of=OPERATOR)
    error = rpc_error(lambda: list(stub(local).GenerateImage(request, metadata=as_operator(layout), timeout=30)))
    assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ON_BEHALF_OF_NOT_ALLOWED")
    assert calls(local, layout) == []


@pytest.mark.parametrize(
    "claim",
    [
        person("service:lineage", common_pb2.PRINCIPAL_KIND_SERVICE),
        person("human:operator", common_pb2.PRINCIPAL_KIND_SERVICE),
        person("system:custody", common_pb2.PRINCIPAL_KIND_SYSTEM),
        person("operator"),
        person("human:"),
        person("human:has space"),
        person("human:" + "x" * 129),
        person("human:operator", common_pb2.PRINCIPAL_KIND_UNSPECIFIED),
    ],
    ids=["a-service", "kind-mismatch", "the-system", "no-prefix", "no-name", "bad-character", "too-long", "no-kind"],
)
def test_a_malformed_claim_is_invalid_argument_and_writes_nothing(
    gateway: ServiceHarness, fake: FakeOpenAI, layout: StateLayout, claim: common_pb2.Principal
) -> None:
    error = rpc_error(lambda: generate_as(gateway, as_runs(layout), on_behalf_of=claim))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ON_BEHALF_OF_INVALID")
    assert error.violations and error.violations[0].field.startswith("on_behalf_of")
    assert fake.calls == 0 and calls(gateway, layout) == []


def test_a_request_id_replays_only_for_the_same_person(
    gateway: ServiceHarness, fake: FakeOpenAI, layout: StateLayout
) -> None:
    first = generate_as(gateway, as_runs(layout), request_id="k1", on_behalf_of=OPERATOR)
    again = generate_as(gateway, as_runs(layout), request_id="k1", on_behalf_of=OPERATOR)
    assert again.envelope.replayed and again.envelope.call == first.envelope.call and fake.calls == 1
    error = rpc_error(lambda: generate_as(gateway, as_runs(layout), request_id="k1", on_behalf_of=person("human:rita")))
    assert (error.code, error.reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    error = rpc_error(lambda: generate_as(gateway, as_runs(layout), request_id="k1"))
    assert error.reason == "REQUEST_ID_REUSED"


def test_a_record_stored_before_on_behalf_of_still_reads_and_the_ledger_audit_passes(
    database_url: str, start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout
) -> None:
    engine = create_engine(database_url)
    try:
        migrations.upgrade(engine, "ai_gateway")
        old = record()  # a record as the gateway stored it before on_behalf_of existed (see test_model.py)
        CallStore(engine).insert(old)
    finally:
        engine.dispose()
    gateway = start_gateway(fake, database_url=database_url, ledger_checkpoint_interval_s="0.05")
    new = generate_as(gateway, as_runs(layout), on_behalf_of=OPERATOR).envelope.call
    read = get_call(gateway, layout, old.envelope.call)
    assert read.envelope.caller.id == "service:runs" and not read.envelope.HasField("on_behalf_of")
    assert get_call(gateway, layout, new).envelope.on_behalf_of.id == "human:operator"
    settings = gateway.settings
    start_gateway.stop(gateway)  # type: ignore[attr-defined]
    assert isinstance(settings, AiGatewaySettings)
    report = audit(settings)
    assert report.findings == [] and (report.leaves, report.records) == (2, 2)
