"""The console's routes: sign-in and sign-out, the review queue, the artifact page with its SVG preview and
decision form, runs and AI calls.

Each handler reads the session cookie, resolves the person through the services, calls the services with the
person's token and renders what they answered. A handler never acts with any identity but the cookie's: the
console has none of its own. Forms are POST only, CSRF-checked before anything is called.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from custody.lineage.v1 import lineage_pb2
from services.common import call_context
from services.common.resource_names import VERSION_NAME
from services.common.version import CUSTODY_VERSION
from services.console import session
from services.console.config import ConsoleSettings
from services.console.pages.artifact import artifact_page
from services.console.pages.calls import call_name, call_page, calls_list
from services.console.pages.decision import DECISIONS, RefusalView, decide, refusal_view
from services.console.pages.evidence import candidate_for, candidate_svg
from services.console.pages.queue import review_queue
from services.console.pages.runs import run_name, run_page, runs_list
from services.console.people import NotAPerson, Person, identify
from services.console.security_headers import ARTIFACT_POLICY, SecurityHeaders
from services.console.upstream import PersonCalls, Refused, Upstream

log = logging.getLogger("custody.console")

HERE = Path(__file__).parent
# The longest rationale the form accepts; lineage stores it with the decision.
MAX_RATIONALE = 2000
# What the not-found page says of an id that cannot be a run's or a call's (nothing was called for it).
RUN_HINT = "A run is at /runs/run_ followed by 32 lower-case hex digits."
CALL_HINT = "An AI call is at /calls/call_ followed by 32 lower-case hex digits."
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "FAILED_PRECONDITION": 409,
    "ABORTED": 409,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}

Handler = Callable[[Request, "Signed"], Awaitable[Response]]


class Signed:
    """The signed-in person and the calls made as them, for one request."""

    def __init__(self, person: Person, calls: PersonCalls, token: str) -> None:
        self.person = person
        self.calls = calls
        self.csrf = session.csrf_token(token)
        self._token = token

    def csrf_valid(self, presented: str) -> bool:
        return session.csrf_valid(self._token, presented)


class Console:
    def __init__(self, settings: ConsoleSettings, upstream: Upstream) -> None:
        self._settings = settings
        self._upstream = upstream
        self._cookies = session.CookiePolicy(settings.resolved_secure_cookies, settings.session_max_age_s)
        self._templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(("html", "svg")),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    # -- rendering

    def render(self, request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        html = self._templates.get_template(template).render(request=request, version=CUSTODY_VERSION, **values)
        return HTMLResponse(html, status_code=status_code)

    def refused(self, request: Request, signed: Signed | None, refused: Refused) -> Response:
        if refused.error.code.name == "UNAUTHENTICATED":
            return self._signed_out(request, "The services no longer accept your token (revoked or rotated).")
        return self.render(
            request,
            "refused.html",
            _HTTP_STATUS.get(refused.error.code.name, 502),
            signed=signed,
            service=refused.service,
            method=refused.method,
            refusal=refusal_view(refused.error),
        )

    def _signed_out(self, request: Request, notice: str) -> Response:
        response = RedirectResponse(f"/sign-in?notice={quote(notice)}", status_code=303)
        response.delete_cookie(session.SESSION_COOKIE, path="/")
        return response

    # -- who is asking

    def signed_in(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            call_context.bind_request_id(call_context.new_request_id())
            token = request.cookies.get(session.SESSION_COOKIE, "")
            if not session.plausible_token(token):
                return RedirectResponse(f"/sign-in?next={quote(_local_path(request))}", status_code=303)
            calls = self._upstream.as_person(token)
            try:
                person = await identify(calls)
            except Refused as refused:
                return self.refused(request, None, refused)
            except NotAPerson:
                return self._signed_out(request, "Only people sign in to the console.")
            signed = Signed(person, calls, token)
            started = time.perf_counter()
            if request.method == "POST":
                form = await request.form()
                if not signed.csrf_valid(str(form.get(session.CSRF_FIELD, ""))) or not self._same_origin(request):
                    log.warning(
                        "refused a form without this session's CSRF token or from another origin",
                        extra={"person": person.id, "path": request.url.path},
                    )
                    return self.render(request, "forbidden.html", 403, signed=signed)
            try:
                response = await handler(request, signed)
            except Refused as refused:
                response = self.refused(request, signed, refused)
            # One line per page, joined with the services' lines by request id (never the token or form values).
            log.info(
                f"{request.method} {request.url.path} -> {response.status_code}",
                extra={
                    "person": person.id,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            return response

        return endpoint

    def _same_origin(self, request: Request) -> bool:
        """A form post must come from the console's own pages. Browsers say where a request comes from:
        Sec-Fetch-Site (must be same-origin) and Origin (must be this console: its listener, or public_origin behind
        a proxy; "null", as from a sandboxed frame, is refused). A client that sends neither (curl) still needs the
        CSRF token and the cookie."""
        fetch_site = request.headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site != "same-origin":
            return False
        origin = request.headers.get("origin")
        allowed = {f"{request.url.scheme}://{request.url.netloc}", self._settings.public_origin}
        return origin is None or origin in allowed

    # -- sign-in

    async def sign_in_form(self, request: Request) -> Response:
        value = session.new_sign_in_value()
        response = self.render(
            request,
            "sign_in.html",
            sign_in_csrf=value,
            next=_safe_next(request.query_params.get("next", "")),
            notice=request.query_params.get("notice", "")[:200],
        )
        response.set_cookie(**self._cookies.sign_in(value))  # type: ignore[arg-type]
        return response

    async def sign_in(self, request: Request) -> Response:
        call_context.bind_request_id(call_context.new_request_id())
        form = await request.form()
        presented = str(form.get(session.CSRF_FIELD, ""))
        if not session.sign_in_valid(request.cookies.get(session.SIGN_IN_COOKIE), presented) or not self._same_origin(
            request
        ):
            return self.render(request, "forbidden.html", 403, signed=None)
        token = str(form.get("token", "")).strip()
        next_path = _safe_next(str(form.get("next", "")))

        async def again(problem: str, status_code: int) -> Response:
            value = session.new_sign_in_value()
            response = self.render(
                request, "sign_in.html", status_code, sign_in_csrf=value, next=next_path, problem=problem
            )
            response.set_cookie(**self._cookies.sign_in(value))  # type: ignore[arg-type]
            return response

        if not session.plausible_token(token):
            return await again("That is not a token: paste the token `custody users add` printed.", 400)
        try:
            await identify(self._upstream.as_person(token))
        except NotAPerson:
            return await again("That token belongs to a service; only people sign in to the console.", 403)
        except Refused as refused:
            if refused.error.code.name == "UNAUTHENTICATED":
                return await again("The services do not accept this token (mistyped, rotated or revoked).", 401)
            return await again(f"The services could not check the token: {refused.error.message}", 503)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(**self._cookies.session(token))  # type: ignore[arg-type]
        response.delete_cookie(session.SIGN_IN_COOKIE, path="/")
        return response

    async def sign_out(self, request: Request, signed: Signed) -> Response:
        return self._signed_out(request, "Signed out.")

    # -- pages

    async def queue(self, request: Request, signed: Signed) -> Response:
        page = await review_queue(signed.calls, request.query_params.get("page_token", ""))
        return self.render(request, "queue.html", signed=signed, page=page)

    async def artifact(self, request: Request, signed: Signed) -> Response:
        name = _version_name(request)
        if name is None:
            return self.render(request, "not_found.html", 404, signed=signed)
        page = await artifact_page(signed.calls, name, decided=request.query_params.get("decided", "")[:20])
        return self.render(request, "artifact.html", signed=signed, page=page, request_id=_decision_request_id())

    async def runs(self, request: Request, signed: Signed) -> Response:
        page = await runs_list(signed.calls, request.query_params)
        return self.render(request, "runs.html", 400 if page.form.problems else 200, signed=signed, page=page)

    async def run(self, request: Request, signed: Signed) -> Response:
        name = run_name(str(request.path_params.get("run_id", "")))
        if name is None:
            return self.render(request, "not_found.html", 404, signed=signed, hint=RUN_HINT)
        page = await run_page(signed.calls, name)
        return self.render(request, "run.html", signed=signed, page=page)

    async def calls(self, request: Request, signed: Signed) -> Response:
        page = await calls_list(signed.calls, request.query_params)
        return self.render(request, "calls.html", 400 if page.form.problems else 200, signed=signed, page=page)

    async def call(self, request: Request, signed: Signed) -> Response:
        name = call_name(str(request.path_params.get("call_id", "")))
        if name is None:
            return self.render(request, "not_found.html", 404, signed=signed, hint=CALL_HINT)
        record = await call_page(signed.calls, name)
        return self.render(request, "call.html", signed=signed, record=record)

    async def artifact_svg(self, request: Request, signed: Signed) -> Response:
        name = _version_name(request)
        if name is None:
            return PlainTextResponse("not a version name", status_code=404)
        version = await signed.calls.call("lineage", "GetVersion", lineage_pb2.GetVersionRequest(name=name))
        candidate = await candidate_for(signed.calls, version)
        content = None if candidate is None else await candidate_svg(signed.calls, candidate)
        if content is None:
            return PlainTextResponse("no SVG whose digest matches the candidate's", status_code=404)
        return Response(
            content,
            media_type="image/svg+xml",
            headers={"Content-Security-Policy": ARTIFACT_POLICY, "Content-Disposition": "inline"},
        )

    async def decision(self, request: Request, signed: Signed) -> Response:
        name = _version_name(request)
        if name is None:
            return self.render(request, "not_found.html", 404, signed=signed)
        form = await request.form()
        action = str(form.get("decision", ""))
        rationale = str(form.get("rationale", "")).strip()
        request_id = str(form.get("request_id", ""))
        problem = None
        if action not in DECISIONS:
            problem = "Choose approve, reject or flag."
        elif not rationale:
            problem = "A decision needs a rationale: say why."
        elif len(rationale) > MAX_RATIONALE:
            problem = f"The rationale is longer than {MAX_RATIONALE} characters."
        elif not call_context.is_valid_request_id(request_id):
            problem = "The form is damaged (its request id is missing); reload the page."
        if problem is not None:
            page = await artifact_page(
                signed.calls, name, refusal=RefusalView("INVALID_ARGUMENT", "FORM_INVALID", problem)
            )
            return self.render(
                request, "artifact.html", 400, signed=signed, page=page, request_id=_decision_request_id()
            )
        try:
            await decide(signed.calls, name, action, rationale, request_id)
        except Refused as refused:
            if refused.error.code.name == "UNAUTHENTICATED":
                raise
            page = await artifact_page(signed.calls, name, refusal=refusal_view(refused.error))
            status_code = _HTTP_STATUS.get(refused.error.code.name, 502)
            return self.render(
                request, "artifact.html", status_code, signed=signed, page=page, request_id=_decision_request_id()
            )
        return RedirectResponse(f"/versions/{name}?decided={action}", status_code=303)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def no_icon(request: Request) -> Response:
    return Response(status_code=204)


async def home(request: Request) -> Response:
    return RedirectResponse("/queue", status_code=303)


def create_app(settings: ConsoleSettings, upstream: Upstream | None = None) -> Starlette:
    upstream = upstream or Upstream(settings)
    console = Console(settings, upstream)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await upstream.close()

    routes = [
        Route("/healthz", healthz),
        Route("/", home),
        Route("/favicon.ico", no_icon),
        Route("/sign-in", console.sign_in_form, methods=["GET"]),
        Route("/sign-in", console.sign_in, methods=["POST"]),
        Route("/sign-out", console.signed_in(console.sign_out), methods=["POST"]),
        Route("/queue", console.signed_in(console.queue)),
        Route("/svg/{name:path}", console.signed_in(console.artifact_svg)),
        Route("/decide/{name:path}", console.signed_in(console.decision), methods=["POST"]),
        Route("/versions/{name:path}", console.signed_in(console.artifact)),
        Route("/runs", console.signed_in(console.runs)),
        Route("/runs/{run_id}", console.signed_in(console.run)),
        Route("/calls", console.signed_in(console.calls)),
        Route("/calls/{call_id}", console.signed_in(console.call)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(SecurityHeaders, https=settings.tls_dir is not None)
    return app


def _version_name(request: Request) -> str | None:
    name = str(request.path_params.get("name", ""))
    return name if VERSION_NAME.fullmatch(name) else None


def _decision_request_id() -> str:
    """A fresh idempotency key per rendered form: submitting the same form twice is one decision."""
    return f"console-{secrets.token_hex(12)}"


def _local_path(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return f"{request.url.path}{query}"


def _safe_next(value: str) -> str:
    """Where to go after signing in: a path on this console only (never another site: no open redirect)."""
    parts = urlsplit(value)
    if not value.startswith("/") or value.startswith("//") or parts.scheme or parts.netloc or "\\" in value:
        return "/queue"
    return value
