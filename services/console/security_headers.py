"""Security headers on every console response, and the stricter policy under which an artifact's SVG is served.

Pages load nothing but the console's own stylesheet and images: no script at all (so neither `unsafe-inline` nor
`unsafe-eval` is needed), no framing, no form posting elsewhere. An artifact's SVG is never inlined into a page; it
is served alone from its own URL, shown with <img> (where browsers run no script in SVG), and carries a policy that
forbids everything but inline styles and sandboxes the document in case someone opens the URL directly.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
ARTIFACT_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; sandbox"

COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    # Version names in URLs never leave the console; same-origin requests keep their Origin for the CSRF check.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    # Pages show what a person may see with their token: no shared or browser cache keeps them.
    "Cache-Control": "no-store",
}
HSTS = "max-age=31536000"


class SecurityHeaders:
    """ASGI middleware: the common headers on every response, the page policy unless a route set its own."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self._app = app
        self._https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers[name] = value
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = PAGE_POLICY
                if self._https:
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self._app(scope, receive, send_with_headers)
