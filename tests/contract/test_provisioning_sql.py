"""The SQL that provisions the databases and roles (deploy/compose/postgres/custody-databases.sql, also the
README's for a database you run yourself), run for real with psql under unique names: each service's migrations
then run as its owner role, and its runtime role may use its own database and no other."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.common import migrations
from services.common.db import create_engine, normalize_url
from tests.deploy.checks import AUTHORITIES, DEPLOY_DIR
from tests.support.pg_roles import admin_engine

SQL = DEPLOY_DIR / "compose" / "postgres" / "custody-databases.sql"


@dataclass(frozen=True)
class Cluster:
    prefix: str
    passwords: dict[str, str]

    def name(self, name: str) -> str:
        return f"{self.prefix}_{name}"

    def url(self, role: str, database: str) -> str:
        dsn = os.environ["CUSTODY_TEST_POSTGRES_DSN"]
        url = normalize_url(dsn).set(
            username=self.name(role), password=self.passwords[role], database=self.name(database)
        )
        return url.render_as_string(hide_password=False)


def psql(sql: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    psql_path = shutil.which("psql")
    assert psql_path, "psql (PostgreSQL's client, which CI's createdb comes with) is needed to run the SQL as written"
    url = normalize_url(os.environ["CUSTODY_TEST_POSTGRES_DSN"])
    command = [psql_path, "--no-psqlrc", "--host", str(url.host), "--port", str(url.port or 5432)]
    command += ["--username", str(url.username), "--dbname", "postgres", "--file", str(sql)]
    for name, value in variables.items():
        command += ["--set", f"{name}={value}"]
    env = os.environ | ({"PGPASSWORD": url.password} if url.password else {})
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The provisioning SQL with every custody_ name prefixed, run once; every database and role dropped after."""
    admin = admin_engine()
    prefix = f"t_{uuid.uuid4().hex[:12]}"
    text = SQL.read_text(encoding="utf-8").replace("custody_", f"{prefix}_custody_")
    roles = sorted(set(re.findall(rf"CREATE ROLE ({prefix}_\w+)", text)))
    databases = sorted(set(re.findall(rf"CREATE DATABASE ({prefix}_\w+)", text)))
    passwords = {role.removeprefix(f"{prefix}_"): secrets.token_hex(16) for role in roles}
    variables = {f"{role.removeprefix('custody_')}_password": password for role, password in passwords.items()}
    script = tmp_path_factory.mktemp("sql") / "custody-databases.sql"
    script.write_text(text)
    try:
        result = psql(script, variables)
        assert result.returncode == 0, result.stderr
        yield Cluster(prefix, passwords)
    finally:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for database in databases:
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            for role in roles:
                connection.exec_driver_sql(f"DROP ROLE IF EXISTS {role}")
        admin.dispose()


def test_the_sql_creates_an_owner_and_a_runtime_role_for_every_stateful_service(cluster: Cluster):
    expected = {f"custody_{n}" for n in AUTHORITIES} | {f"custody_{n}_runtime" for n in AUTHORITIES}
    assert set(cluster.passwords) == expected


@pytest.mark.parametrize("service", AUTHORITIES)
def test_each_service_migrates_as_its_owner_and_its_runtime_role_gets_exactly_its_grants(
    cluster: Cluster, service: str
):
    owner, runtime = f"custody_{service}", f"custody_{service}_runtime"
    engine = create_engine(cluster.url(owner, f"custody_{service}"))
    try:
        assert migrations.upgrade(engine, service, runtime_role=cluster.name(runtime)) == cluster.name(runtime)
    finally:
        engine.dispose()
    engine = create_engine(cluster.url(runtime, f"custody_{service}"))
    try:
        assert migrations.current_revision(engine, service) == migrations.head_revision(service)
        with engine.connect() as connection, pytest.raises(DBAPIError, match="permission denied for schema public"):
            connection.exec_driver_sql("CREATE TABLE planted (id int)")
    finally:
        engine.dispose()


@pytest.mark.parametrize("service", AUTHORITIES)
def test_a_runtime_role_cannot_connect_to_another_services_database(cluster: Cluster, service: str):
    other = next(name for name in AUTHORITIES if name != service)
    engine = create_engine(cluster.url(f"custody_{service}_runtime", f"custody_{other}"))
    try:
        with pytest.raises(DBAPIError, match="permission denied for database"), engine.connect():
            pass
    finally:
        engine.dispose()


def test_the_owner_roles_are_no_superusers(cluster: Cluster):
    admin = admin_engine()
    try:
        with admin.connect() as connection:
            mighty = connection.execute(
                sa.text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p AND (rolsuper OR rolcreaterole)"),
                {"p": f"{cluster.prefix}%"},
            ).scalars()
            assert list(mighty) == []
    finally:
        admin.dispose()
