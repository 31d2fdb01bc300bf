"""The signed-in person's session: their own bearer token in a cookie, and the CSRF tokens that guard every form.

The console keeps no session state: the cookie holds the person's token (HttpOnly, so no script can read it;
SameSite=Strict, so no other site's page can make the browser send it; Secure under TLS). Every call the console
makes carries that token, so the services authenticate, authorize and audit the person, never the console.

CSRF: a form's token is HMAC-SHA256 keyed by the session's bearer token, so it needs no server-side secret or
storage, differs per person and per sign-in, and cannot be computed without the cookie (which a forging page cannot
read). The sign-in form, before there is a session, uses a double-submit token: a random value in a SameSite=Strict
cookie that the form must repeat. Both are checked with a constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

SESSION_COOKIE = "custody_session"
SIGN_IN_COOKIE = "custody_sign_in"
CSRF_FIELD = "csrf"
_CSRF_CONTEXT = b"custody-console/csrf/v1"
# The longest bearer token accepted from the sign-in form; Custody's own are 43 characters.
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class CookiePolicy:
    secure: bool
    max_age_s: int

    def session(self, token: str) -> dict[str, object]:
        """Arguments for Response.set_cookie carrying the person's token."""
        return self._cookie(SESSION_COOKIE, token, self.max_age_s)

    def sign_in(self, value: str) -> dict[str, object]:
        return self._cookie(SIGN_IN_COOKIE, value, 600)

    def _cookie(self, key: str, value: str, max_age_s: int) -> dict[str, object]:
        return {
            "key": key,
            "value": value,
            "max_age": max_age_s,
            "path": "/",
            "httponly": True,
            "samesite": "strict",
            "secure": self.secure,
        }


def csrf_token(session_token: str) -> str:
    """The CSRF token every form of this session carries."""
    return hmac.new(session_token.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_valid(session_token: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(session_token).encode("ascii"), presented.encode("utf-8", "replace"))


def new_sign_in_value() -> str:
    return secrets.token_urlsafe(32)


def sign_in_valid(cookie_value: str | None, presented: str) -> bool:
    if not cookie_value:
        return False
    return hmac.compare_digest(cookie_value.encode("utf-8", "replace"), presented.encode("utf-8", "replace"))


def plausible_token(token: str) -> bool:
    """Refuses what cannot be a bearer token before any call carries it (a header value must be printable ASCII)."""
    return 0 < len(token) <= MAX_TOKEN_LENGTH and all(33 <= ord(c) <= 126 for c in token)
