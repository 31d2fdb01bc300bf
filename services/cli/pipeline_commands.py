"""`custody pipeline run`: the recipe driver (YAML recipes of module stages), saving every output through
the lineage service."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.cli.calls import call, print_json, print_rows
from services.cli.options import JsonFlag, StateDir
from services.cli.output import err
from services.cli.pipeline.discovery import SHIPPED_MODULES, ModuleError, discover
from services.cli.pipeline.driver import Driver, DriverError, RunResult
from services.cli.pipeline.recipe import RecipeError, load_recipe, validate
from services.cli.state import DEFAULT_STATE_DIR

app = typer.Typer(name="pipeline", help="Run YAML recipes of module stages; outputs become lineage versions.")
INVALID_EXIT_CODE = 2


@app.callback()
def _group() -> None:
    """Recipe driver."""


@app.command()
def run(
    recipe_file: Annotated[Path, typer.Argument(help="Recipe YAML.", exists=True, dir_okay=False)],
    run_id: Annotated[str, typer.Option("--run-id", help="Unique id of this run (its output directory).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; run nothing.")] = False,
    start_from: Annotated[
        str | None, typer.Option("--start-from", help="Re-run this stage and its dependents; reuse the rest.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run stages whose outputs exist and are valid.")] = False,
    output_dir: Annotated[Path, typer.Option(help="Runs go to <output-dir>/<run-id>/.")] = Path("output/runs"),
    modules_dir: Annotated[
        list[Path] | None, typer.Option(help="Module root (repeatable; default: the shipped modules).")
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Validate a recipe, then run its stages in dependency order (exit 1 if a stage failed, 2 if invalid)."""
    try:
        modules = discover(modules_dir or [SHIPPED_MODULES])
        validated = validate(load_recipe(recipe_file), modules, str(recipe_file))
    except RecipeError as exc:
        err.print(f"[red]invalid recipe[/red] {recipe_file}:")
        for problem in exc.problems:
            err.print(f"  - {problem}")
        raise typer.Exit(INVALID_EXIT_CODE) from None
    except ModuleError as exc:
        err.print(f"[red]invalid module:[/red] {exc}")
        raise typer.Exit(INVALID_EXIT_CODE) from None

    def say(line: str) -> None:
        if not as_json:
            err.print(f"[dim]{line}[/dim]")

    try:
        result: RunResult = call(
            state_dir,
            "lineage",
            lambda stub: Driver(stub, output_dir, say).run(
                validated, run_id, dry_run=dry_run, start_from=start_from, force=force
            ),
        )
    except DriverError as exc:
        err.print(f"[red]cannot run:[/red] {exc}")
        raise typer.Exit(INVALID_EXIT_CODE) from None
    rows = [
        {
            "stage": s,
            "module": st.module,
            "status": st.status,
            "refs": ", ".join(st.refs),
            "cost_usd": st.cost_usd,
            "error": st.error,
        }
        for s, st in result.stages.items()
    ]
    if as_json:
        print_json(
            {
                "run_id": result.run_id,
                "status": result.status,
                "cost_usd": result.cost_usd,
                "stages": rows,
                "run_dir": str(result.run_dir) if result.run_dir else None,
            }
        )
    else:
        print_rows(rows, ["stage", "module", "status", "refs", "cost_usd", "error"], False, title=f"run {run_id}")
        if result.run_dir:
            typer.echo(
                f"{result.status}; total cost ${result.cost_usd:.6f}; state: {result.run_dir / 'run_state.json'}"
            )
    if result.status == "failed":
        raise typer.Exit(1)
