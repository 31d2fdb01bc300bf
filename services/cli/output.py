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


def fail_with(console: Console, error: DecodedError) -> NoReturn:
    reason = f" {error.reason}" if error.reason else ""
    console.print(f"[red]error:[/red] {error.code.name}{reason}: {error.message}")
    for violation in error.violations:
        console.print(f"  {violation.field}: {violation.description}")
    if error.code in HINTS:
        console.print(f"[dim]hint: {HINTS[error.code]}[/dim]")
    raise typer.Exit(1)
