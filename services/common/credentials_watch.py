"""The credentials file as a running service sees it: re-checked at most once a second, reloaded when it changed.

People are added, rotated and revoked while the services run (`custody users`), and a revoked token must stop
working without a restart. Authentication stays cheap: a call costs at most one os.stat per CHECK_INTERVAL_S, and
the file is read again only when its signature changed (services/common/file_signature.py: a Kubernetes Secret
update or an in-place rewrite shows too). A token the service does not know is checked against the file at once
(one more os.stat), not after the interval: replicas share the file, and a person added while they run is accepted
by every replica as soon as by any (a revocation still takes up to the interval).

Fail closed: when the file became missing, unreadable or malformed, the service refuses every call with UNAVAILABLE
(reason CREDENTIALS_UNAVAILABLE) and logs an ERROR at each check (at most once per CHECK_INTERVAL_S while calls
arrive) until a good file is back. Keeping the last good set instead would silently ignore a revocation whose file
arrived broken. At start-up a bad file is a configuration error (the service does not start), as before.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from services.common.errors import Unauthenticated, Unavailable
from services.common.file_signature import FileSignature, stat_signature
from services.common.identity import CredentialsError, Principal, read_credentials

log = logging.getLogger("custody.credentials")

CHECK_INTERVAL_S = 1.0
UNAVAILABLE_MESSAGE = (
    "this service cannot read its credentials file (missing or malformed) and refuses every call until an operator "
    "restores it; the service's log says what is wrong"
)


class CredentialsFile:
    """Authenticates against the credentials file at `path`, following its changes (see the module docstring)."""

    def __init__(
        self, path: Path, *, check_interval_s: float = CHECK_INTERVAL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        status, self._credentials = read_credentials(path)  # CredentialsError: the service does not start
        self._path = path
        self._signature: FileSignature | None = stat_signature(status)
        self._problem: str | None = None
        self._interval = check_interval_s
        self._clock = clock
        self._next_check = clock() + check_interval_s

    def authenticate(self, authorization: str | None) -> Principal:
        now = self._clock()
        checked = now >= self._next_check
        if checked:
            self._next_check = now + self._interval
            self._check()
        if self._problem is not None:
            raise Unavailable("CREDENTIALS_UNAVAILABLE", UNAVAILABLE_MESSAGE)
        try:
            return self._credentials.authenticate(authorization)
        except Unauthenticated as refused:
            if checked or refused.reason != "TOKEN_INVALID":
                raise
        # A token this process does not know may be one just added: a replica that another replica's acceptance
        # made the caller trust must not refuse it for the rest of the interval. One os.stat, as a due check.
        self._next_check = now + self._interval
        self._check()
        if self._problem is not None:
            raise Unavailable("CREDENTIALS_UNAVAILABLE", UNAVAILABLE_MESSAGE)
        return self._credentials.authenticate(authorization)

    def _check(self) -> None:
        try:
            if self._problem is None and stat_signature(os.stat(self._path)) == self._signature:
                return
            status, credentials = read_credentials(self._path)
        except FileNotFoundError:
            self._fail(f"credentials file {self._path} does not exist")
            return
        except OSError as exc:
            self._fail(f"credentials file {self._path} is unreadable: {exc}")
            return
        except CredentialsError as exc:
            self._fail(str(exc))
            return
        if self._problem is not None:
            log.warning("credentials file %s is usable again: authenticating callers", self._path)
        else:
            log.info(
                "credentials file %s changed: reloaded, %d active principals",
                self._path,
                sum(e.active for e in credentials.entries),
            )
        self._credentials, self._signature, self._problem = credentials, stat_signature(status), None

    def _fail(self, problem: str) -> None:
        self._problem, self._signature = problem, None
        log.error("%s; refusing every call (UNAVAILABLE CREDENTIALS_UNAVAILABLE) until it is fixed", problem)
