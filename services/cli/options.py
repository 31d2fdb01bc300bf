"""Options every command group shares, so `--state-dir` and `--json` mean the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StateDir = Annotated[Path, typer.Option("--state-dir", envvar="CUSTODY_STATE_DIR", help="Local state directory.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")]
