"""Least privilege on PostgreSQL, against the real migrations of every stateful service: migrated as an owner role
that is no superuser, a service's runtime role may SELECT and INSERT every table, UPDATE only the compare-and-set
state tables and DELETE only where its store deletes, and cannot change, empty, alter, drop, disable or replace
anything else. Each refusal must be PostgreSQL's permission check (SQLSTATE 42501: permission denied, or must be
owner), not an immutability trigger: the statements touch no row, so no trigger fires and only the privileges
decide."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DBAPIError

from services.common import migrations
from services.common.catalog import SERVICES
from services.common.db import create_engine
from services.common.roles import TABLE_PRIVILEGES, RuntimeAccess
from tests.support.pg_roles import Provisioned, Roles, roles, schema_owners

STATEFUL = [name for name, spec in SERVICES.items() if spec.stateful]
INSUFFICIENT_PRIVILEGE = "42501"


def access(service: str) -> RuntimeAccess:
    return migrations.runtime_access(service)


def tables_where(predicate: str) -> list[tuple[str, str]]:
    """(service, table) for every table of every stateful service that is `append_only`, `update` or `delete`,
    `no_update`, `no_delete`, or `any`."""
    pairs = []
    for service in STATEFUL:
        declared = access(service)
        for table in sorted(declared.metadata.tables):
            keep = {
                "any": True,
                "update": table in declared.update,
                "delete": table in declared.delete,
                "no_update": table not in declared.update,
                "no_delete": table not in declared.delete,
            }[predicate]
            if keep:
                pairs.append((service, table))
    return pairs


@pytest.fixture(scope="module")
def made() -> Iterator[Roles]:
    with roles() as found:
        yield found


@pytest.fixture(scope="module")
def databases(made: Roles) -> dict[str, Provisioned]:
    """Every stateful service's schema, migrated to head by its owner role, granting its runtime role."""
    provisioned = {}
    for service in STATEFUL:
        database = made.provision(service)
        engine = create_engine(database.owner_url)
        try:
            assert migrations.upgrade(engine, service, runtime_role=database.runtime.role) == database.runtime.role
        finally:
            engine.dispose()
        provisioned[service] = database
    return provisioned


@pytest.fixture(scope="module")
def runtime_engines(databases: dict[str, Provisioned]) -> Iterator[dict[str, sa.Engine]]:
    engines = {service: create_engine(database.runtime_url) for service, database in databases.items()}
    yield engines
    for engine in engines.values():
        engine.dispose()


def as_runtime(engines: dict[str, sa.Engine], service: str, statement: str) -> None:
    """Runs one statement as the service's runtime role, in a transaction that is rolled back."""
    with engines[service].connect() as connection:
        try:
            connection.exec_driver_sql(statement)
        finally:
            connection.rollback()


def refused(engines: dict[str, sa.Engine], service: str, statement: str) -> str:
    """The PostgreSQL message of a statement the runtime role must not run; fails unless it is a privilege error."""
    with pytest.raises(DBAPIError) as raised:
        as_runtime(engines, service, statement)
    assert getattr(raised.value.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE, raised.value
    return str(raised.value.orig)


def first_column(service: str, table: str) -> str:
    return next(iter(access(service).metadata.tables[table].columns)).name


def triggers(admin: sa.Engine, database: Provisioned) -> list[tuple[str, str]]:
    with admin.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema AND NOT t.tgisinternal"
            ),
            {"schema": database.schema},
        ).all()
    return [(row.relname, row.tgname) for row in rows]


def held(admin: sa.Engine, database: Provisioned, table: str, privilege: str) -> bool:
    with admin.connect() as connection:
        return bool(
            connection.execute(
                sa.text("SELECT has_table_privilege(:role, :table, :privilege)"),
                {"role": database.runtime.role, "table": f"{database.schema}.{table}", "privilege": privilege},
            ).scalar_one()
        )


# --- what the runtime role may do --------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_may_read_every_table(runtime_engines: dict[str, sa.Engine], service: str, table: str):
    as_runtime(runtime_engines, service, f"SELECT * FROM {table} LIMIT 1")


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_may_insert_into_every_table(runtime_engines: dict[str, sa.Engine], service: str, table: str):
    as_runtime(runtime_engines, service, f"INSERT INTO {table} SELECT * FROM {table} WHERE false")


@pytest.mark.parametrize(("service", "table"), tables_where("update"))
def test_the_runtime_role_may_update_the_compare_and_set_state(
    runtime_engines: dict[str, sa.Engine], service: str, table: str
):
    column = first_column(service, table)
    as_runtime(runtime_engines, service, f"UPDATE {table} SET {column} = {column}")


