"""`custody ledger audit`: checks an authority's database against its ledger and signed checkpoints, offline.

It reads the database and the checkpoint log directly (never asking the service), with the settings the service
itself would load, and trusts only the verifier key: the one `custody init` wrote, or the auditor's own copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from services.cli import registry
from services.cli.calls import print_json
from services.cli.options import JsonFlag, StateDir
from services.cli.output import console
from services.cli.state import DEFAULT_STATE_DIR, StateLayout
from services.common.catalog import SERVICES
from services.common.config import CONFIG_EXIT_CODE, ConfigError, StatefulServiceSettings, env_prefix

AUTHORITIES = tuple(name for name, spec in SERVICES.items() if spec.stateful)
SHOWN_FINDINGS = 20

app = typer.Typer(help="Tamper evidence: each authority's signed Merkle ledger of the records it created.")


@app.command()
def audit(
    service: Annotated[str | None, typer.Argument(help=f"One of {', '.join(AUTHORITIES)} (default: all).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="The service's YAML settings (default: its file in the state dir).")
    ] = None,
    verifier_key: Annotated[
        Path | None, typer.Option(help="Verifier key file to trust (default: the one custody init wrote).")
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Recompute each tree from the database, check every checkpoint's signature and consistency, re-derive every
    leaf from its record and re-hash blobs; exit 1 naming the first bad entry."""
    if service is not None and service not in AUTHORITIES:
        raise typer.BadParameter(f"{service!r} keeps no ledger; choose one of {', '.join(AUTHORITIES)}")
    if (config or verifier_key) and service is None:
        raise typer.BadParameter("--config and --verifier-key apply to one service: name it")
    layout = StateLayout(state_dir)
    failed = False
    results = []
    for name in [service] if service else list(AUTHORITIES):
        settings = _settings(name, layout, config)
        key = verifier_key.read_text(encoding="utf-8").strip() if verifier_key else None
        report = registry.ledger_audit(name)(settings, key)
        failed = failed or not report.ok
        results.append(
            {
                "service": name,
                "origin": report.origin,
                "leaves": report.leaves,
                "checkpoints": report.checkpoints,
                "records": report.records,
                "ok": report.ok,
                "findings": [str(finding) for finding in report.findings],
            }
        )
        if as_json:
            continue
        verdict = "[green]OK[/green]" if report.ok else f"[red]{len(report.findings)} finding(s)[/red]"
        console.print(
            f"{name} ({report.origin}): {report.leaves} leaves, {report.records} records, "
            f"{report.checkpoints} checkpoints: {verdict}",
            highlight=False,
            soft_wrap=True,
        )
        if report.findings:
            console.print(f"  first bad entry: {report.findings[0]}", markup=False, highlight=False, soft_wrap=True)
            for finding in report.findings[1:SHOWN_FINDINGS]:
                console.print(f"  {finding}", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        print_json(results)
    raise typer.Exit(1 if failed else 0)


def _settings(service: str, layout: StateLayout, config: Path | None) -> StatefulServiceSettings:
    file = config or layout.service_config(service)
    environ = dict(os.environ)
    environ.setdefault(env_prefix(service) + "STATE_DIR", str(layout.root))
    try:
        settings = registry.settings_class(service).load(file if file.exists() else None, environ)
    except ConfigError as exc:
        console.print(f"configuration error: {exc}", markup=False)
        raise typer.Exit(CONFIG_EXIT_CODE) from None
    assert isinstance(settings, StatefulServiceSettings)
    return settings
