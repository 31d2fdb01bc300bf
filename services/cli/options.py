"""Options every command group shares, so `--state-dir` and `--json` mean the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.output import errors_as_json

StateDir = Annotated[Path, typer.Option("--state-dir", envvar="CUSTODY_STATE_DIR", help="Local state directory.")]
JsonFlag = Annotated[
    bool,
    typer.Option(
        "--json", callback=errors_as_json, help="Print JSON for scripts instead of a table (errors: JSON on stderr)."
    ),
]
