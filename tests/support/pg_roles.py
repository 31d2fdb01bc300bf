"""Owner and runtime roles in the test PostgreSQL, as a deployment provisions them (README, Least-privilege
database roles), under unique names: roles are global to the cluster, so every one made here is dropped again.

Each service gets an owner role (LOGIN, no other attribute: the migrations need no superuser), a runtime role, and
a schema of its own that the owner owns (the tests' stand-in for the service's own database)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from services.common.db import normalize_url
from tests.conftest import POSTGRES_DSN, POSTGRES_DSN_ENV


@dataclass(frozen=True)
class Login:
    role: str
    password: str


@dataclass(frozen=True)
class Provisioned:
    """One service's database: its schema, owner and runtime roles, and the URL each connects with."""

    service: str
    schema: str
    owner: Login
    runtime: Login

    def url(self, login: Login, schema: str | None = None) -> str:
        assert POSTGRES_DSN
        url = normalize_url(POSTGRES_DSN).set(username=login.role, password=login.password)
        url = url.update_query_dict({"options": f"-csearch_path={schema or self.schema}"})
        return url.render_as_string(hide_password=False)

    @property
    def owner_url(self) -> str:
        return self.url(self.owner)

    @property
    def runtime_url(self) -> str:
        return self.url(self.runtime)


def admin_engine() -> sa.Engine:
    """The test DSN's own user (a superuser in CI): creates and drops the roles, never used by a service."""
    if not POSTGRES_DSN:
        pytest.skip(f"PostgreSQL role tests need {POSTGRES_DSN_ENV} (CI sets it)")
    return sa.create_engine(normalize_url(POSTGRES_DSN))


class Roles:
    """Creates roles and schemas on demand and drops every one of them on close."""

    def __init__(self, admin: sa.Engine) -> None:
        self.admin = admin
        self.prefix = f"t_{uuid.uuid4().hex[:12]}"
        self._roles: list[str] = []
        self._schemas: list[str] = []

    def role(self, name: str, attributes: str = "") -> Login:
        login = Login(f"{self.prefix}_{name}", secrets.token_hex(16))
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f"CREATE ROLE {login.role} LOGIN {attributes} PASSWORD '{login.password}'")
        self._roles.append(login.role)
        return login

    def schema(self, name: str, owner: Login) -> str:
        schema = f"{self.prefix}_{name}"
        with self.admin.begin() as connection:
            connection.exec_driver_sql(f"CREATE SCHEMA {schema} AUTHORIZATION {owner.role}")
        self._schemas.append(schema)
        return schema

    def provision(self, service: str, label: str | None = None) -> Provisioned:
        label = label or service
        owner, runtime = self.role(f"{label}_owner"), self.role(f"{label}_runtime")
        return Provisioned(service, self.schema(label, owner), owner, runtime)

    def close(self) -> None:
        with self.admin.begin() as connection:
            for schema in reversed(self._schemas):
                connection.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            for role in reversed(self._roles):  # its grants in this database, then the role itself
                connection.exec_driver_sql(f"DROP OWNED BY {role}")
            for role in reversed(self._roles):
                connection.exec_driver_sql(f"DROP ROLE {role}")
        self.admin.dispose()


@contextmanager
def roles() -> Iterator[Roles]:
    made = Roles(admin_engine())
    try:
        yield made
    finally:
        made.close()


def schema_owners(admin: sa.Engine, schema: str) -> set[str]:
    """The roles owning any relation in `schema` (the owner role alone, after migrating as it)."""
    with admin.connect() as connection:
        return set(
            connection.execute(
                sa.text(
                    "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema"
                ),
                {"schema": schema},
            ).scalars()
        )
