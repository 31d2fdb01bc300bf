"""`custody gateway ...`: generate text and images through the AI gateway, read its audit of calls, show its
policy."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.table import Table

from custody.ai_gateway.v1 import gateway_pb2
from services.cli.calls import as_dict, call, call_services, print_json, print_record, print_rows
from services.cli.options import IdempotencyKey, JsonFlag, StateDir
from services.cli.output import console
from services.cli.state import DEFAULT_STATE_DIR
from services.common.gateway_images import ImageStreamError

app = typer.Typer(help="The AI gateway: governed generation, the audit of every call, the safety policy.")
calls_app = typer.Typer(help="Audited AI calls.")
app.add_typer(calls_app, name="calls")

OUTCOMES = {"succeeded": 1, "blocked": 2, "failed": 3}
SPEND_GROUPS = ("caller", "person", "operation", "model")
NO_PERSON = "(none)"  # a service that called for itself


@app.command()
def generate(
    operation: Annotated[
        str, typer.Argument(help="Operation, e.g. prompt_to_svg_spec, explain_run_decision, general_text.")
    ],
    prompt: Annotated[str, typer.Argument(help="The prompt; '-' reads it from standard input.")],
    category: Annotated[str, typer.Option(help="Safety category (default: the operation's).")] = "",
    provider: Annotated[str, typer.Option(help="local or openai (default: the operation's).")] = "",
    model: Annotated[str, typer.Option(help="Model (default: the provider's).")] = "",
    system: Annotated[str, typer.Option("--system", help="System prompt.")] = "",
    temperature: Annotated[float | None, typer.Option(help="0.0 to 2.0.")] = None,
    max_tokens: Annotated[int, typer.Option(help="0: the operation's default.")] = 0,
    seed: Annotated[str, typer.Option("--seed", help="Variant seed.")] = "",
    schema: Annotated[Path | None, typer.Option(help="JSON Schema file the answer must satisfy.")] = None,
    request_id: IdempotencyKey = "",
    stream: Annotated[bool, typer.Option("--stream", help="Print the answer as it arrives.")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Generate text; prints the answer, then its provenance envelope (or everything as JSON)."""
    fields: dict[str, Any] = {
        "operation": operation,
        "category": category,
        "provider": provider,
        "model": model,
        "prompt": sys.stdin.read() if prompt == "-" else prompt,
        "system_prompt": system,
        "max_tokens": max_tokens,
        "variant_seed": seed,
        "response_json_schema": schema.read_text(encoding="utf-8") if schema else "",
        "request_id": request_id,
    }
    if temperature is not None:
        fields["temperature"] = temperature
    if not stream:
        response = call(
            state_dir, "ai_gateway", lambda stub: stub.GenerateText(gateway_pb2.GenerateTextRequest(**fields))
        )
        if as_json:
            print_json(as_dict(response))
            return
        sys.stdout.write(response.content + "\n")
        _print_envelope(response.envelope, response.cost)
        return

    async def consume(stub: Any) -> gateway_pb2.StreamEnd:
        end = gateway_pb2.StreamEnd()
        async for event in stub.StreamText(gateway_pb2.StreamTextRequest(**fields)):
            if event.HasField("chunk") and not as_json:
                sys.stdout.write(event.chunk.text)
                sys.stdout.flush()
            elif event.HasField("end"):
                end = event.end
        return end

    end = call(state_dir, "ai_gateway", consume)
    if as_json:
        print_json(as_dict(end))
        return
    sys.stdout.write("\n")
    _print_envelope(end.envelope, end.cost)


