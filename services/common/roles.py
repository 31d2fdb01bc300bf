"""Least-privilege database roles on PostgreSQL: what a service's runtime role may do, granted by its migrations.

Two roles per service database. The owner role runs the migrations and owns every schema object (tables,
triggers, functions, sequences), so only it can alter or drop them. The runtime role, the one the service
connects as, may SELECT and INSERT every table and nothing more, except what the service declares beside its
tables (`RUNTIME_ACCESS` in services/<service>/tables.py): UPDATE on its compare-and-set state tables, DELETE where
its store deletes. Triggers keep refusing UPDATE and DELETE on immutable tables whoever asks; these grants make the
runtime role unable to drop or disable them, truncate, alter, or create anything.

`grant_runtime` runs at the end of every migration (services/common/migrations.py), at head too, so a fresh
database and an upgraded one end with the same grants. It revokes and re-grants each table's privileges, then
checks the role's effective privileges (PUBLIC and role memberships included) and refuses to commit the migration
if the role could do more, or less, than declared. Creating the roles is a deployment step (README, Least-privilege
database roles); nothing here needs a superuser. SQLite has no roles: its boundary is the file's permissions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

# Every table privilege PostgreSQL has; each must be exactly as declared.
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
APPEND_ONLY = ("SELECT", "INSERT")


class RoleError(Exception):
    """The runtime role is missing, or could do more (or less) than its service declared. Says what to change."""


@dataclass(frozen=True)
class RuntimeAccess:
    """A service's declaration of what its runtime role may do to its tables, beyond SELECT and INSERT on all.

    Every table is either immutable (triggers refuse UPDATE and DELETE) or named in `update` or `delete`; a table
    in neither, or in both an immutable list and a mutable one, is a mistake caught at import."""

    metadata: sa.MetaData
    immutable: tuple[str, ...]
    update: frozenset[str] = frozenset()
    delete: frozenset[str] = frozenset()
    # The store creates temporary tables (needs TEMPORARY on the database).
    temporary: bool = False
    privileges: Mapping[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        tables, immutable, mutable = set(self.metadata.tables), set(self.immutable), self.update | self.delete
        problems = [f"{t}: not a table of this schema" for t in sorted((immutable | mutable) - tables)]
        problems += [f"{t}: immutable, yet the runtime may change it" for t in sorted(immutable & mutable)]
        problems += [f"{t}: neither immutable nor declared mutable" for t in sorted(tables - immutable - mutable)]
        if problems:
            raise ValueError("runtime access: " + "; ".join(problems))
        privileges = {
            table: APPEND_ONLY
            + (("UPDATE",) if table in self.update else ())
            + (("DELETE",) if table in self.delete else ())
            for table in sorted(tables)
        }
        object.__setattr__(self, "privileges", privileges)

    def with_version_table(self, version_table: str) -> dict[str, tuple[str, ...]]:
        """Every table's privileges, plus SELECT on the migrations' version table (wait-for-schema reads it)."""
        return {**self.privileges, version_table: ("SELECT",)}


def grant_runtime(connection: sa.Connection, access: RuntimeAccess, version_table: str, role: str) -> None:
    """Grants `role` exactly the declared privileges on the current schema's tables, then checks them (raises
    RoleError). Runs as the owner inside the migration's transaction."""
    schema = str(connection.exec_driver_sql("SELECT current_schema()").scalar_one())
    _require_role(connection, role)
    quote = connection.dialect.identifier_preparer.quote
    grantee, namespace = quote(role), quote(schema)
    tables = access.with_version_table(version_table)
    statements = [f"GRANT USAGE ON SCHEMA {namespace} TO {grantee}"]
    for table, privileges in tables.items():
        name = f"{namespace}.{quote(table)}"
        statements.append(f"REVOKE ALL ON TABLE {name} FROM {grantee}")
        statements.append(f"GRANT {', '.join(privileges)} ON TABLE {name} TO {grantee}")
    for sequence in _sequences(connection, schema, tables):
        name = f"{namespace}.{quote(sequence)}"
        statements += [f"REVOKE ALL ON SEQUENCE {name} FROM {grantee}", f"GRANT USAGE ON SEQUENCE {name} TO {grantee}"]
    # Trigger functions call helpers (run_seal_lock) as the caller: EXECUTE on the schema's own functions.
    for function in _functions(connection, schema):
        statements.append(f"GRANT EXECUTE ON FUNCTION {function} TO {grantee}")
    for statement in statements:
        connection.exec_driver_sql(statement)
    problems = runtime_problems(connection, access, version_table, role)
    if problems:
        raise RoleError(
            f"the runtime role {role!r} would not hold exactly what its service declares, so the migration was "
            f"not committed: {'; '.join(problems)}"
        )


