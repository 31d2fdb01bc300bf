"""The review console for tests: served over real HTTP (uvicorn on a free port, in a thread) in front of real
services, and people signed in to it through its own sign-in form, as a browser would.

    with serving_console(addresses) as console:      # addresses: service -> "127.0.0.1:port"
        client = signed_in_client(console.url, token)  # an httpx.Client holding that person's session cookie
        page = client.get("/runs")

The console it serves records every call it makes to a service (`console.upstream_calls`, or
`console.calls_during()` around one request), so a test can prove that a page called nothing it should not have.
`structural_problems(html)` checks what an accessibility checker flags first (one h1, header scopes, labels, alt
text), without a browser.

In pytest, `console_client` is the fixture for the signed-in client: a factory, `console_client(token)`, whose
clients are closed after the test. It needs a fixture named `console` in scope: anything with the console's `url`,
a `ServedConsole` here or the process stack's `ConsoleStack` (tests/support/console_stack.py), typically one per
module or package; import `console_client` into the test package's conftest.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Protocol

import httpx
import pytest
import uvicorn

from services.common.catalog import SERVICE_NAMES
from services.common.config import env_prefix
from services.console.app import create_app
from services.console.config import ConsoleSettings
from services.console.session import SESSION_COOKIE
from services.console.upstream import PersonCalls, Upstream
from tests.support.console_stack import sign_in

_STARTUP_POLLS = 500  # x 10 ms


class _RecordingCalls(PersonCalls):
    """A person's calls, each noted as (service, method) before it is made."""

    def __init__(self, upstream: RecordingUpstream, token: str) -> None:
        super().__init__(upstream._clients, token)
        self._log = upstream.calls

    async def call(self, service: str, method: str, request: Any) -> Any:
        self._log.append((service, method))
        return await super().call(service, method, request)

    async def stream(self, service: str, method: str, request: Any) -> list[Any]:
        self._log.append((service, method))
        return await super().stream(service, method, request)


class RecordingUpstream(Upstream):
    """The console's real channels to the services, with a note of every call made through them."""

    def __init__(self, settings: ConsoleSettings) -> None:
        super().__init__(settings)
        self.calls: list[tuple[str, str]] = []

    def as_person(self, token: str) -> PersonCalls:
        return _RecordingCalls(self, token)


@dataclass
class ServedConsole:
    url: str
    settings: ConsoleSettings
    upstream_calls: list[tuple[str, str]] = field(default_factory=list)

    def client(self) -> httpx.Client:
        """A client of the console with no session (what a browser is before signing in)."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=60)

    @contextmanager
    def calls_during(self) -> Iterator[list[tuple[str, str]]]:
        """The calls the console makes to the services inside the block (filled in when it ends)."""
        start = len(self.upstream_calls)
        made: list[tuple[str, str]] = []
        yield made
        made.extend(self.upstream_calls[start:])


class AConsole(Protocol):
    """What `console_client` needs of the `console` fixture: where the console answers."""

    @property
    def url(self) -> str: ...


def signed_in_client(url: str, token: str) -> httpx.Client:
    """An httpx.Client of the console at `url`, signed in with `token` through the sign-in form (GET it for its CSRF
    field and cookie, POST the token) and holding the session cookie. Fails the test if the console refuses."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    try:
        sign_in(client, token)
        assert client.cookies.get(SESSION_COOKIE), "sign-in set no session cookie"
    except BaseException:
        client.close()
        raise
    return client


def console_settings(addresses: Mapping[str, str], **settings: str) -> ConsoleSettings:
    """Console settings naming each service's address (plain gRPC, loopback), plus any other setting."""
    prefix = env_prefix("console")
    environ = {f"{prefix}{service.upper()}_ADDRESS": addresses[service] for service in SERVICE_NAMES}
    environ.update({f"{prefix}{key.upper()}": value for key, value in settings.items()})
    return ConsoleSettings.load(None, environ)


@contextmanager
def serving_console(addresses: Mapping[str, str], **settings: str) -> Iterator[ServedConsole]:
    """The console app served by uvicorn on a free loopback port until the block ends."""
    console_config = console_settings(addresses, **settings)
    upstream = RecordingUpstream(console_config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(console_config, upstream),
            log_config=None,
            access_log=False,
            server_header=False,
            lifespan="on",
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="console", daemon=True)
    thread.start()
    try:
        for _ in range(_STARTUP_POLLS):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.01)
        assert server.started, "the console did not start"
        yield ServedConsole(f"http://127.0.0.1:{port}", console_config, upstream.calls)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def console_client(console: AConsole) -> Iterator[Callable[[str], httpx.Client]]:
    """`console_client(token)`: an httpx.Client signed in to the `console` fixture's console as the person whose
    token it is (through the real sign-in form); every client is closed after the test."""
    clients: list[httpx.Client] = []

    def signed_in(token: str) -> httpx.Client:
        client = signed_in_client(console.url, token)
        clients.append(client)
        return client

    yield signed_in
    for client in clients:
        client.close()


class _Structure(HTMLParser):
    """What `structural_problems` checks, gathered in one pass."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.h1 = 0
        self.problems: list[str] = []
        self.label_for: set[str] = set()
        self.controls: list[tuple[str, str, bool]] = []  # (tag, id, inside a label)
        self._labels_open = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "h1":
            self.h1 += 1
        elif tag == "th" and values.get("scope") not in ("col", "row", "colgroup", "rowgroup"):
            self.problems.append(f"a table header without scope: {values}")
        elif tag == "img" and "alt" not in values:
            self.problems.append(f"an image without alt text: {values.get('src')}")
        elif tag == "label":
            self._labels_open += 1
            if values.get("for"):
                self.label_for.add(values["for"])
        elif tag in ("input", "select", "textarea") and values.get("type") not in ("hidden", "submit", "button"):
            self.controls.append((tag, values.get("id", ""), self._labels_open > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._labels_open -= 1


def structural_problems(page: str) -> list[str]:
    """What an accessibility checker would flag first, checked without a browser: exactly one h1, a scope on every
    table header, alt text on every image, a label on every form control."""
    parser = _Structure()
    parser.feed(page)
    problems = list(parser.problems)
    if parser.h1 != 1:
        problems.append(f"{parser.h1} h1 elements (one expected)")
    for tag, control_id, wrapped in parser.controls:
        if not wrapped and control_id not in parser.label_for:
            problems.append(f"a {tag} without a label (id {control_id!r})")
    return problems
