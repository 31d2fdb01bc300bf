"""`custody studio ...`: generate rosette candidates, compile your own spec, validate any SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from custody.art_studio.v1 import art_studio_pb2
from services.cli.calls import as_dict, call, print_json, print_rows
from services.cli.options import IdempotencyKey, JsonFlag, StateDir
from services.cli.output import console, err, fail
from services.cli.state import DEFAULT_STATE_DIR
from services.common.hashing import sha256_bytes

app = typer.Typer(help="Rosette design: prompt -> spec -> deterministic, validated SVG.", no_args_is_help=True)


@app.command()
def generate(
    prompt: Annotated[str, typer.Option(help="What to design, 3..2000 characters.")],
    count: Annotated[int, typer.Option(help="Variants, 1..10.")] = 3,
    diameter: Annotated[float, typer.Option("--diameter", help="Diameter in mm.")] = 100.0,
    run: Annotated[str, typer.Option(help="A design session art_studio created earlier, to attach to.")] = "",
    new_session: Annotated[
        bool, typer.Option("--new-session", help="Attach to a new design session run (art_studio creates it).")
    ] = False,
    lineage_parent: Annotated[str, typer.Option(help="Design brief version the candidates derive from.")] = "",
    concept_image: Annotated[
        bool,
        typer.Option(
            "--concept-image", help="Also a concept image per candidate, attached next to its SVG (needs a run)."
        ),
    ] = False,
    seed: Annotated[str, typer.Option(help="Base variant seed.")] = "",
    provider: Annotated[str, typer.Option(help="ai_gateway provider (default: the operation's).")] = "",
    out: Annotated[Path | None, typer.Option(help="Write candidate-<i>.svg and .spec.json here.")] = None,
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Generate candidates through ai_gateway; print a table of variants with their hashes."""
    request = art_studio_pb2.GenerateCandidatesRequest(
        prompt=prompt,
        diameter_mm=diameter,
        count=count,
        provider=provider,
        variant_seed=seed,
        run=run,
        lineage_parent=lineage_parent,
        request_id=request_id,
        new_session=new_session,
        concept_image=concept_image,
    )
    answer = call(state_dir, "art_studio", lambda stub: stub.GenerateCandidates(request))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for candidate in answer.candidates:
            if candidate.ok:
                (out / f"candidate-{candidate.index}.svg").write_bytes(candidate.svg)
                (out / f"candidate-{candidate.index}.spec.json").write_text(
                    candidate.spec_json + "\n", encoding="utf-8"
                )
    if as_json:
        print_json(as_dict(answer))
    else:
        rows = [
            {
                "i": c.index,
                "ok": "yes" if c.ok else f"no: {c.failure.reason}",
                "svg_sha256": c.svg_sha256[:16],
                "spec_sha256": c.spec_sha256[:16],
                "attachment": c.svg_attachment,
                **({"concept_image": c.concept_image_attachment} if concept_image else {}),
                "lineage": c.lineage_version,
                "detail": c.failure.message if not c.ok else "",
            }
            for c in answer.candidates
        ]
        session = f" in {answer.run}" if answer.run else ""
        title = f"{answer.succeeded} ok, {answer.failed} failed{session}"
        print_rows(rows, list(rows[0]) if rows else [], False, title=title)
    if answer.failed:
        raise typer.Exit(1)


@app.command()
def compile(
    spec: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Spec JSON file.")],
    out: Annotated[Path | None, typer.Option(help="Where to write the SVG (default: SPEC with .svg).")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Compile a spec you wrote into deterministic SVG; writes exactly the bytes whose sha256 it prints (checked:
    exit 1 and no file if the answer's bytes and digest disagree)."""
    request = art_studio_pb2.CompileSpecRequest(spec_json=spec.read_text(encoding="utf-8"))
    answer = call(state_dir, "art_studio", lambda stub: stub.CompileSpec(request))
    target = out or spec.with_suffix(".svg")
    written = sha256_bytes(answer.svg)
    if written != answer.svg_sha256:
        fail(err, f"art_studio answered SVG bytes with sha256 {written}, not the {answer.svg_sha256} it named")
    target.write_bytes(answer.svg)
    if as_json:
        print_json({"svg": str(target), "svg_sha256": answer.svg_sha256, "spec_sha256": answer.spec_sha256})
    else:
        console.print(f"{target}  svg_sha256 {answer.svg_sha256}  spec_sha256 {answer.spec_sha256}")


@app.command()
def validate(
    svg: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="SVG file.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Check an SVG against the allowlist; exit 1 and list every violation if it fails."""
    request = art_studio_pb2.ValidateSvgRequest(svg=svg.read_bytes())
    answer = call(state_dir, "art_studio", lambda stub: stub.ValidateSvg(request))
    if as_json:
        print_json(as_dict(answer))
    elif answer.valid:
        console.print(f"{svg}: valid (sha256 {answer.svg_sha256})")
    else:
        rows = [{"rule": v.rule, "where": v.location, "detail": v.detail} for v in answer.violations]
        print_rows(rows, ["rule", "where", "detail"], False, title=f"{svg}: {len(rows)} violation(s)")
    if not answer.valid:
        raise typer.Exit(1)