def runtime_problems(connection: sa.Connection, access: RuntimeAccess, version_table: str, role: str) -> list[str]:
    """How `role`'s effective privileges on the current schema differ from the declaration, each with its fix."""
    schema = str(connection.exec_driver_sql("SELECT current_schema()").scalar_one())
    problems = []
    attributes = connection.execute(
        sa.text("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = :role"), {"role": role}
    ).one()
    if attributes.rolsuper:
        problems.append(f"{role} is a superuser (ALTER ROLE {role} NOSUPERUSER)")
    if attributes.rolcreaterole:
        problems.append(f"{role} may create roles and grant itself the owner's (ALTER ROLE {role} NOCREATEROLE)")
    tables = access.with_version_table(version_table)
    found = connection.execute(
        sa.text(
            "SELECT c.relname, p.privilege, has_table_privilege(:role, c.oid, p.privilege) AS held,"
            " pg_has_role(:role, c.relowner, 'MEMBER') AS owns"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " CROSS JOIN unnest(CAST(:privileges AS text[])) AS p(privilege)"
            " WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND c.relname = ANY(:tables)"
        ),
        {"role": role, "schema": schema, "tables": list(tables), "privileges": list(TABLE_PRIVILEGES)},
    ).all()
    held: dict[str, set[str]] = {}
    for row in found:
        privileges = held.setdefault(row.relname, set())
        if row.held:
            privileges.add(row.privilege)
        if row.owns:
            privileges.add("OWNER")
    for table in sorted(set(tables) - set(held)):
        problems.append(f"table {table} is missing from schema {schema}")
    for table, privileges in sorted(held.items()):
        if "OWNER" in privileges:
            problems.append(f"{role} owns {table} or is a member of its owner, so it may alter or drop it")
        extra, lacking = privileges - set(tables[table]) - {"OWNER"}, set(tables[table]) - privileges
        if extra:
            problems.append(f"{role} may also {', '.join(sorted(extra))} on {table} (granted to it, or to PUBLIC)")
        if lacking:
            problems.append(f"{role} lacks {', '.join(sorted(lacking))} on {table}")
    for sequence in _sequences(connection, schema, tables):
        usage, update = connection.execute(
            sa.text(
                "SELECT has_sequence_privilege(:role, c.oid, 'USAGE'), has_sequence_privilege(:role, c.oid, 'UPDATE')"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = :schema AND c.relname = :sequence"
            ),
            {"role": role, "schema": schema, "sequence": sequence},
        ).one()
        if not usage:
            problems.append(f"{role} lacks USAGE on sequence {sequence}")
        if update:
            problems.append(f"{role} may also UPDATE (setval) sequence {sequence}")
    usage, create = connection.execute(
        sa.text("SELECT has_schema_privilege(:role, :schema, 'USAGE'), has_schema_privilege(:role, :schema, 'CREATE')"),
        {"role": role, "schema": schema},
    ).one()
    if not usage:
        problems.append(f"{role} lacks USAGE on schema {schema} (the owner of the schema must grant it)")
    if create:
        problems.append(
            f"{role} may create objects in schema {schema} (REVOKE CREATE ON SCHEMA {schema} FROM PUBLIC, "
            f"and from {role}; PUBLIC had CREATE on public before PostgreSQL 15)"
        )
    needed = ("CONNECT", "TEMPORARY") if access.temporary else ("CONNECT",)
    for privilege in needed:
        if not connection.execute(
            sa.text("SELECT has_database_privilege(:role, current_database(), :privilege)"),
            {"role": role, "privilege": privilege},
        ).scalar_one():
            database = connection.exec_driver_sql("SELECT current_database()").scalar_one()
            problems.append(
                f"{role} lacks {privilege} on the database (GRANT {privilege} ON DATABASE {database} TO {role})"
            )
    return problems


def _require_role(connection: sa.Connection, role: str) -> None:
    exists = connection.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
    if exists is None:
        raise RoleError(
            f"the runtime role {role!r} does not exist: create it first (a deployment step: "
            f"CREATE ROLE {role} LOGIN PASSWORD '...'; see the README, Least-privilege database roles), "
            "or name another with DATABASE_RUNTIME_ROLE"
        )


def _sequences(connection: sa.Connection, schema: str, tables: Iterable[str]) -> list[str]:
    """The sequences the tables' serial or identity columns draw from."""
    rows = connection.execute(
        sa.text(
            "SELECT s.relname FROM pg_class s"
            " JOIN pg_namespace n ON n.oid = s.relnamespace"
            " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('a', 'i')"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " WHERE s.relkind = 'S' AND n.nspname = :schema AND t.relname = ANY(:tables) ORDER BY s.relname"
        ),
        {"schema": schema, "tables": list(tables)},
    )
    return [str(name) for name in rows.scalars()]


def _functions(connection: sa.Connection, schema: str) -> list[str]:
    """The functions of the schema the current role owns (the migrations' own), as regprocedure signatures."""
    rows = connection.execute(
        sa.text(
            "SELECT CAST(p.oid AS regprocedure)::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = :schema AND p.proowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)"
            " ORDER BY 1"
        ),
        {"schema": schema},
    )
    return [str(signature) for signature in rows.scalars()]
