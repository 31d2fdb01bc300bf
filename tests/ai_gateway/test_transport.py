"""The openai provider with the real SDK against the fake server: one request per attempt (no SDK retries),
errors reduced to kind/status/Retry-After, cut streams detected, keys read only from the environment."""

from __future__ import annotations

import asyncio
import socket
from email.utils import formatdate

import pytest

from services.ai_gateway.transport import OPENAI_KEY_ENV, TransportConfig, build_providers
from services.ai_gateway.transport.base import ErrorKind, Message, ProviderError, ProviderRequest, StreamFinished
from services.ai_gateway.transport.openai_provider import OpenAIProvider, retry_after_s
from tests.ai_gateway.fake_openai import FakeOpenAI, Reply, ok, status

KEY = "sk-test-transport-0000000000000000"


def provider(base_url: str, timeout_s: float = 2.0) -> OpenAIProvider:
    return OpenAIProvider(
        api_key=KEY, base_url=base_url, model="gpt-4o-mini", connect_timeout_s=1.0, timeout_s=timeout_s,
        max_connections=16,
    )  # fmt: skip


REQUEST = ProviderRequest("general_text", "gpt-4o-mini", (Message("user", "hi"),), 0.2, 50, variant_seed="v1")


def complete(base_url: str, timeout_s: float = 2.0) -> object:
    async def run() -> object:
        client = provider(base_url, timeout_s)
        try:
            return await client.complete(REQUEST, timeout_s)
        finally:
            await client.close()

    return asyncio.run(run())


def stream(base_url: str) -> list[object]:
    async def run() -> list[object]:
        client = provider(base_url)
        try:
            return [event async for event in client.stream(REQUEST, 2.0)]
        finally:
            await client.close()

    return asyncio.run(run())


def failure(call: object) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        call()  # type: ignore[operator]
    return raised.value


def test_a_completion_carries_content_model_usage_and_finish_reason(fake: FakeOpenAI) -> None:
    fake.script(ok("fine", model="gpt-4o-mini-2024-07-18"))
    response = complete(fake.base_url)
    assert response.content == "fine" and response.model == "gpt-4o-mini-2024-07-18"  # type: ignore[attr-defined]
    assert response.usage.cached_input_tokens == 2 and response.finish_reason == "stop"  # type: ignore[attr-defined]


def test_the_request_carries_the_key_model_parameters_and_a_seed(fake: FakeOpenAI) -> None:
    complete(fake.base_url)
    (sent,) = fake.requests
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert (sent.body["model"], sent.body["temperature"], sent.body["max_tokens"]) == ("gpt-4o-mini", 0.2, 50)
    assert isinstance(sent.body["seed"], int)


@pytest.mark.parametrize(
    ("reply", "kind", "retry_after"),
    [
        (status(429, "7"), ErrorKind.RATE_LIMITED, 7.0),
        (status(503, "2"), ErrorKind.SERVER_ERROR, 2.0),
        (status(500), ErrorKind.SERVER_ERROR, None),
        (status(408), ErrorKind.TIMEOUT, None),
        (status(400), ErrorKind.REJECTED, None),
        (status(401), ErrorKind.REJECTED, None),
        (Reply(kind="malformed"), ErrorKind.BAD_RESPONSE, None),
    ],
    ids=["429", "503", "500", "408", "400", "401", "malformed"],
)
def test_each_failure_is_one_request_reduced_to_its_kind(
    fake: FakeOpenAI, reply: Reply, kind: ErrorKind, retry_after: float | None
) -> None:
    fake.script(reply)
    error = failure(lambda: complete(fake.base_url))
    assert (error.kind, error.retry_after_s) == (kind, retry_after)
    assert fake.calls == 1  # the SDK's own retries are off


def test_a_provider_error_never_carries_upstream_text(fake: FakeOpenAI) -> None:
    fake.script(status(401))
    assert "fake error" not in str(failure(lambda: complete(fake.base_url)))


def test_a_slow_provider_times_out(fake: FakeOpenAI) -> None:
    fake.script(Reply(kind="hang", delay_s=1.0))
    assert failure(lambda: complete(fake.base_url, timeout_s=0.2)).kind is ErrorKind.TIMEOUT


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert failure(lambda: complete(f"http://127.0.0.1:{port}/v1")).kind is ErrorKind.CONNECTION


def test_a_stream_yields_deltas_then_usage_and_finish(fake: FakeOpenAI) -> None:
    fake.script(Reply(kind="stream", content="abcdefghij", chunk_size=3))
    events = stream(fake.base_url)
    assert "".join(e.text for e in events[:-1]) == "abcdefghij"  # type: ignore[attr-defined]
    finished = events[-1]
    assert isinstance(finished, StreamFinished) and finished.finish_reason == "stop"
    assert finished.usage is not None and finished.usage.output_tokens == 7


@pytest.mark.parametrize("kind", ["stream_cut", "stream_truncated"])
def test_a_stream_cut_after_its_first_chunk_is_interrupted(fake: FakeOpenAI, kind: str) -> None:
    fake.script(Reply(kind=kind, content="abcdefghijklmnop", chunk_size=4, cut_after=2))  # type: ignore[arg-type]
    assert failure(lambda: stream(fake.base_url)).kind is ErrorKind.INTERRUPTED


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": formatdate(1_000_010, usegmt=True)}, 10.0),
        ({"retry-after": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_in_every_form(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_s(headers, now=1_000_000) == expected


CONFIG = TransportConfig("http://127.0.0.1:9/v1", "gpt-4o-mini", "custody-local-1", 1.0, 2.0, 8)


def test_without_a_key_only_the_local_provider_exists() -> None:
    assert set(build_providers(CONFIG, {})) == {"local"}


def test_a_key_in_the_environment_adds_the_openai_provider() -> None:
    providers = build_providers(CONFIG, {OPENAI_KEY_ENV: KEY})
    assert set(providers) == {"local", "openai"}
    asyncio.run(providers["openai"].close())
