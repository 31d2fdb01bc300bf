"""Init container of a stateful service: waits until its database schema is at this image's head revision.

Kubernetes applies the migration Job and the Deployment together and orders neither; a server started on an
empty or older schema would serve errors (services run with AUTO_MIGRATE=false there). Waiting for the *schema*
rather than for the Job object needs no Kubernetes API rights (no RBAC, no kubectl image), works with any apply
tool, and holds back the pods of a newer image until that image's migration Job has run. It never migrates.

Usage: python wait_for_schema.py SERVICE [--timeout SECONDS] [--interval SECONDS]
Exit codes: 0 schema current, 1 gave up waiting, 2 configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from services.cli import registry
from services.common import migrations
from services.common.catalog import SERVICES
from services.common.config import CONFIG_EXIT_CODE, ConfigError, StatefulServiceSettings
from services.common.db import create_engine, describe

WAIT_EXIT_CODE = 1


@dataclass(frozen=True)
class SchemaStatus:
    database: str
    current: str | None
    head: str | None
    error: str | None = None

    @property
    def ready(self) -> bool:
        return self.error is None and self.current == self.head

    def __str__(self) -> str:
        if self.error:
            return f"{self.database}: unreachable ({self.error})"
        return f"{self.database}: at {self.current or 'no schema'}, this image needs {self.head}"


def schema_status(service: str, environ: Mapping[str, str] | None = None) -> SchemaStatus:
    """Where the service's database is, against the head revision this image ships; raises ConfigError."""
    if not SERVICES[service].stateful:
        raise ConfigError(f"{service} has no database")
    settings = registry.settings_class(service).load(environ=os.environ if environ is None else environ)
    assert isinstance(settings, StatefulServiceSettings)
    url = settings.resolved_database_url
    head = migrations.head_revision(service)
    engine = create_engine(url)
    try:
        return SchemaStatus(describe(url), migrations.current_revision(engine, service), head)
    except SQLAlchemyError as exc:
        return SchemaStatus(describe(url), None, head, error=type(exc).__name__)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=[name for name, spec in SERVICES.items() if spec.stateful])
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between checks")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    last = ""
    while True:
        try:
            status = schema_status(args.service)
        except ConfigError as exc:
            print(f"wait-for-schema {args.service}: configuration error: {exc}", file=sys.stderr)
            return CONFIG_EXIT_CODE
        if status.ready:
            print(f"wait-for-schema {args.service}: {status}: ready", flush=True)
            return 0
        if str(status) != last:
            print(f"wait-for-schema {args.service}: {status}: waiting for the migration Job", flush=True)
            last = str(status)
        if time.monotonic() >= deadline:
            print(f"wait-for-schema {args.service}: gave up after {args.timeout:.0f} s: {status}", file=sys.stderr)
            return WAIT_EXIT_CODE
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
