"""The `openai` provider: the official SDK (AsyncOpenAI) against api.openai.com or any OpenAI-compatible server.

SDK retries are off (max_retries=0): the gateway retries itself, within the caller's deadline, and counts every
attempt. Timeouts are explicit per attempt; the connection pool is sized for hundreds of concurrent in-flight
calls. HTTP goes through the SDK's aiohttp transport (DefaultAioHttpClient): it costs markedly less CPU per call
than the httpx default, and this process's CPU is what concurrent callers queue for. SDK errors are reduced to a
kind, a status and Retry-After: their text is never passed on, because it can quote the request or a masked key.
Images go through `client.images.generate` and come back as base64 (`b64_json`; the gpt-image models send only
that and refuse the parameter, the dall-e models need it asked for); each is decoded and checked to be a PNG of
the size asked for, or the answer is BAD_RESPONSE.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai

from services.ai_gateway.transport.base import (
    ErrorKind,
    ImagePrompt,
    ProviderError,
    ProviderImages,
    ProviderRequest,
    ProviderResponse,
    StreamEvent,
    StreamFinished,
    TextDelta,
    Usage,
)
from services.ai_gateway.transport.png import NotPng, png_dimensions
from services.common.hashing import sha256_text

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Their DEBUG output can include URLs and request details; nothing of theirs goes to our logs below WARNING.
QUIET_LOGGERS = ("openai", "httpx2", "httpcore2", "httpx", "httpcore")


def quiet_sdk_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        model: str,
        connect_timeout_s: float,
        timeout_s: float,
        max_connections: int,
    ) -> None:
        quiet_sdk_loggers()
        self.default_model = model
        self._connect_timeout_s = connect_timeout_s
        timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        http_client = openai.DefaultAioHttpClient(
            timeout=timeout,
            limits=httpx2.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections, keepalive_expiry=30.0
            ),
        )
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or OPENAI_DEFAULT_BASE_URL,
            max_retries=0,
            timeout=timeout,
            http_client=http_client,
        )

    def _timeout(self, timeout_s: float) -> httpx2.Timeout:
        return httpx2.Timeout(timeout_s, connect=min(self._connect_timeout_s, timeout_s))

    def _arguments(self, request: ProviderRequest) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "model": request.model or self.default_model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.variant_seed:
            arguments["seed"] = int(sha256_text(request.variant_seed)[:8], 16)
        if request.response_schema is not None:
            arguments["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.response_schema, "strict": False},
            }
        return arguments

    async def complete(self, request: ProviderRequest, timeout_s: float) -> ProviderResponse:
        # The SDK's generic `post` with a raw response: its auth, base URL, timeouts and status errors, without
        # the typed request transform and pydantic parsing that cost about a millisecond of CPU per call.
        try:
            raw = await self._client.post(
                "/chat/completions",
                body=self._arguments(request),
                cast_to=httpx2.Response,
                options={"timeout": self._timeout(timeout_s)},
            )
            document = json.loads(await raw.aread())
        except ValueError:
            raise ProviderError(ErrorKind.BAD_RESPONSE) from None
        except Exception as exc:
            raise classify(exc) from None
        return parse_completion(document, request.model)

    async def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        try:
            stream = await self._client.chat.completions.create(
                **self._arguments(request),
                stream=True,
                stream_options={"include_usage": True},
                timeout=self._timeout(timeout_s),
            )
        except Exception as exc:
            raise classify(exc) from None
        started = False
        finish_reason, model, usage = "", request.model, None
        try:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = _usage(chunk.usage)
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta else None
                    if text:
                        started = True
                        yield TextDelta(text)
                    if choice.finish_reason:
                        finish_reason = choice.finish_reason
        except ProviderError:
            raise
        except Exception as exc:
            error = classify(exc)
            # After the first chunk nothing may be retried: a cut stream is its own, final kind.
            raise (ProviderError(ErrorKind.INTERRUPTED, status=error.status) if started else error) from None
        finally:
            await stream.close()
        if not finish_reason:  # the body ended cleanly but the provider never said it was done
            raise ProviderError(ErrorKind.INTERRUPTED if started else ErrorKind.BAD_RESPONSE)
        yield StreamFinished(model, usage, finish_reason)

    async def generate_images(self, request: ImagePrompt, timeout_s: float) -> ProviderImages:
        arguments: dict[str, Any] = {"model": request.model, "prompt": request.prompt, "n": request.count}
        arguments["size"] = request.size
        if not request.model.startswith("gpt-image"):
            arguments["response_format"] = "b64_json"
        try:
            response = await self._client.images.generate(**arguments, timeout=self._timeout(timeout_s))
        except Exception as exc:
            raise classify(exc) from None
        return parse_images(response, request)

    async def close(self) -> None:
        await self._client.close()


def parse_images(response: Any, request: ImagePrompt) -> ProviderImages:
    """The images of an images API answer; BAD_RESPONSE unless it holds exactly `count` base64 PNGs of the size
    asked for. The first revised_prompt, if any, is the provider's revision of the prompt."""
    try:
        data = list(response.data or ())
        if len(data) != request.count:
            raise ValueError("wrong number of images")
        images = []
        for item in data:
            if not isinstance(item.b64_json, str):
                raise ValueError("no base64 image")
            image = base64.b64decode(item.b64_json, validate=True)
            if png_dimensions(image) != (request.width, request.height):
                raise ValueError("not the size asked for")
            images.append(image)
        revised = next((item.revised_prompt for item in data if isinstance(item.revised_prompt, str)), None)
    except (binascii.Error, NotPng, ValueError, TypeError, AttributeError):
        raise ProviderError(ErrorKind.BAD_RESPONSE) from None
    return ProviderImages(tuple(images), request.model, revised)