@pytest.mark.parametrize(("service", "table"), tables_where("delete"))
def test_the_runtime_role_may_delete_where_its_store_deletes(
    runtime_engines: dict[str, sa.Engine], service: str, table: str
):
    as_runtime(runtime_engines, service, f"DELETE FROM {table}")


def test_the_runtime_role_may_read_the_schema_revision(runtime_engines: dict[str, sa.Engine]):
    """What the Kubernetes wait-for-schema init container reads, with the Deployment's (runtime) URL."""
    for service in STATEFUL:
        assert migrations.current_revision(runtime_engines[service], service) == migrations.head_revision(service)


def test_start_up_migration_as_the_runtime_role_is_a_no_op_once_the_schema_is_at_head(
    runtime_engines: dict[str, sa.Engine],
):
    """AUTO_MIGRATE left on with only the runtime role's URL: nothing to do, nothing refused."""
    for service in STATEFUL:
        assert migrations.upgrade(runtime_engines[service], service) is None


def test_only_the_declared_tables_are_mutable():
    """Every mutable table is named for its reason; the rest are exactly the immutable ones."""
    mutable = {service: sorted(access(service).update | access(service).delete) for service in STATEFUL}
    assert mutable == {
        # the replay cache, and the budget state every gateway replica shares (totals, reservations, rate windows)
        "ai_gateway": ["ai_budget_days", "ai_budget_holds", "ai_call_replays", "ai_rate_callers", "ai_rate_requests"],
        "runs": ["outbox", "run_explanations"],
        "lineage": ["lineage_health", "lineage_status", "lineage_witnessed"],
    }
    assert {service: sorted(access(service).delete) for service in STATEFUL} == {
        "ai_gateway": ["ai_budget_holds", "ai_call_replays", "ai_rate_requests"],
        "runs": [],
        "lineage": [],
    }


# --- what it cannot -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "table"), tables_where("no_update"))
def test_the_runtime_role_cannot_update_a_table_that_is_not_compare_and_set_state(
    runtime_engines: dict[str, sa.Engine], service: str, table: str
):
    column = first_column(service, table)
    assert "permission denied" in refused(runtime_engines, service, f"UPDATE {table} SET {column} = {column}")


@pytest.mark.parametrize(("service", "table"), tables_where("no_delete"))
def test_the_runtime_role_cannot_delete_from_a_table_its_store_never_deletes_from(
    runtime_engines: dict[str, sa.Engine], service: str, table: str
):
    assert "permission denied" in refused(runtime_engines, service, f"DELETE FROM {table}")


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_cannot_truncate_any_table(runtime_engines: dict[str, sa.Engine], service: str, table: str):
    assert "permission denied" in refused(runtime_engines, service, f"TRUNCATE {table}")


@pytest.mark.parametrize("service", STATEFUL)
def test_the_runtime_role_cannot_drop_a_trigger(
    made: Roles, databases: dict[str, Provisioned], runtime_engines: dict[str, sa.Engine], service: str
):
    found = triggers(made.admin, databases[service])
    assert found, "every stateful service has immutability triggers"
    for table, trigger in found:
        assert "must be owner" in refused(runtime_engines, service, f"DROP TRIGGER {trigger} ON {table}")


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_cannot_disable_a_tables_triggers(
    runtime_engines: dict[str, sa.Engine], service: str, table: str
):
    assert "must be owner" in refused(runtime_engines, service, f"ALTER TABLE {table} DISABLE TRIGGER ALL")


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_cannot_alter_a_table(runtime_engines: dict[str, sa.Engine], service: str, table: str):
    assert "must be owner" in refused(runtime_engines, service, f"ALTER TABLE {table} ADD COLUMN planted text")


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_cannot_drop_a_table(runtime_engines: dict[str, sa.Engine], service: str, table: str):
    assert "must be owner" in refused(runtime_engines, service, f"DROP TABLE {table}")


@pytest.mark.parametrize("service", STATEFUL)
def test_the_runtime_role_cannot_create_a_table(runtime_engines: dict[str, sa.Engine], service: str):
    assert "permission denied for schema" in refused(runtime_engines, service, "CREATE TABLE planted (id int)")


@pytest.mark.parametrize("service", STATEFUL)
def test_the_runtime_role_cannot_replace_the_function_behind_the_immutability_triggers(
    runtime_engines: dict[str, sa.Engine], service: str
):
    statement = (
        "CREATE OR REPLACE FUNCTION custody_refuse_change() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RETURN NEW; END $$"
    )
    refused(runtime_engines, service, statement)


