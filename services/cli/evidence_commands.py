"""`custody evidence ...`: check evidence bundles offline (services/common/evidence does the work)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from services.cli.calls import console, err
from services.cli.ledger_commands import AUTHORITIES
from services.cli.options import JsonFlag, StateDir
from services.cli.state import DEFAULT_STATE_DIR, StateLayout
from services.common.evidence import bundle
from services.common.evidence.keys import EvidenceKeyError, EvidencePublicKey, load_public_key
from services.common.evidence.verify import verify_bundle
from services.common.ledger.note import NoteError

app = typer.Typer(help="Evidence bundles: signed statements with ledger proofs, checked offline.", no_args_is_help=True)


@app.command()
def verify(
    directory: Annotated[Path, typer.Argument(help="The bundle directory.", file_okay=False)],
    key: Annotated[
        list[Path] | None,
        typer.Option("--key", help="A trusted evidence public key (PEM); repeatable. Default: keys/evidence.pub."),
    ] = None,
    ledger_key: Annotated[
        list[str] | None,
        typer.Option(
            "--ledger-key",
            help="A trusted ledger note verifier key, or a file holding one; repeatable. "
            "Default: keys/<service>.ledger.vkey of each service with a ledger.",
        ),
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Check a bundle from public keys alone: signature, statement, every record's proof and checkpoint, subjects.

    Exits 1 naming each failure, 0 when all holds. Trusts `custody init`'s keys by default, never the bundle's."""
    layout = StateLayout(state_dir)
    evidence_keys = _evidence_keys(key or [layout.evidence_public_key], explicit=bool(key))
    vkeys = _vkeys(ledger_key) if ledger_key else _default_vkeys(layout)
    if not directory.is_dir():
        raise typer.BadParameter(f"{directory} is not a directory", param_hint="DIRECTORY")
    try:
        failures = verify_bundle(directory, evidence_keys, vkeys)
    except NoteError as exc:
        raise typer.BadParameter(f"a ledger key is not a note verifier key: {exc}", param_hint="--ledger-key") from None
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "bundle": str(directory),
                    "verified": not failures,
                    "failures": [{"where": f.where, "check": f.check, "detail": f.detail} for f in failures],
                }
            )
        )
    else:
        for failure in failures:
            console.print(f"[red]FAILED[/red] {failure}", soft_wrap=True, markup=True, highlight=False)
    if failures:
        if not as_json:
            err.print(f"[red]{directory} does not verify:[/red] {len(failures)} failure(s)", soft_wrap=True)
        raise typer.Exit(1)
    if not as_json:
        ledger = bundle.read_ledger(directory)
        subjects = bundle.read_subject_files(directory)
        console.print(
            f"[green]verified[/green] {directory}: signature, statement, {len(ledger.records)} ledger record(s) "
            f"in signed checkpoints, {len(subjects)} subject file(s)",
            highlight=False,
            soft_wrap=True,
        )


def _evidence_keys(paths: list[Path], *, explicit: bool) -> list[EvidencePublicKey]:
    keys = []
    for path in paths:
        try:
            keys.append(load_public_key(path))
        except FileNotFoundError:
            hint = "" if explicit else " (pass --key PEM, or run `custody init`)"
            raise typer.BadParameter(f"no evidence public key at {path}{hint}", param_hint="--key") from None
        except EvidenceKeyError as exc:
            raise typer.BadParameter(f"{path}: {exc}", param_hint="--key") from None
    return keys


def _vkeys(values: list[str]) -> list[str]:
    """Each --ledger-key value: the key itself, or the path of a file that holds it."""
    return [Path(v).read_text(encoding="utf-8").strip() if Path(v).is_file() else v.strip() for v in values]


def _default_vkeys(layout: StateLayout) -> list[str]:
    paths = [layout.ledger_verifier_key(service) for service in AUTHORITIES]
    found = [path.read_text(encoding="utf-8").strip() for path in paths if path.is_file()]
    if not found:
        raise typer.BadParameter(
            f"no ledger keys in {layout.root / 'keys'} (pass --ledger-key VKEY, or run `custody init`)",
            param_hint="--ledger-key",
        )
    return found
