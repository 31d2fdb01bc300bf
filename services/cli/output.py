"""How the CLI reports a failed call: status code, ErrorInfo reason, message, field violations, and a hint."""

from __future__ import annotations

from typing import NoReturn

import grpc
import typer
from rich.console import Console

from services.common.status import DecodedError

HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: "run `custody init` (or set CUSTODY_TOKEN) so the CLI has an operator token",
    grpc.StatusCode.PERMISSION_DENIED: "this token's principal is not allowed to call that RPC",
    grpc.StatusCode.UNAVAILABLE: (
        "is the stack running? start it with `make run` and check `custody health`; a TLS stack needs its CA "
        "(recorded by `custody up --tls`, else CUSTODY_CACERT)"
    ),
    grpc.StatusCode.DEADLINE_EXCEEDED: "the service did not answer in time; check `custody health`",
}
# Where the reason says more than the code does.
REASON_HINTS = {
    "TOKEN_INVALID": "the token is unknown here: revoked or rotated (`custody users list`), or another deployment's",
    "CREDENTIALS_UNAVAILABLE": "the service cannot read its credentials file (its log says why): fix or restore it",
    "DATABASE_UNAVAILABLE": "the service cannot reach its database (its log says why); it recovers by itself, retry",
    "STORAGE_FULL": "the service's disk is full: free space (its log names the file system), then retry",
}


def fail_with(console: Console, error: DecodedError) -> NoReturn:
    reason = f" {error.reason}" if error.reason else ""
    console.print(f"[red]error:[/red] {error.code.name}{reason}: {error.message}")
    for violation in error.violations:
        console.print(f"  {violation.field}: {violation.description}")
    hint = REASON_HINTS.get(error.reason) or HINTS.get(error.code)
    if hint:
        console.print(f"[dim]hint: {hint}[/dim]")
    raise typer.Exit(1)
