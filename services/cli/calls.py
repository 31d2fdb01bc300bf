"""How operator commands call a service: endpoints, the operator token and (with TLS) the CA to trust from the state
directory, one client factory, and failures printed as status, ErrorInfo reason and hint (exit 1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.text import Text

from services.cli.output import console, err, fail, fail_with, table
from services.cli.state import StateLayout, channel_security, endpoints, operator_token
from services.common import call_context, status
from services.common.clients import ServiceClients
from services.common.tls.credentials import TlsFilesError

T = TypeVar("T")


def call(state_dir: Path, service: str, invoke: Callable[[Any], Awaitable[T]]) -> T:
    """Runs `invoke(stub)` against `service` as the operator; exits 1 with a readable error if the call fails."""
    return call_services(state_dir, lambda clients: invoke(clients.stub(service)))


def call_services(state_dir: Path, invoke: Callable[[ServiceClients], Awaitable[T]]) -> T:
    """As `call`, for a command that asks several services: `invoke` gets the clients of all of them."""
    layout = StateLayout(state_dir)
    call_context.bind_request_id(call_context.new_request_id())  # one correlation id per command

    async def run() -> T:
        clients = ServiceClients(endpoints(layout), operator_token(layout), security=channel_security(layout))
        try:
            return await invoke(clients)
        finally:
            await clients.close()

    try:
        return asyncio.run(run())
    except grpc.RpcError as exc:
        fail_with(err, status.decode(exc))
    except TlsFilesError as exc:  # the CA the CLI was told to trust is not there
        fail(err, f"{exc} (CUSTODY_CACERT, or the CA `custody up --tls` recorded)", code="TLS_FILES")


def as_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True)


def print_json(document: Any) -> None:
    console.print_json(json.dumps(document, default=str))


def print_record(message: Message, as_json: bool) -> None:
    """One message: JSON for scripts, a two-column table for people."""
    document = as_dict(message)
    if as_json:
        print_json(document)
        return
    rows = table("field", "value", show_header=False)
    for key, value in document.items():
        rows.add_row(Text(key), Text(json.dumps(value) if isinstance(value, dict | list) else str(value)))
    console.print(rows)


def print_rows(rows: list[dict[str, Any]], columns: list[str], as_json: bool, title: str | None = None) -> None:
    """Several records: JSON list for scripts, a table with the chosen columns for people."""
    if as_json:
        print_json(rows)
        return
    printed = table(*columns, title=title, title_justify="left")
    for row in rows:
        printed.add_row(*(Text(str(row.get(column, ""))) for column in columns))
    console.print(printed)
