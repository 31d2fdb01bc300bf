"""`custody users`: the people of a deployment, each with a token of their own (services/cli/people.py).

They work on the state directory's credentials file, not through a service: running services pick the change up
by themselves within about a second. A new token goes to stdout alone (so scripts can capture it), once; what it
is and how to use it goes to stderr.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.markup import escape

from services.cli.calls import print_json, print_rows
from services.cli.options import JsonFlag, StateDir
from services.cli.output import console, err
from services.cli.people import ROLES, PeopleError, add_user, list_users, revoke_user, rotate_user
from services.cli.state import DEFAULT_STATE_DIR, TOKEN_ENV, StateLayout

app = typer.Typer(
    help="People: add reviewers and operators (principal human:<name>), list, rotate and revoke their tokens."
)

Name = Annotated[str, typer.Argument(help="The person's name: a-z, 0-9, _ and -; the principal is human:<name>.")]
COLUMNS = ["name", "principal", "roles", "created", "last rotated", "state", "note"]
BOOTSTRAP_NOTE = "bootstrap (custody init)"
PROPAGATION = (
    "running services see the change within about a second (Kubernetes: once the custody-credentials Secret is "
    "re-applied and the kubelet has updated it)"
)


@app.command()
def add(
    name: Name,
    role: Annotated[list[str], typer.Option("--role", help=f"One of {', '.join(ROLES)}; repeat for several.")],
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Add a person and print their new token once (only its sha256 is stored)."""
    with _refusals():
        token = add_user(StateLayout(state_dir), name, role)
    _hand_over(token, f"added human:{_bare(name)} ({', '.join(sorted(set(role)))})")


@app.command()
def rotate(name: Name, state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Give a person a new token (printed once); their old token stops working."""
    with _refusals():
        token = rotate_user(StateLayout(state_dir), name)
    _hand_over(token, f"rotated human:{_bare(name)}: the old token is refused from now on")


@app.command()
def revoke(name: Name, state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Revoke a person's token for good; they stay listed as revoked, and their name is never reused."""
    layout = StateLayout(state_dir)
    with _refusals():
        person = revoke_user(layout, name)
    extra = f"; {layout.operator_token} is deleted" if person.bootstrap else ""
    err.print(f"revoked {person.principal}{extra}; {PROPAGATION}", soft_wrap=True, highlight=False, markup=False)


@app.command("list")
def list_(state_dir: StateDir = DEFAULT_STATE_DIR, as_json: JsonFlag = False) -> None:
    """Everyone in the credentials file, revoked people included."""
    with _refusals():
        people = list_users(StateLayout(state_dir))
    if as_json:
        print_json([person.as_json() for person in people])
        return
    rows = [
        {
            "name": person.name,
            "principal": person.principal,
            "roles": ",".join(person.roles),
            "created": _when(person.created_at),
            "last rotated": _when(person.rotated_at),
            "state": person.state,
            "note": BOOTSTRAP_NOTE if person.bootstrap else "",
        }
        for person in people
    ]
    print_rows(rows, COLUMNS, as_json=False, title="People")
    if any(person.bootstrap and person.state == "active" for person in people):
        console.print(
            "[dim]hint: human:operator is the shared bootstrap operator from `custody init`: add named people "
            "(custody users add NAME --role reviewer|operator), then retire it (custody users revoke operator)[/dim]",
            soft_wrap=True,
        )


@contextmanager
def _refusals() -> Iterator[None]:
    try:
        yield
    except PeopleError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None


def _hand_over(token: str, what: str) -> None:
    err.print(
        f"{what}. Their token is below, shown this once (Custody keeps only its sha256): hand it over privately.\n"
        f"They use it as {TOKEN_ENV}=<token> for the custody CLI, or as gRPC metadata "
        f"'authorization: Bearer <token>'; {PROPAGATION}.",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    print(token)


def _bare(name: str) -> str:
    return name.removeprefix("human:")


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if moment is not None else "-"
