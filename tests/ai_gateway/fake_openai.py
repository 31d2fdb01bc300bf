"""A scriptable OpenAI-compatible HTTP server for tests and benchmarks (stdlib only).

It serves `POST /v1/chat/completions` (plain JSON or SSE streams) and `POST /v1/images/generations` (base64 PNGs,
with an optional revised_prompt) on 127.0.0.1 with an OS-assigned port. Tests
queue replies (`script(...)`) that are consumed one per upstream request; when the queue is empty the default
reply answers. Every request is recorded (path, headers, JSON body) so tests assert exact upstream call counts
and what the gateway sent.

Run it as a process for benchmarks: `python -m tests.ai_gateway.fake_openai [--delay-ms N] [--content-file F]
[--chunk-chars N]` prints its base URL.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from services.ai_gateway.transport.png import encode_png

ReplyKind = Literal["ok", "status", "malformed", "stream", "stream_cut", "stream_truncated", "hang"]

DEFAULT_MODEL = "gpt-4o-mini"


@dataclass(frozen=True)
class Reply:
    """What the server does for one request.

    ok: a chat completion with `content` and `usage` (an SSE stream of it when the request asks to stream);
    status: an error status with a JSON error body and `headers` (e.g. Retry-After);
    malformed: 200 with a body that is not JSON;
    stream: SSE chunks of `content`, then finish_reason, usage and [DONE];
    stream_cut: `cut_after` chunks, then the connection drops mid-body (chunked encoding never terminated);
    stream_truncated: `cut_after` chunks, then a clean end of body without finish_reason or [DONE];
    hang: sleeps `delay_s` before answering like `ok` (for timeouts).

    For images, ok answers `n` PNGs of the size asked for (or `image` as every image, or `b64` verbatim as
    every image's b64_json), each with `revised_prompt` when set; status and malformed as above.
    """

    kind: ReplyKind = "ok"
    content: str = "Hello from the fake provider."
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    delay_s: float = 0.0
    usage: dict[str, Any] | None = field(
        default_factory=lambda: {
            "prompt_tokens": 12,
            "completion_tokens": 7,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 2},
        }
    )
    model: str = DEFAULT_MODEL
    chunk_size: int = 4
    cut_after: int = 2
    finish_reason: str = "stop"
    # Error bodies quote the bearer token they got, as real providers partly do ("Incorrect API key: sk-...").
    echo_key: bool = False
    image: bytes | None = None
    b64: str | None = None
    revised_prompt: str | None = None


def ok(content: str = "Hello from the fake provider.", **kwargs: Any) -> Reply:
    return Reply(kind="ok", content=content, **kwargs)


def status(code: int, retry_after: str | None = None, **kwargs: Any) -> Reply:
    headers = (("Retry-After", retry_after),) if retry_after is not None else ()
    return Reply(kind="status", status=code, headers=headers, **kwargs)


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms per request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the gateway's own logs are what tests inspect."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        fake = self.server.fake
        reply = fake.next_reply(Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        if reply.delay_s:
            time.sleep(reply.delay_s)
        path = self.path.rstrip("/")
        if path not in ("/v1/chat/completions", "/v1/images/generations"):
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        elif reply.kind == "status":
            message = f"fake error {reply.status}"
            if reply.echo_key:
                message += f": Incorrect API key provided: {self.headers.get('Authorization', '')}"
            error = {"error": {"message": message, "type": "server_error", "code": None}}
            self._json(reply.status, error, reply.headers)
        elif reply.kind == "malformed":
            self._raw(200, b'{"id": "chatcmpl-broken", "choices": [ {"message": ', "application/json")
        elif path == "/v1/images/generations":
            self._json(200, _images(reply, body))
        elif body.get("stream"):
            self._stream(reply, body)
        else:
            self._json(200, _completion(reply, body))

    def _json(self, code: int, document: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._raw(code, json.dumps(document).encode(), "application/json", headers)

    def _raw(self, code: int, data: bytes, content_type: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, reply: Reply, body: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        if reply.kind == "stream_truncated":
            self.close_connection = True
        self.end_headers()
        pieces = [reply.content[i : i + reply.chunk_size] for i in range(0, len(reply.content), reply.chunk_size)]
        events = [_chunk(reply, {"role": "assistant", "content": ""}, None)]
        events += [_chunk(reply, {"content": piece}, None) for piece in pieces]
        if reply.kind in ("stream_cut", "stream_truncated"):
            for event in events[: reply.cut_after + 1]:
                self._send_chunk(_sse(event))
            if reply.kind == "stream_cut":  # drop the connection with the chunked body unterminated
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(b"0\r\n\r\n")  # a clean end of body, but no finish_reason and no [DONE]
            return
        events.append(_chunk(reply, {}, reply.finish_reason))
        if (body.get("stream_options") or {}).get("include_usage") and reply.usage is not None:
            final = _chunk(reply, {}, None)
            final["choices"] = []
            final["usage"] = reply.usage
            events.append(final)
        for event in events:
            self._send_chunk(_sse(event))
        self._send_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _send_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _chunk(reply: Reply, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": reply.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _completion(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": reply.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.content},
                "finish_reason": reply.finish_reason,
            }
        ],
    }
    if reply.usage is not None:
        document["usage"] = reply.usage
    return document


def solid_png(width: int, height: int, rgb: tuple[int, int, int] = (40, 90, 160)) -> bytes:
    return encode_png(width, height, [bytes(rgb) * width] * height)


def _images(reply: Reply, body: dict[str, Any]) -> dict[str, Any]:
    width, height = (int(v) for v in str(body.get("size") or "1024x1024").split("x"))
    items = []
    for index in range(int(body.get("n") or 1)):
        if reply.b64 is not None:
            data = reply.b64
        else:
            image = reply.image or solid_png(width, height, (40, 90, (160 + index) % 256))
            data = base64.b64encode(image).decode()
        item: dict[str, Any] = {"b64_json": data}
        if reply.revised_prompt is not None:
            item["revised_prompt"] = reply.revised_prompt
        items.append(item)
    return {"created": 1_700_000_000, "data": items}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    fake: FakeOpenAI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that gave up (timeouts, cut streams) are expected here; nothing to report."""


class FakeOpenAI:
    """The server; use as a context manager. `base_url` ends in /v1, as the openai SDK expects."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    def next_reply(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            return self._script.popleft() if self._script else self.default

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible server for benchmarks")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before every reply")
    parser.add_argument("--content-file", help="answer with this file's text instead of the default sentence")
    parser.add_argument("--chunk-chars", type=int, default=4, help="characters per streamed chunk")
    args = parser.parse_args()
    content = Path(args.content_file).read_text(encoding="utf-8") if args.content_file else Reply.content
    with FakeOpenAI(Reply(delay_s=args.delay_ms / 1000, content=content, chunk_size=args.chunk_chars)) as fake:
        print(fake.base_url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # runs until the parent closes our stdin (or dies)


if __name__ == "__main__":
    main()
