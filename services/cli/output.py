"""How the CLI reports a failed call: status code, ErrorInfo reason, message, field violations, and a hint.

Output goes through the two consoles here. Piped or redirected, they do not wrap at 80 columns (rich's width
without a terminal): a line is as long as it is, so scripts and `grep` see whole names. Tables fold long cells
rather than cut them (`table()`), so a resource name is always there to copy.

Server messages are printed literally (they may hold square brackets, which rich would read as markup). With
`--json` (which sets `errors_as_json` through its option callback), the error is one JSON object on stderr instead,
for scripts: {"error": {"code", "reason", "message", "violations", "metadata", "hint"}}.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any, NoReturn

import grpc
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from services.cli.state import TOKEN_ENV
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
    "CANDIDATE_INCOMPLETE": (
        "attach what is missing (`custody runs attach RUN FILE --kind KIND`), or record a BLOCKED run with "
        "`custody runs bind RUN --lenient`"
    ),
    "RUN_INVALID": (
        "fields are named as in RunInput; with `custody runs create` run.mode is --mode, run.tool_id --tool, "
        "run.status --status, run.decision.* --risk/--score/--block-reason/--warning, run.feasibility --feasibility"
    ),
    "SELF_APPROVAL": (
        "four eyes: another person with the reviewer role must approve it (`custody users add NAME --role reviewer` "
        "prints a token for a new one)"
    ),
    "EXPLANATION_CHANGED": (
        "re-read the run (`custody runs show RUN`) and decide on what its explanation says now, with that version"
    ),
    "UPSTREAM_NOT_LATEST": (
        "an upstream it names has a newer version: create a new version from the latest upstream (`custody lineage "
        "create PARENT --upstream LATEST ...`; `custody lineage versions` lists them) and approve that one"
    ),
}
# When CUSTODY_TOKEN is set, a refused token is that variable's doing, not the state directory's.
TOKEN_ENV_HINT = (
    "CUSTODY_TOKEN is set and this deployment does not accept that token: unset CUSTODY_TOKEN to use the operator "
    "token `custody init` saved, or set it to a valid token (`custody users add NAME --role ROLE` prints one)"
)

# Without a terminal: wide enough that nothing wraps (tables take only the width they need).
UNWRAPPED_WIDTH = 100_000


def _console(stream: IO[str], *, stderr: bool = False) -> Console:
    return Console(stderr=stderr, width=None if stream.isatty() else UNWRAPPED_WIDTH)


console = _console(sys.stdout)
err = _console(sys.stderr, stderr=True)


def table(*columns: str, **options: Any) -> Table:
    """A table whose cells fold onto more lines instead of ending in an ellipsis."""
    made = Table(**options)
    for column in columns:
        made.add_column(column, overflow="fold")
    return made


_errors_as_json = False


def errors_as_json(value: bool) -> bool:
    """The `--json` option's callback: errors of this command are JSON on stderr too."""
    global _errors_as_json
    _errors_as_json = bool(value)
    return value


def hint_for(error: DecodedError) -> str | None:
    hint = REASON_HINTS.get(error.reason) or HINTS.get(error.code)
    if error.code is grpc.StatusCode.UNAUTHENTICATED and os.environ.get(TOKEN_ENV):
        return f"{TOKEN_ENV_HINT}; {hint}" if error.reason in REASON_HINTS else TOKEN_ENV_HINT
    return hint


def error_document(error: DecodedError) -> dict[str, Any]:
    return {
        "error": {
            "code": error.code.name,
            "reason": error.reason,
            "message": error.message,
            "violations": [{"field": v.field, "description": v.description} for v in error.violations],
            "metadata": dict(error.metadata),
            "hint": hint_for(error),
        }
    }


def fail_with(console: Console, error: DecodedError) -> NoReturn:
    headline = f"{error.code.name} {error.reason}" if error.reason else error.code.name
    _report(console, error_document(error)["error"], headline=headline)


def fail(
    console: Console, message: str, *, code: str = "FAILED", reason: str = "", hint: str | None = None
) -> NoReturn:
    """A failure the CLI finds itself (not a server's status): printed as a server's is (code and reason when it
    names one), or JSON with --json; exit 1."""
    document = {"code": code, "reason": reason, "message": message, "hint": hint}
    _report(console, document, headline=f"{code} {reason}" if reason else "")


def _report(console: Console, error: dict[str, Any], *, headline: str) -> NoReturn:
    """One error, as {"error": ...} JSON on the console with --json, else as lines for a person: the headline
    (code and reason), the message, each field violation, the hint. Everything from a server is printed literally."""
    if _errors_as_json:
        console.file.write(json.dumps({"error": error}) + "\n")
        raise typer.Exit(1)
    console.print(f"[red]error:[/red] {escape(f'{headline}: ' if headline else '')}{escape(error['message'])}")
    for violation in error.get("violations", ()):
        console.print(f"  {escape(violation['field'])}: {escape(violation['description'])}")
    if error["hint"]:
        console.print(f"[dim]hint: {escape(error['hint'])}[/dim]")
    raise typer.Exit(1)
