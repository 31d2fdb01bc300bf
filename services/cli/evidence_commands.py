"""`custody evidence ...`: export evidence bundles from the running authorities and check them offline
(services/cli/evidence_export.py gathers, services/common/evidence builds, writes and verifies), and check an
asset's content credentials offline (services/common/content_credentials)."""

from __future__ import annotations

import json
import secrets
import shutil
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.calls import call_services
from services.cli.evidence_export import DEFAULT_WAIT_S, Export, Exporter, ExportError
from services.cli.ledger_commands import AUTHORITIES
from services.cli.options import JsonFlag, StateDir
from services.cli.output import console, err
from services.cli.state import DEFAULT_STATE_DIR, StateLayout
from services.common.clients import ServiceClients
from services.common.content_credentials.layout import anchors_file
from services.common.evidence import bundle
from services.common.evidence.keys import (
    EvidenceKeyError,
    EvidencePublicKey,
    EvidenceSigner,
    load_public_key,
    load_signer,
)
from services.common.ledger.note import NoteError

if TYPE_CHECKING:
    from services.common.content_credentials import CredentialReport

app = typer.Typer(help="Evidence bundles: signed statements with ledger proofs, checked offline.", no_args_is_help=True)


@app.command()
def export(
    record: Annotated[
        str,
        typer.Argument(help="A run (runs/<id>) or an approved lineage version (projects/.../versions/<n>)."),
    ],
    directory: Annotated[Path, typer.Argument(help="Where to write the bundle: a new or empty directory.")],
    key: Annotated[
        Path | None, typer.Option("--key", help="The evidence signing key (PEM). Default: keys/evidence.key.")
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, help="Seconds to wait, in total, for records newer than their ledger's last checkpoint."
        ),
    ] = DEFAULT_WAIT_S,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Write a signed in-toto statement about RECORD, with the inclusion proof of every record it relies on.

    A run: SLSA provenance (subjects: it and its attachments; dependencies: its lineage versions and AI calls).
    An approved version: a verification summary (reviewer, the type registration checked, upstream versions)."""
    layout = StateLayout(state_dir)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise typer.BadParameter(f"{directory} is not an empty directory", param_hint="DIRECTORY")
    signer = _signer(key or layout.evidence_key, explicit=key is not None)

    async def gather(clients: ServiceClients) -> Export | str:
        try:
            return await Exporter(clients.stub, wait_s=wait).export(record)
        except ExportError as exc:
            return str(exc)

    gathered = call_services(state_dir, gather)
    if isinstance(gathered, str):
        err.print(f"[red]error:[/red] {gathered}", soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    _write_checked(directory, gathered, signer)
    _report(directory, gathered, as_json)


def _write_checked(directory: Path, gathered: Export, signer: EvidenceSigner) -> None:
    """Writes the bundle beside `directory`, verifies it with the keys the services named (what they served must
    make a sound bundle: a record rewritten in a database no longer matches its leaf), and only then moves it
    into place; a bundle that does not verify is removed, and each failure printed."""
    partial = directory.parent / f".{directory.name}.partial-{secrets.token_hex(4)}"
    try:
        bundle.write_bundle(
            partial,
            gathered.claims,
            gathered.ledger_records,
            signer,
            subject_files=gathered.subject_files,
            verifier_keys=gathered.verifier_keys,
        )
        from services.common.evidence.verify import verify_bundle  # lazily: most CLI commands never verify

        failures = verify_bundle(partial, [signer.public_key], list(gathered.verifier_keys.values()))
        if not failures:
            if directory.exists():
                directory.rmdir()  # empty: checked before anything was gathered
            partial.rename(directory)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    if failures:
        for failure in failures:
            err.print(f"[red]FAILED[/red] {failure}", soft_wrap=True, markup=True, highlight=False)
        err.print(
            f"[red]error:[/red] what the services served for {gathered.record} does not make a bundle that "
            f"verifies ({len(failures)} failure(s)); nothing was written to {directory}. Run `custody ledger audit` "
            "to see whether a database was changed",
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _signer(path: Path, *, explicit: bool) -> EvidenceSigner:
    try:
        return load_signer(path)
    except FileNotFoundError:
        hint = "" if explicit else " (pass --key PEM, or run `custody init`)"
        raise typer.BadParameter(f"no evidence signing key at {path}{hint}", param_hint="--key") from None
    except EvidenceKeyError as exc:
        raise typer.BadParameter(f"{path}: {exc}", param_hint="--key") from None


def _report(directory: Path, gathered: Export, as_json: bool) -> None:
    claims = gathered.claims
    subjects = bundle.read_subject_files(directory)
    if as_json:
        document = {
            "bundle": str(directory),
            "record": gathered.record,
            "predicate_type": claims["predicateType"],
            "subjects": [s["name"] for s in claims["subject"]],
            "ledger_records": [
                {
                    "service": r.service,
                    "kind": r.kind,
                    "record_name": r.record_name,
                    "leaf_index": r.leaf_index,
                    "tree_size": r.tree_size,
                }
                for r in gathered.ledger_records
            ],
            "subject_files": sorted(subjects),
            "notes": list(gathered.notes),
        }
        console.print_json(json.dumps(document))
        return
    by_service = Counter(r.service for r in gathered.ledger_records)
    lines = [
        f"exported {gathered.record} to {directory}:",
        f"  {bundle.STATEMENT_FILE}  in-toto Statement v1 ({claims['predicateType']}), {len(claims['subject'])} "
        "subject(s), DSSE-signed with the evidence key",
        f"  {bundle.LEDGER_FILE}  {len(gathered.ledger_records)} record(s) with inclusion proofs and signed "
        "checkpoints: " + ", ".join(f"{service} {count}" for service, count in sorted(by_service.items())),
        f"  {bundle.PUBLIC_KEY_FILE}  the evidence public key (a verifier trusts its own copy, never this one)",
    ]
    if subjects:
        lines.append(f"  {bundle.SUBJECTS_DIR}/  {len(subjects)} subject file(s), named by sha256")
    lines += [f"note: {note}" for note in gathered.notes]
    lines.append(f"check it offline: custody evidence verify {directory}")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)


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
    from services.common.evidence.verify import verify_bundle  # lazily: most CLI commands never verify

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


@app.command("c2pa")
def check_content_credentials(
    file: Annotated[Path, typer.Argument(help="A PNG or SVG asset Custody produced (custody runs download --signed).")],
    anchors: Annotated[
        Path | None,
        typer.Option("--anchors", help="Trust anchors (PEM). Default: the deployment's c2pa/anchors.pem."),
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Check an asset's content credentials (C2PA) offline and print the chain of custody they name.

    Exits 0 when the manifest is intact, signed under the trust anchors and a well-formed Custody credential; 1
    naming every problem otherwise; 2 when the file cannot be read as a PNG or SVG."""
    from services.common.content_credentials import CredentialsError, media_type_of, read_credentials  # lazily

    anchors_path = anchors or anchors_file(state_dir)
    if not anchors_path.is_file():
        hint = "" if anchors else " (pass --anchors PEM, or run `custody init`)"
        raise typer.BadParameter(f"no trust anchors at {anchors_path}{hint}", param_hint="--anchors")
    try:
        data = file.read_bytes()
        report = read_credentials(data, media_type_of(data), anchors_path.read_bytes())
    except OSError as exc:
        err.print(f"error: cannot read {file}: {exc.strerror}", markup=False)
        raise typer.Exit(2) from None
    except CredentialsError as exc:
        err.print(f"error: {file}: {exc}", markup=False)
        raise typer.Exit(2) from None
    if as_json:
        console.print_json(json.dumps({"file": str(file), "anchors": str(anchors_path), **report.to_dict()}))
    else:
        _print_credentials(file, report)
    if not report.trusted:
        raise typer.Exit(1)