@app.command()
def image(
    prompt: Annotated[str, typer.Option("--prompt", help="The prompt; '-' reads it from standard input.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Directory the PNGs are written to (created).")],
    operation: Annotated[str, typer.Option(help="Image operation.")] = "concept_image",
    size: Annotated[str, typer.Option(help="256x256, 512x512 or 1024x1024 (default: the operation's).")] = "",
    count: Annotated[int, typer.Option(help="1 to 4 images (0: 1).")] = 0,
    seed: Annotated[str, typer.Option("--seed", help="Variant seed.")] = "",
    category: Annotated[str, typer.Option(help="Safety category (default: the operation's).")] = "",
    provider: Annotated[str, typer.Option(help="local or openai (default: the operation's).")] = "",
    model: Annotated[str, typer.Option(help="Image model (default: the provider's).")] = "",
    request_id: IdempotencyKey = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Generate images; writes each PNG (verified against its sha256) to OUT and prints the call and digests."""
    request = gateway_pb2.GenerateImageRequest(
        operation=operation,
        category=category,
        provider=provider,
        model=model,
        prompt=sys.stdin.read() if prompt == "-" else prompt,
        size=size,
        count=count,
        seed=seed,
        request_id=request_id,
    )
    try:
        received = call_services(state_dir, lambda clients: clients.generate_image(request))
    except ImageStreamError as exc:
        console.print(f"[red]error:[/red] the gateway's image stream did not verify: {exc}")
        raise typer.Exit(1) from None
    out.mkdir(parents=True, exist_ok=True)
    call_id = received.envelope.call.removeprefix("calls/")
    written = []
    for descriptor, data in received.images:
        path = out / f"{call_id}-{descriptor.index}.png"
        path.write_bytes(data)
        written.append({"path": str(path), "sha256": descriptor.sha256, "size_bytes": descriptor.size_bytes})
    if as_json:
        print_json({"call": received.envelope.call, "images": written, "envelope": as_dict(received.envelope)})
        return
    typer.echo(received.envelope.call)
    for item in written:
        typer.echo(f"{item['sha256']}  {item['path']}")
    if received.revised_prompt:
        typer.echo(f"revised prompt: {received.revised_prompt}")
    _print_envelope(received.envelope, received.cost)


def _print_envelope(envelope: Any, cost: Any) -> None:
    document = as_dict(envelope)
    if not cost.HasField("estimate_usd"):
        document["cost_estimate_usd"] = f"unknown: {cost.unpriced_reason}"
    table = Table(show_header=False, title="provenance envelope", title_justify="left")
    for key in (
        "call", "request_id", "operation", "category", "provider", "model", "allowed", "attempts", "latency_ms",
        "usage", "cost_estimate_usd", "replayed", "on_behalf_of", "policy_version", "price_table_version", "trace_id",
    ):  # fmt: skip
        if key in document:
            table.add_row(key, str(document[key]))
    console.print(table)


@calls_app.command("list")
def list_calls(
    operation: Annotated[str, typer.Option(help="Only this operation.")] = "",
    caller: Annotated[str, typer.Option(help="Only this caller, e.g. service:runs.")] = "",
    request_id: Annotated[
        str, typer.Option(help="Only calls with this correlation id (x-request-id) or idempotency key.")
    ] = "",
    outcome: Annotated[str, typer.Option(help="succeeded, blocked or failed.")] = "",
    since: Annotated[datetime | None, typer.Option(help="From this time (ISO 8601, UTC if no zone).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time.")] = None,
    page_size: Annotated[int, typer.Option(help="Calls per page (0: 50).")] = 0,
    page_token: Annotated[str, typer.Option(help="Token printed by the previous page.")] = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """List audited calls, newest first."""
    if outcome and outcome not in OUTCOMES:
        raise typer.BadParameter(f"outcome must be one of {', '.join(OUTCOMES)}")
    request = gateway_pb2.ListCallsRequest(
        operation=operation,
        caller=caller,
        request_id=request_id,
        outcome=OUTCOMES.get(outcome, 0),  # type: ignore[arg-type]
        page_size=page_size,
        page_token=page_token,
    )
    _window(request, since, until)
    response = call(state_dir, "ai_gateway", lambda stub: stub.ListCalls(request))
    if as_json:
        print_json(as_dict(response))
        return
    rows = []
    for item in response.calls:
        envelope = item.envelope
        rows.append(
            {
                "call": item.name.removeprefix("calls/"),
                "created": envelope.created_at.ToDatetime().isoformat(timespec="seconds"),
                "caller": envelope.caller.id,
                "operation": envelope.operation,
                "model": f"{envelope.provider}/{envelope.model}",
                "outcome": gateway_pb2.CallOutcome.Name(item.outcome).removeprefix("CALL_OUTCOME_"),
                "reason": item.error_reason,
                "tokens": envelope.usage.total_tokens,
                "usd": f"{envelope.cost_estimate_usd:.6f}" if envelope.HasField("cost_estimate_usd") else "unknown",
            }
        )
    columns = ["call", "created", "caller", "operation", "model", "outcome", "reason", "tokens", "usd"]
    print_rows(rows, columns, as_json=False, title="AI calls, newest first")
    if response.next_page_token:
        typer.echo(f"next page: --page-token {response.next_page_token}")


@calls_app.command("show")
def show_call(
    name: Annotated[str, typer.Argument(help="calls/<id> or just the id.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Show one audited call with its envelope and cost, and who caused it (caller, and the person it called for)."""
    full = name if name.startswith("calls/") else f"calls/{name}"
    response = call(state_dir, "ai_gateway", lambda stub: stub.GetCall(gateway_pb2.GetCallRequest(name=full)))
    if not as_json:
        envelope = response.envelope
        person = envelope.on_behalf_of.id if envelope.HasField("on_behalf_of") else "-"
        typer.echo(f"caller: {envelope.caller.id}  on behalf of: {person}")
    print_record(response, as_json)


@app.command()
def policy(state_dir: StateDir = DEFAULT_STATE_DIR, as_json: JsonFlag = False) -> None:
    """Show the active safety policy, price table and operation defaults, with versions and digests."""
    response = call(state_dir, "ai_gateway", lambda stub: stub.GetPolicy(gateway_pb2.GetPolicyRequest()))
    if as_json:
        print_json(as_dict(response))
        return
    typer.echo(f"safety policy {response.policy_version} (sha256 {response.policy_sha256})")
    typer.echo(f"price table {response.price_table_version} (sha256 {response.price_table_sha256})")
    typer.echo(
        f"providers: {', '.join(response.providers)}; verbose audit: {'on' if response.verbose_audit else 'off'}"
    )
    print_rows(
        [
            {
                "category": c.name,
                "input rules": ", ".join(r.id.removeprefix("input.") for r in c.input_rules),
                "output rules": ", ".join(r.id.removeprefix("output.") for r in c.output_rules),
            }
            for c in response.categories
        ],
        ["category", "input rules", "output rules"],
        as_json=False,
        title="safety categories",
    )
    print_rows(
        [
            {
                "operation": o.operation,
                "categories": ", ".join(o.categories),
                "provider/model": f"{o.provider}/{o.model}",
                "temperature": o.temperature,
                "max_tokens": o.max_tokens,
                "fallbacks": ", ".join(o.fallback_providers),
            }
            for o in response.operations
        ],
        ["operation", "categories", "provider/model", "temperature", "max_tokens", "fallbacks"],
        as_json=False,
        title="operations",
    )
    print_rows(
        [
            {
                "model": f"{p.provider}/{p.model}",
                "input": p.input_per_million_usd,
                "cached input": p.cached_input_per_million_usd,
                "output": p.output_per_million_usd,
            }
            for p in response.prices
        ],
        ["model", "input", "cached input", "output"],
        as_json=False,
        title="prices, USD per 1M tokens",
    )


def _window(request: gateway_pb2.ListCallsRequest, since: datetime | None, until: datetime | None) -> None:
    """ListCalls' [start_time, end_time) from --since/--until (UTC when they name no zone)."""
    for field, moment in (("start_time", since), ("end_time", until)):
        if moment is not None:
            stamp = Timestamp()
            stamp.FromDatetime(moment)
            getattr(request, field).CopyFrom(stamp)


@dataclass
class Spend:
    """What one group of calls used: a cost the price table could not give is counted, never summed as 0."""

    calls: int = 0
    tokens: int = 0
    known_usd: Decimal = Decimal(0)
    known_calls: int = 0
    unknown_cost_calls: int = 0

    def add(self, item: gateway_pb2.Call) -> None:
        self.calls += 1
        self.tokens += item.cost.usage.total_tokens
        if item.cost.HasField("estimate_usd"):
            self.known_usd += Decimal(str(item.cost.estimate_usd))
            self.known_calls += 1
        else:
            self.unknown_cost_calls += 1

    def row(self, group: str) -> dict[str, Any]:
        """known_cost_usd is None when no call of the group had a known cost (unknown is not 0)."""
        return {
            "group": group,
            "calls": self.calls,
            "tokens": self.tokens,
            "known_cost_usd": float(self.known_usd) if self.known_calls else None,
            "unknown_cost_calls": self.unknown_cost_calls,
        }


def spend_group(item: gateway_pb2.Call, by: str) -> str:
    """The group a call counts in. person: the person it was made for (on_behalf_of), the caller itself when a
    person called directly, NO_PERSON when a service called for itself."""
    envelope = item.envelope
    if by == "caller":
        return envelope.caller.id
    if by == "operation":
        return envelope.operation
    if by == "model":
        return f"{envelope.provider}/{envelope.model}"
    if envelope.HasField("on_behalf_of"):
        return envelope.on_behalf_of.id
    return envelope.caller.id if envelope.caller.id.startswith("human:") else NO_PERSON


@app.command()
def spend(
    by: Annotated[str, typer.Option(help="Group by caller, person, operation or model.")] = "caller",
    since: Annotated[datetime | None, typer.Option(help="From this time (ISO 8601, UTC if no zone).")] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time.")] = None,
    person: Annotated[
        str, typer.Option(help="Only calls made for this person, e.g. human:operator (as --by person groups them).")
    ] = "",
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Summarise the audited calls' tokens and cost by caller, person (on whose behalf), operation or model.

    Known costs are summed; a call whose cost is unknown (unpriced model, no usage) is counted apart, never as 0."""
    if by not in SPEND_GROUPS:
        raise typer.BadParameter(f"--by must be one of {', '.join(SPEND_GROUPS)}")
    request = gateway_pb2.ListCallsRequest(page_size=1000)
    _window(request, since, until)

    async def every_call(stub: Any) -> list[gateway_pb2.Call]:
        found: list[gateway_pb2.Call] = []
        while True:
            response = await stub.ListCalls(request)
            found.extend(response.calls)
            if not response.next_page_token:
                return found
            request.page_token = response.next_page_token

    groups: dict[str, Spend] = {}
    total = Spend()
    for item in call(state_dir, "ai_gateway", every_call):
        if person and spend_group(item, "person") != person:
            continue
        groups.setdefault(spend_group(item, by), Spend()).add(item)
        total.add(item)
    rows = [groups[group].row(group) for group in sorted(groups)]
    if as_json:
        print_json({"by": by, "groups": rows, "total": total.row("total")})
        return
    printed = [
        {
            **row,
            by: row["group"],
            "known cost USD": "-" if row["known_cost_usd"] is None else f"{row['known_cost_usd']:.6f}",
            "unknown cost": row["unknown_cost_calls"],
        }
        for row in [*rows, {**total.row("total")}]
    ]
    print_rows(printed, [by, "calls", "tokens", "known cost USD", "unknown cost"], as_json=False, title="AI spend")
