"""`custody`: run the suite locally, serve one service, check health, and talk to the services as an operator.

Commands that start or migrate services (up, serve, migrate, demo) import what they need when they run: the server
and database stack costs most of a second to import, which every `custody runs list` would otherwise pay.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from services.cli import (
    evidence_commands,
    gateway_commands,
    ledger_commands,
    lineage_commands,
    migration_commands,
    pipeline_commands,
    registry,
    runs_commands,
    studio_commands,
    users_commands,
)
from services.cli.calls import call, print_record
from services.cli.health import check
from services.cli.local_ca import LocalCaError
from services.cli.options import JsonFlag, StateDir
from services.cli.output import console, err
from services.cli.people import PeopleError
from services.cli.state import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_STATE_DIR,
    DEPLOYMENT_NAME,
    StateLayout,
    channel_security,
    endpoints,
    initialize,
    operator_token,
    peer_endpoints,
    save_endpoints,
)
from services.common.catalog import CONSOLE, PROCESS_NAMES, SERVICE_NAMES, SERVICES
from services.common.config import CONFIG_EXIT_CODE, ConfigError, StatefulServiceSettings, address_list
from services.common.contracts import messages
from services.common.tls.credentials import ChannelSecurity, TlsFilesError

app = typer.Typer(
    name="custody",
    help="Custody: governed AI generation with a verifiable chain of custody.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _service_name(value: str) -> str:
    if value not in SERVICES:
        raise typer.BadParameter(f"unknown service {value!r}; choose one of {', '.join(SERVICE_NAMES)}")
    return value


@app.command()
def init(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    force: Annotated[
        bool, typer.Option(help="Rotate the services' and the bootstrap operator's tokens, even if state exists.")
    ] = False,
    deployment: Annotated[
        str, typer.Option(help="Names this deployment in every ledger origin (<deployment>/custody/<service>).")
    ] = DEFAULT_DEPLOYMENT,
    renew_certs: Annotated[
        bool, typer.Option("--renew-certs", help="Reissue every service certificate (new keys) from the local CA.")
    ] = False,
    dns_names: Annotated[
        list[str] | None,
        typer.Option("--dns-name", help="Another DNS name on every service certificate (repeatable)."),
    ] = None,
) -> None:
    """Create credentials (a token per service, in its own config, and the bootstrap operator's token), keys (each
    authority's ledger signing key, the evidence signing key) and the local CA with one certificate per service
    (tls/). Keys and the CA are never replaced, not even by --force; nor are the tokens of people added with
    `custody users`."""
    if not DEPLOYMENT_NAME.fullmatch(deployment):
        raise typer.BadParameter("letters, digits, dots and dashes only (it becomes part of a checkpoint origin)")
    layout = StateLayout(state_dir)
    try:
        created = initialize(
            layout, force=force, deployment=deployment, renew_certificates=renew_certs, dns_names=dns_names or ()
        )
    except LocalCaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except PeopleError as exc:  # the credentials file holds people and cannot be read: fix it, never overwrite it
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False, markup=False)
        raise typer.Exit(1) from None
    if created:
        console.print(f"initialized {layout.root}: credentials, config/<service>.yaml, operator.token (0600)")
    else:
        console.print(f"{layout.root} is already initialized (use --force to rotate the services' tokens)")
    console.print(f"TLS: CA {layout.tls.client_ca}, a certificate per service in {layout.tls.root}/<service>/")


@app.command()
def up(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    tls: Annotated[
        bool, typer.Option("--tls", help="TLS for people, mutual TLS between services (certificates in tls/).")
    ] = False,
) -> None:
    """Start the four services and the review console as separate processes and stop them together (Ctrl-C)."""
    from services.cli.stack import Stack, plan, supervise

    layout = StateLayout(state_dir)
    try:
        if initialize(layout):
            console.print(f"initialized {layout.root} (first run)")
    except LocalCaError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    try:
        planned = plan(layout, os.environ, tls=tls)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(CONFIG_EXIT_CODE) from None
    stack = Stack(planned, say)
    try:
        stack.start()
        problem = stack.wait_ready()
        if problem:
            say(f"{problem}; stopping the other services")
            code = 1
        else:
            ca_file = layout.tls.client_ca if stack.tls else None
            save_endpoints(
                layout,
                stack.addresses(),
                ca_file=ca_file,
                peer_addresses=stack.peer_addresses(),
                console_url=stack.console_url,
            )
            _print_welcome(layout, stack.addresses(), ca_file, stack.console_url, stack.metrics_urls())
            code = supervise(stack, say)
    except KeyboardInterrupt:
        code = 130
    finally:
        stack.stop()
    raise typer.Exit(code)


def say(line: str) -> None:
    err.print(f"[yellow]custody up:[/yellow] {line}")


def _print_welcome(
    layout: StateLayout,
    addresses: dict[str, str],
    ca_file: Path | None,
    console_url: str,
    metrics_urls: dict[str, str],
) -> None:
    transport = "TLS" if ca_file else "plaintext, loopback only"
    table = Table(title=f"Custody is up ({transport}): every service SERVING", title_justify="left")
    for column in ("service", "address", "gRPC service"):
        table.add_column(column, no_wrap=True)
    for name, address in addresses.items():
        table.add_row(name, address, SERVICES[name].full_name)
    console.print(table)
    if metrics_urls:
        console.print('\nMetrics (Prometheus text, plaintext; README "Metrics"):')
        for name, url in metrics_urls.items():
            console.print(f"  {name}: {url}", soft_wrap=True)
    console.print(
        f"\nReview console: {console_url}  (sign in with your token: `custody users add NAME --role reviewer` prints "
        f"one; the operator's is in {layout.operator_token})",
        soft_wrap=True,
    )
    runs = addresses["runs"]
    security = f"-cacert {ca_file}" if ca_file else "-plaintext"
    console.print(
        "\nTry:\n"
        f"  grpcurl {security} {runs} list\n"
        f"  grpcurl {security} {runs} grpc.health.v1.Health/Check\n"
        f'  grpcurl {security} -H "authorization: Bearer $(cat {layout.operator_token})" '
        f"{runs} custody.runs.v1.RunsService/GetServiceInfo\n"
        "  custody health\n"
        "  custody info runs\n"
        "\nCtrl-C stops every service.",
        soft_wrap=True,
    )


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(PROCESS_NAMES)}.")],
    config: Annotated[Path | None, typer.Option(help="YAML settings file (environment overrides it).")] = None,
) -> None:
    """Run one service, or the review console, in the foreground (what containers run)."""
    if service == CONSOLE:
        from services.console.main import run as run_console  # only the console needs the web stack

        raise typer.Exit(run_console(config))
    from services.common.server import run

    name = _service_name(service)
    raise typer.Exit(run(registry.settings_class(name), registry.factory(name), config))


@app.command()
def migrate(
    service: Annotated[str, typer.Argument(help="ai_gateway, runs or lineage.")],
    config: Annotated[Path | None, typer.Option(help="YAML settings file (environment overrides it).")] = None,
) -> None:
    """Apply a stateful service's schema migrations to its database, then exit (a Kubernetes Job runs this)."""
    from services.common import migrations
    from services.common.db import describe

    name = _service_name(service)
    if not SERVICES[name].stateful:
        raise typer.BadParameter(f"{name} has no database")
    try:
        settings = registry.settings_class(name).load(config)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(CONFIG_EXIT_CODE) from None
    assert isinstance(settings, StatefulServiceSettings)
    url = settings.migration_database_url or settings.resolved_database_url
    try:
        role = migrations.migrate(settings)
    except migrations.MigrationError as exc:
        err.print(f"[red]migration refused:[/red] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    granted = f"; runtime role {role} granted its privileges" if role else ""
    console.print(f"{name}: database {describe(url)} at {migrations.head_revision(name)}{granted}", soft_wrap=True)


@app.command()
def health(
    service: Annotated[str | None, typer.Option(help="Check only this service.")] = None,
    address: Annotated[str | None, typer.Option(help="host:port of --service (default: the running stack).")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each answer.")] = 2.0,
    cacert: Annotated[
        Path | None,
        typer.Option(help="TLS, trusting this CA certificate (default: CUSTODY_CACERT, else the running stack's)."),
    ] = None,
    plaintext: Annotated[bool, typer.Option(help="No TLS (e.g. a health-only port).")] = False,
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Print each service's health; exit 1 unless all are SERVING."""
    if address and not service:
        raise typer.BadParameter("--address needs --service")
    if plaintext and cacert:
        raise typer.BadParameter("--plaintext and --cacert exclude each other")
    layout = StateLayout(state_dir)
    addresses = endpoints(layout)
    names = [_service_name(service)] if service else list(SERVICE_NAMES)
    if service and address:
        addresses[service] = address
    security = None if plaintext else channel_security(layout, cacert)
    try:
        # A service listed with several replicas: each replica is checked on its own (a dead one is not hidden
        # behind the other, as round-robin calls would hide it).
        results = {
            name: {
                replica: check(replica, SERVICES[name].full_name, timeout, security)
                for replica in _replicas(addresses[name])
            }
            for name in names
        }
    except TlsFilesError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None

    def overall(replicas: dict[str, str]) -> str:
        return next((status for status in replicas.values() if status != "SERVING"), "SERVING")

    if as_json:
        document: dict[str, dict[str, object]] = {}
        for name, replicas in results.items():
            document[name] = {"address": addresses[name], "status": overall(replicas)}
            if len(replicas) > 1:
                document[name]["replicas"] = replicas
        console.print_json(json.dumps(document))
    else:
        table = Table()
        for column in ("service", "address", "status"):
            table.add_column(column)
        for name, replicas in results.items():
            for replica, result in replicas.items():
                colour = "green" if result == "SERVING" else "red"
                table.add_row(name, replica, f"[{colour}]{result}[/{colour}]")
        console.print(table)
    if any(overall(replicas) != "SERVING" for replicas in results.values()):
        raise typer.Exit(1)


def _replicas(address: str) -> list[str]:
    """The addresses to health-check for a service: each replica of a list, else the address as given."""
    try:
        return address_list(address)
    except ValueError:
        return [address]  # reported UNREACHABLE by the check, as any wrong address is


@app.command()
def info(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICE_NAMES)}.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Call GetServiceInfo: the service's version and who it thinks you are (checks your token)."""
    name = _service_name(service)
    request = messages(name).GetServiceInfoRequest()
    print_record(call(state_dir, name, lambda stub: stub.GetServiceInfo(request)), as_json)


def _address_option(service: str) -> object:
    return typer.Option(
        f"--{service.replace('_', '-')}-address",
        help=f"{service}'s address (default: the running stack's); several replicas: IP host:port separated by commas, "
        "called round-robin.",
    )


def _addresses(layout: StateLayout, overrides: dict[str, str | None]) -> dict[str, str]:
    """The running stack's addresses with those given on the command line, each checked as the services check
    theirs (config.address_list)."""
    addresses = endpoints(layout)
    for service, address in overrides.items():
        if address is None:
            continue
        try:
            address_list(address)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"--{service.replace('_', '-')}-address") from None
        addresses[service] = address
    return addresses


@app.command()
def demo(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: JsonFlag = False,
    ai_gateway_address: Annotated[str | None, _address_option("ai_gateway")] = None,
    runs_address: Annotated[str | None, _address_option("runs")] = None,
    art_studio_address: Annotated[str | None, _address_option("art_studio")] = None,
    lineage_address: Annotated[str | None, _address_option("lineage")] = None,
) -> None:
    """Run the governed flow end to end against the running stack; exit 0 only if every expectation held."""
    from services.cli.demo import Demo, DemoReport, add_demo_reviewer
    from services.common.content_credentials.layout import anchors_file

    layout = StateLayout(state_dir)
    addresses = _addresses(
        layout,
        {
            "ai_gateway": ai_gateway_address,
            "runs": runs_address,
            "art_studio": art_studio_address,
            "lineage": lineage_address,
        },
    )
    token = operator_token(layout)
    if not token:
        err.print("[red]error:[/red] no operator token; run `custody init` (or `make run`) first")
        raise typer.Exit(1)
    service_config = layout.service_config("art_studio")
    service_token = yaml.safe_load(service_config.read_text())["token"] if service_config.exists() else None

    security = channel_security(layout)
    # With TLS a service's token counts only with its certificate, at its peers' mutual-TLS ports.
    peers = peer_endpoints(layout) if security else {}
    service_security = ChannelSecurity.for_service(layout.tls.service("art_studio")) if peers else None
    anchors = anchors_file(layout.root)

    async def play() -> DemoReport:
        flow = Demo(
            addresses,
            token,
            lambda: add_demo_reviewer(layout),
            service_token,
            security=security,
            service_addresses=peers or None,
            service_security=service_security,
            trust_anchors=anchors.read_bytes() if anchors.is_file() else None,
        )
        try:
            return await flow.run()
        finally:
            await flow.close()

    report = asyncio.run(play())
    if as_json:
        console.print_json(json.dumps(report.as_json()))
    else:
        table = Table(title=f"custody demo: {'every expectation held' if report.ok else 'an expectation FAILED'}")
        for column in ("step", "ok", "detail"):
            table.add_column(column, overflow="fold")
        for step in report.steps:
            table.add_row(step["name"], "[green]yes[/green]" if step["ok"] else "[red]NO[/red]", step["detail"])
        console.print(table)
        console.print(f"brief {report.brief}; runs {', '.join(report.runs)}; verified {report.verified}")
    if not report.ok:
        raise typer.Exit(1)


# Command groups of the services, one module each.
# (add one line per group here: app.add_typer(<module>.app, name="<group>"))
app.add_typer(ledger_commands.app, name="ledger")
app.add_typer(lineage_commands.app, name="lineage")
app.add_typer(pipeline_commands.app, name="pipeline")
app.add_typer(gateway_commands.app, name="gateway")
runs_commands.app.add_typer(migration_commands.app, name="migrate")
app.add_typer(runs_commands.app, name="runs")
app.add_typer(studio_commands.app, name="studio")
app.add_typer(evidence_commands.app, name="evidence")
app.add_typer(users_commands.app, name="users")


def main() -> None:
    app()