@pytest.mark.parametrize("service", STATEFUL)
def test_the_runtime_role_cannot_switch_triggers_off_for_its_session(
    runtime_engines: dict[str, sa.Engine], service: str
):
    message = refused(runtime_engines, service, "SET session_replication_role = replica")
    assert "permission denied to set parameter" in message


@pytest.mark.parametrize("service", STATEFUL)
def test_the_runtime_role_cannot_become_the_owner(
    databases: dict[str, Provisioned], runtime_engines: dict[str, sa.Engine], service: str
):
    message = refused(runtime_engines, service, f"SET ROLE {databases[service].owner.role}")
    assert "permission denied to set role" in message


@pytest.mark.parametrize(("service", "table"), tables_where("any"))
def test_the_runtime_role_cannot_grant_itself_more(
    made: Roles,
    databases: dict[str, Provisioned],
    runtime_engines: dict[str, sa.Engine],
    service: str,
    table: str,
):
    """Without a grant option PostgreSQL only warns; what counts is that nothing beyond the declaration is held."""
    database = databases[service]
    with runtime_engines[service].begin() as connection:
        connection.exec_driver_sql(f"GRANT ALL ON {table} TO {database.runtime.role}")
    holds = {p for p in TABLE_PRIVILEGES if held(made.admin, database, table, p)}
    assert holds == set(access(service).privileges[table])


def test_the_runtime_role_cannot_reset_an_id_sequence(runtime_engines: dict[str, sa.Engine]):
    for sequence in ("lineage_versions_id_seq", "lineage_types_id_seq", "lineage_witness_refusals_id_seq"):
        assert "permission denied" in refused(runtime_engines, "lineage", f"SELECT setval('{sequence}', 1)")


def test_a_services_runtime_role_cannot_read_another_services_tables(
    databases: dict[str, Provisioned], runtime_engines: dict[str, sa.Engine]
):
    lineage = databases["lineage"].schema
    assert "permission denied for schema" in refused(
        runtime_engines, "runs", f"SELECT * FROM {lineage}.lineage_versions"
    )


# --- the migrations that grant it ---------------------------------------------------------------------------------


def test_the_migrations_need_no_superuser_and_the_owner_owns_every_object(
    made: Roles, databases: dict[str, Provisioned]
):
    with made.admin.connect() as connection:
        for database in databases.values():
            assert not connection.execute(
                sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": database.owner.role}
            ).scalar_one()
            owners = connection.execute(
                sa.text(
                    "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema"
                    " UNION SELECT DISTINCT pg_get_userbyid(p.proowner) FROM pg_proc p"
                    " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema"
                ),
                {"schema": database.schema},
            ).scalars()
            assert set(owners) == {database.owner.role}


def acls(admin: sa.Engine, database: Provisioned) -> dict[str, str]:
    """Every relation's and function's privileges, role names made schema-independent."""
    with admin.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT c.relname AS name, c.relacl::text AS acl FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema"
                " UNION ALL SELECT p.proname, p.proacl::text FROM pg_proc p"
                " JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = :schema"
            ),
            {"schema": database.schema},
        ).all()
    replace = {database.owner.role: "<owner>", database.runtime.role: "<runtime>"}
    found = {}
    for row in rows:
        acl = row.acl or ""
        for role, placeholder in replace.items():
            acl = acl.replace(role, placeholder)
        found[row.name] = acl
    return found


@pytest.mark.parametrize("service", STATEFUL)
def test_a_database_upgraded_from_the_first_revision_gets_the_grants_a_fresh_one_gets(
    made: Roles, databases: dict[str, Provisioned], service: str
):
    upgraded = made.provision(service, f"{service}_upgraded")
    engine = create_engine(upgraded.owner_url)
    try:
        # The first revision as a deployment before roles had it: no runtime role granted anything.
        with engine.begin() as connection:
            base = ScriptDirectory.from_config(migrations._config(service)).get_base()
            command.upgrade(migrations._config(service, connection), str(base))
        migrations.upgrade(engine, service, runtime_role=upgraded.runtime.role)
    finally:
        engine.dispose()
    assert acls(made.admin, upgraded) == acls(made.admin, databases[service])


def test_migrating_again_takes_back_a_privilege_granted_by_hand(made: Roles):
    database = made.provision("runs", "runs_drift")
    engine = create_engine(database.owner_url)
    try:
        migrations.upgrade(engine, "runs", runtime_role=database.runtime.role)
        with engine.begin() as connection:
            connection.exec_driver_sql(f"GRANT UPDATE, DELETE ON runs TO {database.runtime.role}")
        assert held(made.admin, database, "runs", "UPDATE")
        migrations.upgrade(engine, "runs", runtime_role=database.runtime.role)
    finally:
        engine.dispose()
    assert not held(made.admin, database, "runs", "UPDATE")
    assert not held(made.admin, database, "runs", "DELETE")


