"""Options every command group shares, so `--state-dir` and `--json` mean the same everywhere."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.output import errors_as_json

StateDir = Annotated[Path, typer.Option("--state-dir", envvar="CUSTODY_STATE_DIR", help="Local state directory.")]
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", callback=errors_as_json, help="Print JSON for scripts instead of a table (errors: JSON on stderr)."
    ),
]

# The proto field is called request_id; what it carries is an idempotency key. The correlation id (x-request-id)
# is another thing: the CLI generates one per command, and logs and audit rows carry it.
IdempotencyKey = Annotated[
    str,
    typer.Option(
        "--request-id",
        help="Idempotency key (the request's request_id field): resending the same request with it returns the "
        "original result, never a second one; a different request under it is refused. Not the x-request-id "
        "correlation id, which the CLI generates for each command.",
    ),
]


def json_object_argument(value: str) -> dict[str, Any]:
    """A JSON object given inline or as @path (what every --data / --meta style option takes)."""
    text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise typer.BadParameter("must be a JSON object")
    return document
