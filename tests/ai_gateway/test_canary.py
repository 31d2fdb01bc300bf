"""Redaction canary: a planted provider key and a secret in a prompt appear in no log line (even at DEBUG), span,
error message or non-verbose audit row (the database files are searched byte for byte)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from custody.ai_gateway.v1 import gateway_pb2
from services.cli.state import StateLayout
from services.common import status
from services.common.telemetry import JsonLogFormatter
from tests.ai_gateway.conftest import CANARY_KEY, GatewayFactory, as_runs, generate, stream, stub
from tests.ai_gateway.fake_openai import FakeOpenAI
from tests.ai_gateway.fake_openai import status as status_reply

SECRET = "sk-proj-CANARYsecretValue0123456789abcdef"
PRIVATE = "PRIVATE-PROMPT-MARKER-7f3a91"  # not secret-shaped: it reaches the provider, and must stop there


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonLogFormatter("ai_gateway"))
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def test_the_key_and_prompt_secrets_leak_nowhere(
    start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout, captured_logs: io.StringIO
) -> None:
    gateway = start_gateway(fake, log_level="DEBUG")
    errors: list[status.DecodedError] = []

    def failing(call: object) -> None:
        with pytest.raises(grpc.RpcError) as raised:
            call()  # type: ignore[operator]
        errors.append(status.decode(raised.value))

    failing(lambda: generate(gateway, layout, operation="prompt_to_svg_spec", prompt=f"12 petals, key {SECRET}"))
    failing(lambda: stream(gateway, layout, prompt=f"use {SECRET} to sign"))
    generate(gateway, layout, prompt=f"Explain {PRIVATE}")
    stream(gateway, layout, prompt=f"Stream {PRIVATE}")
    fake.script(status_reply(401, echo_key=True))
    failing(lambda: generate(gateway, layout, prompt=f"Again {PRIVATE}"))
    listed = stub(gateway).ListCalls(gateway_pb2.ListCallsRequest(), metadata=as_runs(layout), timeout=5)

    # The test has teeth: the key did go to the provider (which echoed it back), the private prompt too,
    # the secret prompts were blocked, and the log capture saw the audit lines.
    assert all(r.headers["authorization"] == f"Bearer {CANARY_KEY}" for r in fake.requests)
    assert sum(PRIVATE in str(r.body) for r in fake.requests) == 3 and fake.calls == 3
    assert [e.reason for e in errors] == ["SAFETY_BLOCKED", "SAFETY_BLOCKED", "UPSTREAM_ERROR"]
    logs = captured_logs.getvalue()
    assert logs.count('"event":"ai_call"') == 5
    assert len(listed.calls) == 5

    spans = "".join(span.to_json() for span in gateway.spans.get_finished_spans())
    assert "ai_gateway.generate" in spans
    messages = "".join(f"{e.message}{e.metadata}{e.violations}" for e in errors)
    stored = b"".join(p.read_bytes() for p in Path(layout.root).glob("ai_gateway.db*"))
    assert stored  # the audit database exists and was searched
    for canary in (CANARY_KEY, SECRET, PRIVATE, "CANARYsecret", CANARY_KEY[-12:]):
        assert canary not in logs, f"{canary} leaked into the logs"
        assert canary not in spans, f"{canary} leaked into span data"
        assert canary not in messages, f"{canary} leaked into an error"
        assert canary not in str(listed), f"{canary} leaked into ListCalls"
        assert canary.encode() not in stored, f"{canary} leaked into the audit database"
