"""Redaction canary: a planted provider key and a secret in a prompt appear in no log line (even at DEBUG), span,
error message or non-verbose audit row (the database files are searched byte for byte); and every shape of secret
(PEM blocks, URL credentials, cloud keys, Authorization values, JWTs), in prompts and in provider responses, is
kept out of verbose audit rows too: not stored when it blocked the call, redacted when it did not."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from custody.ai_gateway.v1 import gateway_pb2
from services.ai_gateway.config import DEFAULT_POLICY_FILE
from services.cli.state import StateLayout
from services.common import status
from services.common.telemetry import JsonLogFormatter
from tests.ai_gateway.conftest import CANARY_KEY, GatewayFactory, as_runs, generate, stream, stub
from tests.ai_gateway.fake_openai import FakeOpenAI, Reply, ok
from tests.ai_gateway.fake_openai import status as status_reply
from tests.support.harness import ServiceHarness

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


# Every shape of secret verbose audit must not keep, each with the parts of it that must appear nowhere.
SECRET_SHAPES = {
    "pem-block": (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEAcanaryPemLineOne\ncanaryPemLineTwo==\n"
        "-----END RSA PRIVATE KEY-----",
        ("canaryPemLineOne", "canaryPemLineTwo"),
    ),
    "pem-unterminated": ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEcanaryOpenPemBody", ("canaryOpenPemBody",)),
    "url-credentials": ("postgresql://custody:canaryDbPassw0rd@db.internal:5432/app", ("canaryDbPassw0rd",)),
    "aws-secret-key": ("aws_secret_access_key = canaryAwsSecret/K7MDENG+bPxRfiCY", ("canaryAwsSecret",)),
    "azure-account-key": (
        "AccountName=custody;AccountKey=canaryAzureKey0K1SZFPTOtr/KBHBeksoGMGw==;EndpointSuffix=core.windows.net",
        ("canaryAzureKey",),
    ),
    "gcp-client-secret": ("GOCSPX-canaryGcpClientSecret0123", ("canaryGcpClientSecret",)),
    "basic-auth": ("Authorization: Basic Y2FuYXJ5QmFzaWM6cGFzc3dvcmQ=", ("Y2FuYXJ5QmFzaWM6cGFzc3dvcmQ",)),
    "bearer": ("Authorization: Bearer canaryBearer.t0k", ("canaryBearer",)),
    "jwt": (
        "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOiJqd3QifQ.canaryJwtSignature0",
        ("eyJjYW5hcnkiOiJqd3QifQ", "canaryJwtSignature0"),
    ),
}
CANARIES = [part for _, parts in SECRET_SHAPES.values() for part in parts]


def _without_secret_detection(tmp_path: Path) -> Path:
    """The default policy with the secrets detector off in GENERAL: texts holding secrets pass the checks, so
    redaction alone keeps them out of the audit."""
    document = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    for direction in ("input", "output"):
        rules = document["categories"]["GENERAL"][direction]
        rules["detectors"] = [d for d in rules["detectors"] if d != "secrets"]
    path = tmp_path / "no-secret-detection.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _exchange_every_shape(gateway: ServiceHarness, fake: FakeOpenAI, layout: StateLayout) -> list[str]:
    """Each shape in a prompt and in a response, by GenerateText and by StreamText; the errors' text."""
    errors: list[str] = []

    def attempt(call: Callable[[], object]) -> None:
        try:
            call()
        except grpc.RpcError as exc:
            decoded = status.decode(exc)
            errors.append(f"{decoded.reason} {decoded.message}{decoded.metadata}{decoded.violations}{exc.details()}")

    for text, _ in SECRET_SHAPES.values():
        attempt(lambda text=text: generate(gateway, layout, prompt=f"Explain this: {text}"))
        attempt(lambda text=text: stream(gateway, layout, prompt=f"Stream this: {text}"))
        fake.script(ok(f"Here it is: {text} (done)"))
        attempt(lambda: generate(gateway, layout, prompt="Explain the rosette"))
        fake.script(Reply(kind="stream", content=f"Streamed: {text} (done)"))
        attempt(lambda: stream(gateway, layout, prompt="Stream the rosette"))
    return errors


def _assert_leaked_nowhere(layout: StateLayout, gateway: ServiceHarness, logs: str, errors: list[str]) -> bytes:
    listed = stub(gateway).ListCalls(gateway_pb2.ListCallsRequest(page_size=100), metadata=as_runs(layout), timeout=5)
    stored = b"".join(p.read_bytes() for p in Path(layout.root).glob("ai_gateway.db*"))
    assert stored and len(listed.calls) == 4 * len(SECRET_SHAPES)
    for canary in CANARIES:
        assert canary not in logs, f"{canary} leaked into the logs"
        assert not [e for e in errors if canary in e], f"{canary} leaked into an error"
        assert canary not in str(listed), f"{canary} leaked into ListCalls"
        assert canary.encode() not in stored, f"{canary} leaked into the audit database"
    return stored


def test_a_text_blocked_for_a_secret_is_not_kept_even_in_verbose_audit(
    start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout, captured_logs: io.StringIO
) -> None:
    gateway = start_gateway(fake, log_level="DEBUG", audit_verbose="true")
    errors = _exchange_every_shape(gateway, fake, layout)
    assert len(errors) == 4 * len(SECRET_SHAPES) and all(e.startswith("SAFETY_BLOCKED") for e in errors)
    assert fake.calls == 2 * len(SECRET_SHAPES)  # the prompts were blocked before any provider call
    _assert_leaked_nowhere(layout, gateway, captured_logs.getvalue(), errors)


def test_verbose_audit_redacts_every_shape_of_secret(
    start_gateway: GatewayFactory, fake: FakeOpenAI, layout: StateLayout, captured_logs: io.StringIO, tmp_path: Path
) -> None:
    policy = _without_secret_detection(tmp_path)
    gateway = start_gateway(fake, log_level="DEBUG", audit_verbose="true", policy_file=policy)
    errors = _exchange_every_shape(gateway, fake, layout)
    # The test has teeth: the secrets did reach the provider and came back, and the texts were stored, redacted.
    # Only the URL's prompts are blocked (its password@host is e-mail shaped); every other prompt reached the provider.
    assert len(errors) == 2 and all("input.detector.email" in e for e in errors)
    assert sum(any(c in str(r.body) for c in CANARIES) for r in fake.requests) == 2 * (len(SECRET_SHAPES) - 1)
    stored = _assert_leaked_nowhere(layout, gateway, captured_logs.getvalue(), errors)
    assert stored.count(b"[REDACTED:secrets]") >= 4 * len(SECRET_SHAPES) - 2