def _print_credentials(file: Path, report: CredentialReport) -> None:
    verdict = "trusted" if report.trusted else f"NOT TRUSTED ({report.state})"
    lines = [f"{verdict}: {file} ({report.media_type})"]
    for problem in report.problems:
        lines.append(f"  problem        {problem}")
    if report.signer:
        lines.append(f"  signed by      {report.signer} (issuer {report.signer_issuer})")
    if report.source_type:
        lines.append(f"  source type    {report.source_type.rsplit('/', 1)[-1]}")
    if report.generator is not None:
        generator = report.generator
        lines.append(f"  generator      {generator.provider}/{generator.model} via Custody {generator.custody_version}")
    claim = report.assertion
    if claim is not None:
        leaf = "" if claim.ai_ledger_leaf_index is None else f", gateway ledger leaf {claim.ai_ledger_leaf_index}"
        lines += [
            f"  run            {claim.run}",
            f"  attachment     {claim.attachment} ({claim.kind})",
            f"  unsigned bytes sha256 {claim.unsigned_sha256} ({claim.unsigned_size_bytes} bytes)",
            f"  AI call        {claim.ai_call or '(none named)'}, request id {claim.ai_request_id or '-'}{leaf}",
            f"  signed by      {claim.signed_by} (Custody principal)",
        ]
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


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
