"""Shared fixtures. PostgreSQL contract tests run when CUSTODY_TEST_POSTGRES_DSN is set, and then the whole run
fails (never skips) if that database cannot be reached."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.common.db import normalize_url

POSTGRES_DSN_ENV = "CUSTODY_TEST_POSTGRES_DSN"
POSTGRES_DSN = os.environ.get(POSTGRES_DSN_ENV)

# Output does not depend on the terminal the tests run in. pytest imports readline, and GNU readline writes the
# terminal's size into the process environment (COLUMNS=80 without a terminal), which pytest-xdist's workers then
# inherit: a Rich console created at import would be fixed at that width, whatever COLUMNS a test invokes with.
for _size in ("COLUMNS", "LINES"):
    os.environ.pop(_size, None)


def pytest_sessionstart(session: pytest.Session) -> None:
    # The in-memory metric reader is this process's meter provider before any service started in process installs
    # its own (OpenTelemetry lets the first one win): a test reading metrics must not depend on which test ran first.
    from tests.support.metrics import in_memory_reader

    in_memory_reader()
    if not POSTGRES_DSN:
        return
    try:
        engine = sa.create_engine(normalize_url(POSTGRES_DSN))
        with engine.connect() as connection:
            connection.exec_driver_sql("SELECT 1")
        engine.dispose()
    except Exception as exc:
        pytest.exit(f"{POSTGRES_DSN_ENV} is set but PostgreSQL is unreachable: {exc}", returncode=1)


def _postgres_schema_url(schema: str) -> str:
    assert POSTGRES_DSN
    url = normalize_url(POSTGRES_DSN)
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database, dropped afterwards."""
    yield from _fresh_schema()


@pytest.fixture
def postgres_urls() -> Iterator[Callable[[], str]]:
    """Makes fresh schemas in the test PostgreSQL database, one per call (a database per service), dropped after."""
    schemas: list[Iterator[str]] = []

    def fresh() -> str:
        schemas.append(_fresh_schema())
        return next(schemas[-1])

    yield fresh
    for schema in reversed(schemas):
        next(schema, None)  # drops it


def _fresh_schema() -> Iterator[str]:
    if not POSTGRES_DSN:
        pytest.skip(f"PostgreSQL contract tests need {POSTGRES_DSN_ENV} (CI sets it)")
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(normalize_url(POSTGRES_DSN))
    with admin.begin() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.begin() as connection:
            connection.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/custody-test.db"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on both backends: a fresh SQLite file, or a fresh PostgreSQL schema."""
    return str(request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param]))


SUMMARIES = "custody_summaries"  # the key of the counts a pytest-xdist worker hands to the controller


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand what this process tried to the controller, which prints the summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        from tests.support import fuzz, matrix_report

        workeroutput[SUMMARIES] = {"fuzz": fuzz.export_reports(), "matrix": matrix_report.export_counts()}


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """In the pytest-xdist controller: add a finished worker's counts to the summary."""
    from tests.support import fuzz, matrix_report

    summaries = getattr(node, "workeroutput", {}).get(SUMMARIES)
    if summaries:
        fuzz.import_reports(summaries["fuzz"])
        matrix_report.import_counts(summaries["matrix"])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The generative RPC tests' call counts per RPC and the authorization matrix's combinations, so a run shows
    how hard each service was tried."""
    from tests.support import fuzz, matrix_report

    for title, lines in (
        ("generated RPC calls", fuzz.summary_lines()),
        ("authorization matrix", matrix_report.summary_lines()),
    ):
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)
