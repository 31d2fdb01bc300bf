"""The console's session rules without a server: CSRF tokens bound to the session, the sign-in double submit,
what counts as a token, where a sign-in may send the browser, and the cookies' attributes."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from services.common.config import ConfigError
from services.console import session
from services.console.app import Console, _safe_next
from services.console.config import ConsoleSettings


def test_a_csrf_token_is_valid_only_for_its_own_session() -> None:
    token = session.csrf_token("cst_alice")
    assert session.csrf_valid("cst_alice", token)
    assert not session.csrf_valid("cst_bob", token)
    assert not session.csrf_valid("cst_alice", token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not session.csrf_valid("cst_alice", "")


def test_the_csrf_token_does_not_reveal_the_session_token() -> None:
    assert "cst_alice" not in session.csrf_token("cst_alice")
    assert len(session.csrf_token("cst_alice")) == 64


def test_the_sign_in_form_needs_the_value_of_its_own_cookie() -> None:
    value = session.new_sign_in_value()
    assert session.sign_in_valid(value, value)
    assert not session.sign_in_valid(None, value)
    assert not session.sign_in_valid("", "")
    assert not session.sign_in_valid(value, session.new_sign_in_value())


@pytest.mark.parametrize("token", ["", "a b", "x" * 513, "caf\u00e9", "line\nbreak", "tab\tin"])
def test_what_cannot_be_a_bearer_token_is_refused_before_any_call(token: str) -> None:
    assert not session.plausible_token(token)


def test_a_custody_token_is_plausible() -> None:
    assert session.plausible_token("cst_ham9U_3EhKiRMfF6eTJKrjR_S-M5HlkntdD_S41VK8Y")


@pytest.mark.parametrize(
    "target",
    ["//evil.example", "https://evil.example/", "/\\\\evil.example", "javascript:alert(1)", "evil", "", "\\\\x"],
)
def test_a_sign_in_never_sends_the_browser_to_another_site(target: str) -> None:
    assert _safe_next(target) == "/queue"


def test_a_sign_in_returns_to_the_local_page_it_came_from() -> None:
    assert _safe_next("/versions/projects/p/artifacts/t/e/versions/1?decided=approve") == (
        "/versions/projects/p/artifacts/t/e/versions/1?decided=approve"
    )


def test_session_cookies_are_http_only_strict_and_secure_when_asked() -> None:
    cookie = session.CookiePolicy(secure=True, max_age_s=60).session("cst_x")
    assert (cookie["httponly"], cookie["samesite"], cookie["secure"], cookie["path"]) == (True, "strict", True, "/")


def test_cookies_are_secure_by_default_exactly_when_the_console_serves_tls() -> None:
    assert not ConsoleSettings.load(environ={}).resolved_secure_cookies
    with_tls = ConsoleSettings.load(environ={"CUSTODY_CONSOLE_TLS_DIR": "/etc/custody/tls"})
    assert with_tls.resolved_secure_cookies
    assert str(with_tls.resolved_ca_file) == "/etc/custody/tls/ca.crt"


def test_the_console_refuses_plain_http_beyond_loopback_unless_allowed() -> None:
    with pytest.raises(ConfigError, match="CUSTODY_CONSOLE_TLS_DIR"):
        ConsoleSettings.load(environ={"CUSTODY_CONSOLE_HOST": "0.0.0.0"})
    assert ConsoleSettings.load(environ={"CUSTODY_CONSOLE_HOST": "0.0.0.0", "CUSTODY_CONSOLE_ALLOW_PLAINTEXT": "1"})


def test_the_console_calls_the_services_public_ports_by_default() -> None:
    addresses = ConsoleSettings.load(environ={}).service_addresses()
    assert addresses == {
        "ai_gateway": "127.0.0.1:50051",
        "runs": "127.0.0.1:50052",
        "art_studio": "127.0.0.1:50053",
        "lineage": "127.0.0.1:50054",
    }


def test_an_unknown_console_setting_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="CUSTODY_CONSOLE_TOKEN: unknown setting"):
        ConsoleSettings.load(environ={"CUSTODY_CONSOLE_TOKEN": "cst_x"})


def _post(headers: dict[str, str]) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "scheme": "http",
        "server": ("127.0.0.1", 50080),
        "path": "/decide/x",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:50080"), *((k.encode(), v.encode()) for k, v in headers.items())],
    }
    return Request(scope)


def _console(**settings: str) -> Console:
    environ = {f"CUSTODY_CONSOLE_{k.upper()}": v for k, v in settings.items()}
    return Console(ConsoleSettings.load(environ=environ), upstream=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("headers", "accepted"),
    [
        ({"origin": "http://127.0.0.1:50080", "sec-fetch-site": "same-origin"}, True),
        ({}, True),  # no browser: the CSRF token and the cookie still decide
        ({"origin": "https://evil.example"}, False),
        ({"origin": "null"}, False),
        ({"sec-fetch-site": "cross-site"}, False),
        ({"sec-fetch-site": "same-site", "origin": "http://127.0.0.1:50080"}, False),
        ({"origin": "https://console.example.com"}, False),
    ],
)
def test_a_form_is_accepted_only_from_the_consoles_own_origin(headers: dict[str, str], accepted: bool) -> None:
    assert _console()._same_origin(_post(headers)) is accepted


def test_behind_a_tls_terminating_proxy_the_public_origin_is_the_consoles_own() -> None:
    console = _console(public_origin="https://console.example.com")
    assert console._same_origin(_post({"origin": "https://console.example.com", "sec-fetch-site": "same-origin"}))
    assert not console._same_origin(_post({"origin": "https://evil.example"}))