def parse_completion(document: Any, requested_model: str) -> ProviderResponse:
    """A chat completion body as ProviderResponse; BAD_RESPONSE unless it has a first choice with text."""
    try:
        choice = document["choices"][0]
        content = choice["message"]["content"]
        if not isinstance(content, str):
            raise TypeError("no text content")
        usage = document.get("usage")
        return ProviderResponse(
            content,
            str(document.get("model") or requested_model),
            _usage_from_dict(usage) if isinstance(usage, dict) else None,
            str(choice.get("finish_reason") or ""),
        )
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        raise ProviderError(ErrorKind.BAD_RESPONSE) from None


def _usage_from_dict(usage: dict[str, Any]) -> Usage:
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    return Usage(int(usage.get("prompt_tokens") or 0), int(cached or 0), int(usage.get("completion_tokens") or 0))


def _usage(usage: Any) -> Usage | None:
    if usage is None:
        return None
    details = getattr(usage, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) or 0
    return Usage(int(usage.prompt_tokens or 0), int(cached), int(usage.completion_tokens or 0))


def classify(exc: BaseException) -> ProviderError:
    """Reduces an SDK or HTTP exception to a ProviderError, keeping only kind, status and Retry-After."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retry_after = retry_after_s(exc.response.headers) if exc.response is not None else None
        if status == 429:
            return ProviderError(ErrorKind.RATE_LIMITED, status=status, retry_after_s=retry_after)
        if status == 408:
            return ProviderError(ErrorKind.TIMEOUT, status=status, retry_after_s=retry_after)
        if status >= 500:
            return ProviderError(ErrorKind.SERVER_ERROR, status=status, retry_after_s=retry_after)
        return ProviderError(ErrorKind.REJECTED, status=status)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        # The aiohttp transport reports a refused connection as a connect *timeout*; the socket error it wraps
        # says what happened (a timeout may have been charged for, a refusal never was).
        root = _root_cause(exc)
        if isinstance(root, OSError) and not isinstance(root, TimeoutError):
            return ProviderError(ErrorKind.CONNECTION)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException) or isinstance(root, TimeoutError):
            return ProviderError(ErrorKind.TIMEOUT)
        return ProviderError(ErrorKind.CONNECTION)
    return ProviderError(ErrorKind.BAD_RESPONSE)


def _root_cause(exc: BaseException) -> BaseException:
    seen = 0
    while exc.__cause__ is not None and seen < 16:
        exc, seen = exc.__cause__, seen + 1
    return exc


def retry_after_s(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or HTTP date); None when absent or bad."""
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            if name == "retry-after-ms":
                continue
            parsed = email.utils.parsedate_tz(raw)
            if parsed is None:
                return None
            value = email.utils.mktime_tz(parsed) - (time.time() if now is None else now)
        if value != value or value < 0:  # NaN or in the past
            return 0.0 if value == value else None
        return value
    return None
