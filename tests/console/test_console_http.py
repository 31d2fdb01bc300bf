"""The console over plain HTTP, as an attacker would use it: forged and cross-site forms, other people's headers,
service tokens, revoked tokens, open redirects and the artifact's own bytes. Each decision is checked in lineage
over gRPC, not in the console's own answer."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml

from custody.lineage.v1 import lineage_pb2
from services.console.session import SESSION_COOKIE
from tests.support.console_stack import ConsoleStack, console_stack, csrf_of
from tests.support.processes import clean_environment, custody

pytestmark = pytest.mark.stack

PAGES = ("/queue", "/sign-in")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with console_stack(tmp_path_factory.mktemp("console-http")) as stack:
        yield stack


def _decide(client: httpx.Client, name: str, decision: str, csrf: str, **extra: str) -> httpx.Response:
    form = {"csrf": csrf, "decision": decision, "rationale": "looks right", "request_id": "console-test-1", **extra}
    return client.post(f"/decide/{name}", data=form, headers={"origin": str(client.base_url).rstrip("/")})


def test_pages_need_a_sign_in(site: ConsoleStack) -> None:
    with site.client() as client:
        response = client.get("/queue")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/sign-in?next=")


def test_the_session_cookie_is_http_only_and_same_site_strict(site: ConsoleStack) -> None:
    with site.client() as client:
        form = client.get("/sign-in")
        response = client.post("/sign-in", data={"csrf": csrf_of(form), "token": site.reviewer_token, "next": "/q"})
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP on loopback; under TLS it is Secure (tests/stack/test_tls_stack)


def test_sign_in_without_the_forms_own_token_is_refused(site: ConsoleStack) -> None:
    with site.client() as client:
        client.get("/sign-in")
        response = client.post("/sign-in", data={"csrf": "forged", "token": site.reviewer_token})
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_a_wrong_token_does_not_sign_in(site: ConsoleStack) -> None:
    with site.client() as client:
        form = client.get("/sign-in")
        response = client.post("/sign-in", data={"csrf": csrf_of(form), "token": "cst_not-a-real-token"})
    assert response.status_code == 401
    assert "do not accept this token" in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


def test_a_service_token_cannot_sign_in(site: ConsoleStack) -> None:
    service_token = yaml.safe_load((site.stack.state_dir / "config" / "runs.yaml").read_text())["token"]
    with site.client() as client:
        form = client.get("/sign-in")
        response = client.post("/sign-in", data={"csrf": csrf_of(form), "token": service_token})
    assert response.status_code == 403
    assert "belongs to a service" in response.text


def test_after_sign_in_it_goes_only_to_a_local_page(site: ConsoleStack) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        with site.client() as client:
            form = client.get("/sign-in")
            response = client.post(
                "/sign-in", data={"csrf": csrf_of(form), "token": site.reviewer_token, "next": target}
            )
        assert response.headers["location"] == "/queue", target


def test_every_page_carries_the_security_headers(site: ConsoleStack) -> None:
    with site.signed_in(site.reviewer_token) as client:
        for path in (*PAGES, f"/versions/{site.stale_candidate()}"):
            headers = client.get(path).headers
            policy = headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy and "script-src" not in policy
            assert "default-src 'none'" in policy
            assert headers["x-content-type-options"] == "nosniff"
            assert headers["referrer-policy"] == "same-origin"
            assert headers["x-frame-options"] == "DENY"
            assert headers["cache-control"] == "no-store"


def test_the_svg_is_served_alone_under_its_own_sandboxing_policy_and_never_inlined(site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[0]
    with site.signed_in(site.reviewer_token) as client:
        page = client.get(f"/versions/{candidate}")
        svg = client.get(f"/svg/{candidate}")
    assert svg.status_code == 200
    assert svg.headers["content-type"] == "image/svg+xml"
    assert "sandbox" in svg.headers["content-security-policy"]
    assert "default-src 'none'" in svg.headers["content-security-policy"]
    assert svg.headers["x-content-type-options"] == "nosniff"
    recorded = site.version(candidate).data.fields["svg_sha256"].string_value
    assert hashlib.sha256(svg.content).hexdigest() == recorded
    assert f'<img class="preview" src="/svg/{candidate}"' in page.text
    body = svg.text[svg.text.index("<svg") :]
    assert body[:200] not in page.text


def test_a_decision_without_the_csrf_token_is_refused_and_changes_nothing(site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[0]
    before = site.version(candidate).status.revision
    with site.signed_in(site.reviewer_token) as client:
        response = _decide(client, candidate, "reject", csrf="0" * 64)
    assert response.status_code == 403
    assert site.version(candidate).status.revision == before


def test_a_decision_posted_from_another_site_is_refused_even_with_a_valid_token(site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[0]
    before = site.version(candidate).status.revision
    with site.signed_in(site.reviewer_token) as client:
        csrf = csrf_of(client.get(f"/versions/{candidate}"))
        form = {"csrf": csrf, "decision": "reject", "rationale": "x", "request_id": "console-test-2"}
        cross_site = client.post(f"/decide/{candidate}", data=form, headers={"origin": "https://evil.example"})
        fetch_site = client.post(f"/decide/{candidate}", data=form, headers={"sec-fetch-site": "cross-site"})
    assert (cross_site.status_code, fetch_site.status_code) == (403, 403)
    assert site.version(candidate).status.revision == before


def test_one_sessions_csrf_token_is_worthless_in_anothers(site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[0]
    with site.signed_in(site.operator_token) as operator:
        operators_csrf = csrf_of(operator.get("/queue"))
    with site.signed_in(site.reviewer_token) as reviewer:
        response = _decide(reviewer, candidate, "reject", operators_csrf)
    assert response.status_code == 403


def test_the_console_acts_only_as_the_cookies_person_whatever_else_the_request_says(site: ConsoleStack) -> None:
    # The operator requested the candidates, so four eyes refuses them. Adding the reviewer's token as a header,
    # or naming the reviewer in the form, must not make the console approve as the reviewer.
    candidate = site.fresh_candidates()[0]
    with site.signed_in(site.operator_token) as operator:
        csrf = csrf_of(operator.get(f"/versions/{candidate}"))
        operator.headers["authorization"] = f"Bearer {site.reviewer_token}"
        operator.headers["x-custody-principal"] = "human:rita"
        response = _decide(operator, candidate, "approve", csrf, reviewer="human:rita", principal="human:rita")
    assert response.status_code == 409
    assert "SELF_APPROVAL" in response.text
    assert site.version(candidate).status.status == lineage_pb2.STATUS_DRAFT


def test_an_approval_through_the_console_is_recorded_as_the_signed_in_reviewer(site: ConsoleStack) -> None:
    candidate = site.fresh_candidates()[-1]
    with site.signed_in(site.reviewer_token) as client:
        csrf = csrf_of(client.get(f"/versions/{candidate}"))
        response = _decide(client, candidate, "approve", csrf, request_id="console-approve-1")
        replay = _decide(client, candidate, "approve", csrf, request_id="console-approve-1")
    assert response.status_code == 303, response.text
    assert replay.status_code == 303  # the same form twice is one decision
    version = site.version(candidate)
    assert version.status.status == lineage_pb2.STATUS_APPROVED
    assert version.status.actor.id == "human:rita"
    assert version.status.rationale == "looks right"
    assert [r.status for r in version.status_history].count(lineage_pb2.STATUS_APPROVED) == 1


def test_a_stale_chain_is_refused_with_every_reason_and_nothing_changes(site: ConsoleStack) -> None:
    stale = site.stale_candidate()
    before = site.version(stale)
    with site.signed_in(site.reviewer_token) as client:
        csrf = csrf_of(client.get(f"/versions/{stale}"))
        response = _decide(client, stale, "approve", csrf, request_id="console-stale-1")
    assert response.status_code == 409
    assert "Your decision was refused" in response.text
    assert "UPSTREAM_NOT_LATEST" in response.text and "LINEAGE_STALE" in response.text
    assert "Nothing changed" in response.text
    after = site.version(stale)
    assert (after.status.status, after.status.revision) == (before.status.status, before.status.revision)


def test_a_decision_needs_a_rationale(site: ConsoleStack) -> None:
    candidate = site.stale_candidate()
    with site.signed_in(site.reviewer_token) as client:
        csrf = csrf_of(client.get(f"/versions/{candidate}"))
        response = _decide(client, candidate, "flag", csrf, rationale="   ")
    assert response.status_code == 400
    assert "needs a rationale" in response.text


def test_the_gate_is_shown_before_deciding_without_recording_anything(site: ConsoleStack) -> None:
    stale = site.stale_candidate()
    before = site.version(stale).status.revision
    with site.signed_in(site.reviewer_token) as client:
        page = client.get(f"/versions/{stale}")
    assert "Approving now would be refused" in page.text
    assert "LINEAGE_STALE" in page.text
    assert site.version(stale).status.revision == before


def test_a_revoked_token_signs_the_browser_out_on_its_next_page(site: ConsoleStack) -> None:
    state = ["--state-dir", str(site.stack.state_dir)]
    token = custody("users", "add", "leaver", "--role", "reviewer", *state, env=clean_environment()).stdout.strip()
    with site.signed_in(token) as client:
        assert client.get("/queue").status_code == 200
        assert custody("users", "revoke", "leaver", *state, env=clean_environment()).returncode == 0
        for _ in range(100):  # the services re-read the credentials file about once a second
            response = client.get("/queue")
            if response.status_code == 303:
                break
            time.sleep(0.1)
    assert response.status_code == 303
    assert "no%20longer%20accept" in response.headers["location"]


def test_sign_out_needs_the_csrf_token_and_clears_the_cookie(site: ConsoleStack) -> None:
    with site.signed_in(site.reviewer_token) as client:
        csrf = csrf_of(client.get("/queue"))
        origin = {"origin": str(client.base_url).rstrip("/")}
        assert client.post("/sign-out", data={"csrf": "nope"}, headers=origin).status_code == 403
        response = client.post("/sign-out", data={"csrf": csrf}, headers=origin)
    assert response.status_code == 303
    assert re.search(rf"{SESSION_COOKIE}=\"?\"?;", response.headers["set-cookie"])