def migrate_refused(database: Provisioned, runtime_role: str) -> str:
    engine = create_engine(database.owner_url)
    try:
        with pytest.raises(migrations.MigrationError) as raised:
            migrations.upgrade(engine, database.service, runtime_role=runtime_role)
        assert migrations.current_revision(engine, database.service) is None, "nothing is committed"
    finally:
        engine.dispose()
    return str(raised.value)


def test_a_runtime_role_that_does_not_exist_is_refused_naming_how_to_create_it(made: Roles):
    database = made.provision("lineage", "lineage_norole")
    message = migrate_refused(database, f"{made.prefix}_nobody")
    assert f"CREATE ROLE {made.prefix}_nobody LOGIN" in message


def test_a_superuser_runtime_role_is_refused(made: Roles):
    database = made.provision("lineage", "lineage_super")
    mighty = made.role("mighty", "SUPERUSER")
    message = migrate_refused(database, mighty.role)
    assert "is a superuser" in message and "may also" in message


def test_a_runtime_role_that_may_create_roles_is_refused(made: Roles):
    database = made.provision("runs", "runs_createrole")
    creator = made.role("creator", "CREATEROLE")
    assert "may create roles" in migrate_refused(database, creator.role)


def test_a_runtime_role_that_is_a_member_of_the_owner_is_refused(made: Roles):
    database = made.provision("ai_gateway", "gateway_member")
    with made.admin.begin() as connection:
        connection.exec_driver_sql(f"GRANT {database.owner.role} TO {database.runtime.role}")
    message = migrate_refused(database, database.runtime.role)
    assert "is a member of its owner" in message


def test_a_schema_where_everyone_may_create_objects_is_refused(made: Roles):
    database = made.provision("runs", "runs_public_create")
    with made.admin.begin() as connection:
        connection.exec_driver_sql(f"GRANT CREATE ON SCHEMA {database.schema} TO PUBLIC")
    message = migrate_refused(database, database.runtime.role)
    assert f"REVOKE CREATE ON SCHEMA {database.schema} FROM PUBLIC" in message


def test_a_table_privilege_granted_to_public_is_refused(made: Roles):
    """A grant to PUBLIC that the migration does not manage (an operator's, say) counts for the runtime role."""
    database = made.provision("runs", "runs_public_grant")
    engine = create_engine(database.owner_url)
    try:
        migrations.upgrade(engine, "runs")
        with engine.begin() as connection:
            connection.exec_driver_sql("GRANT TRUNCATE ON runs TO PUBLIC")
        with pytest.raises(migrations.MigrationError, match="may also TRUNCATE on runs"):
            migrations.upgrade(engine, "runs", runtime_role=database.runtime.role)
    finally:
        engine.dispose()


@pytest.mark.parametrize("schema_usage", [True, False], ids=["with-schema-usage", "without-schema-usage"])
def test_the_runtime_role_cannot_run_the_migrations_and_is_told_what_to_do(made: Roles, schema_usage: bool):
    database = made.provision("lineage", f"lineage_selfmigrate_{int(schema_usage)}")
    if schema_usage:  # as on PostgreSQL's default public schema
        with made.admin.begin() as connection:
            connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA {database.schema} TO {database.runtime.role}")
    engine = create_engine(database.runtime_url)
    try:
        with pytest.raises(migrations.MigrationError) as raised:
            migrations.upgrade(engine, "lineage")
    finally:
        engine.dispose()
    message = str(raised.value)
    assert f"the database role {database.runtime.role!r} may not migrate this schema" in message
    reason = "permission denied for schema" if schema_usage else "no schema has been selected to create in"
    assert reason in message
    assert "CUSTODY_LINEAGE_MIGRATION_DATABASE_URL" in message and "custody migrate lineage" in message


def test_migrations_set_role_to_the_owner_role_so_it_owns_what_a_member_creates(made: Roles):
    database = made.provision("ai_gateway", "gateway_dba")
    dba = made.role("dba")
    with made.admin.begin() as connection:
        connection.exec_driver_sql(f"GRANT {database.owner.role} TO {dba.role}")
    engine = create_engine(database.url(dba))
    try:
        migrations.upgrade(engine, "ai_gateway", runtime_role=database.runtime.role, owner_role=database.owner.role)
    finally:
        engine.dispose()
    assert schema_owners(made.admin, database.schema) == {database.owner.role}
