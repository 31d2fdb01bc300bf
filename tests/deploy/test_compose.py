"""deploy/compose/compose.yaml: valid against the Compose Specification, and the same deployment rules as
Kubernetes; each check catches the breakage it exists for, on a copy of the file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from services.common.catalog import CONSOLE, SERVICES
from tests.deploy import checks


def test_the_compose_file_is_valid_against_the_compose_specification():
    assert checks.compose_schema_problems(checks.COMPOSE_FILE) == []


def test_compose_runs_every_server_the_console_and_every_migration(compose: dict[str, Any]):
    roles = {checks.compose_role(d) for d in compose["services"].values()} - {None}
    expected = {("serve", name) for name in SERVICES} | {("migrate", n) for n, s in SERVICES.items() if s.stateful}
    assert roles == expected | {("serve", CONSOLE)}


def test_every_reference_resolves_and_servers_wait_for_peers_and_migrations(compose: dict[str, Any]):
    assert checks.compose_reference_problems(compose) == []


def test_healthchecks_call_custody_health_for_each_server(compose: dict[str, Any]):
    assert checks.compose_healthcheck_problems(compose) == []


def test_compose_runs_only_the_project_image_and_the_allowed_third_party_ones(compose: dict[str, Any]):
    assert checks.compose_image_problems(compose, checks.project_version()) == []


def test_secrets_reach_only_the_service_they_belong_to(compose: dict[str, Any]):
    assert checks.compose_secret_problems(compose) == []


def test_compose_settings_are_known_and_the_containers_read_only(compose: dict[str, Any]):
    assert checks.compose_settings_problems(compose) == []


def test_every_server_serves_tls_from_a_private_copy_of_its_own_certificate(compose: dict[str, Any]):
    assert checks.compose_tls_problems(compose) == []


def test_each_authority_signs_with_its_own_key_and_logs_to_its_own_volume(compose: dict[str, Any]):
    assert checks.compose_ledger_problems(compose) == []


def test_the_collector_receives_from_the_services_and_exports_to_jaeger(compose: dict[str, Any]):
    config = yaml.safe_load(checks.OTEL_COLLECTOR_CONFIG.read_text(encoding="utf-8"))
    assert checks.otel_collector_problems(config, compose) == []


def test_the_postgres_init_hook_reads_mounted_secrets_and_sets_every_password_the_sql_uses(compose: dict[str, Any]):
    postgres = checks.DEPLOY_DIR / "compose" / "postgres"
    hook = (postgres / "10-custody-databases.sh").read_text(encoding="utf-8")
    sql = (postgres / "custody-databases.sql").read_text(encoding="utf-8")
    read = {f"postgres_{name}_password" for name in re.findall(r"\$\(secret (\w+)\)", hook)}
    assert read and read <= set(compose["services"]["postgres"]["secrets"])
    assert set(re.findall(r"--set (\w+)=", hook)) == set(re.findall(r":'(\w+)'", sql))
    for name in checks.AUTHORITIES:
        assert {f"postgres_{name}_password", f"postgres_{name}_runtime_password"} <= read


def test_prometheus_scrapes_every_server_at_its_metrics_port(compose: dict[str, Any]):
    config = yaml.safe_load(checks.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    assert checks.prometheus_problems(config, compose) == []


def test_the_dashboard_queries_the_provisioned_prometheus_for_declared_series_only():
    dashboard = json.loads(checks.GRAFANA_DASHBOARD.read_text(encoding="utf-8"))
    datasources = yaml.safe_load(checks.GRAFANA_DATASOURCES.read_text(encoding="utf-8"))
    assert checks.dashboard_problems(dashboard, datasources) == []


def test_the_collector_takes_the_services_otlp_metrics():
    config = yaml.safe_load(checks.OTEL_COLLECTOR_CONFIG.read_text(encoding="utf-8"))
    assert "otlp" in config["service"]["pipelines"]["metrics"]["receivers"]


# --- each check catches what it exists for ------------------------------------------------------------------------


def test_a_server_prometheus_does_not_scrape_is_reported(compose: dict[str, Any]):
    config = yaml.safe_load(checks.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["scrape_configs"][0]["dns_sd_configs"][0]["names"].remove("lineage")
    assert checks.prometheus_problems(config, compose) == ["lineage: Prometheus does not scrape lineage:9464"]


def test_a_server_without_a_metrics_port_is_reported(compose: dict[str, Any]):
    config = yaml.safe_load(checks.PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    del compose["services"]["runs"]["environment"]["CUSTODY_RUNS_METRICS_PORT"]
    assert checks.prometheus_problems(config, compose) == [
        "runs: CUSTODY_RUNS_METRICS_PORT is not set: it serves no metrics"
    ]


def test_a_dashboard_panel_querying_an_undeclared_series_is_reported():
    dashboard = json.loads(checks.GRAFANA_DASHBOARD.read_text(encoding="utf-8"))
    datasources = yaml.safe_load(checks.GRAFANA_DATASOURCES.read_text(encoding="utf-8"))
    panel = next(p for p in dashboard["panels"] if p["type"] == "timeseries")
    panel["targets"][0]["expr"] = "sum(rate(custody_gateway_token_total[5m]))"
    assert checks.dashboard_problems(dashboard, datasources) == [
        f"panel {panel['title']!r}: 'custody_gateway_token_total' is not a series services/common/metrics.py declares"
    ]


def test_the_schema_validation_rejects_a_misspelled_key(tmp_path: Path):
    text = checks.COMPOSE_FILE.read_text(encoding="utf-8").replace("    read_only: true\n", "    readonly: true\n", 1)
    broken = tmp_path / "compose.yaml"
    broken.write_text(text)
    problems = checks.compose_schema_problems(broken)
    assert any("readonly" in p for p in problems), problems


def test_a_depends_on_target_that_does_not_exist_is_reported(compose: dict[str, Any]):
    compose["services"]["art-studio"]["depends_on"]["lineage-db"] = {"condition": "service_healthy"}
    assert checks.compose_reference_problems(compose) == ["art-studio: depends_on 'lineage-db', which is not a service"]


def test_a_server_not_waiting_for_its_migration_is_reported(compose: dict[str, Any]):
    del compose["services"]["lineage"]["depends_on"]["migrate-lineage"]
    assert checks.compose_reference_problems(compose) == [
        "lineage: must depend on `migrate lineage` with service_completed_successfully"
    ]


def test_a_server_not_waiting_for_a_peer_it_calls_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["depends_on"]["ai-gateway"] = {"condition": "service_started"}
    assert checks.compose_reference_problems(compose) == [
        "runs: must depend on ai_gateway's server with condition service_healthy"
    ]


def test_an_undeclared_secret_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["secrets"].append("runs_database_url")
    assert checks.compose_reference_problems(compose) == [
        "runs: secret 'runs_database_url' is not declared under secrets"
    ]


def test_a_healthcheck_on_another_port_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["healthcheck"]["test"][-1] = "127.0.0.1:50051"
    problems = checks.compose_healthcheck_problems(compose)
    assert len(problems) == 1 and problems[0].startswith("runs: healthcheck test is"), problems


def test_the_provider_key_secret_given_to_runs_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["secrets"].append(checks.COMPOSE_PROVIDER_KEY_SECRET)
    assert checks.compose_secret_problems(compose) == ["runs: gets the provider key (openai_api_key / OPENAI_API_KEY)"]


def test_the_provider_key_variable_given_to_art_studio_is_reported(compose: dict[str, Any]):
    compose["services"]["art-studio"]["environment"][checks.PROVIDER_KEY_ENV] = "sk-..."
    assert checks.compose_secret_problems(compose) == [
        "art-studio: gets the provider key (openai_api_key / OPENAI_API_KEY)"
    ]


def test_a_server_given_its_migrations_owner_url_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["secrets"].append("runs_migration_config")
    assert checks.compose_secret_problems(compose) == ["runs: reads runs_migration_config (the owner role's URL)"]


def test_a_server_given_a_migration_url_variable_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["environment"]["CUSTODY_LINEAGE_MIGRATION_DATABASE_URL"] = "postgresql://..."
    assert checks.compose_secret_problems(compose) == [
        "lineage: a server gets a migration URL; it connects as the runtime role only"
    ]


def test_a_migration_given_the_servers_config_is_reported(compose: dict[str, Any]):
    compose["services"]["migrate-runs"]["secrets"] = ["runs_config"]
    assert checks.compose_secret_problems(compose) == [
        "migrate-runs: reads runs_config (the server's token and runtime URL)",
        "migrate-runs: lacks runs_migration_config (the owner role's URL it migrates as)",
    ]


def test_another_services_config_secret_is_reported(compose: dict[str, Any]):
    compose["services"]["art-studio"]["secrets"].append("runs_config")
    assert checks.compose_secret_problems(compose) == ["art-studio: reads runs_config (another service's token)"]


def test_an_unknown_setting_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["environment"]["CUSTODY_LINEAGE_AUTOMIGRATE"] = "false"
    problems = checks.compose_settings_problems(compose)
    assert problems == [
        "lineage: CUSTODY_LINEAGE_AUTOMIGRATE is not a setting of lineage (custody exits with a configuration error)"
    ]


def test_a_stateful_server_migrating_itself_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["environment"]["CUSTODY_RUNS_AUTO_MIGRATE"] = "true"
    assert checks.compose_settings_problems(compose) == [
        "runs: CUSTODY_RUNS_AUTO_MIGRATE must be false (the migration job migrates)"
    ]


def test_a_peer_addressed_by_the_wrong_name_is_reported(compose: dict[str, Any]):
    compose["services"]["art-studio"]["environment"]["CUSTODY_ART_STUDIO_AI_GATEWAY_ADDRESS"] = "ai_gateway:50151"
    assert checks.compose_settings_problems(compose) == [
        "art-studio: CUSTODY_ART_STUDIO_AI_GATEWAY_ADDRESS is 'ai_gateway:50151', expected 'ai-gateway:50151'"
    ]


def test_a_writable_custody_container_is_reported(compose: dict[str, Any]):
    compose["services"]["migrate-runs"]["read_only"] = False
    assert checks.compose_settings_problems(compose) == ["migrate-runs: read_only must be true"]


def test_a_foreign_image_for_a_custody_service_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["image"] = "python:3.11-slim"
    assert checks.compose_image_problems(compose, checks.project_version()) == [
        f"runs: runs 'python:3.11-slim', not the project's image custody:{checks.project_version()}"
    ]


def test_an_unlisted_third_party_image_is_reported(compose: dict[str, Any]):
    compose["services"]["redis"] = {"image": "redis:7"}
    assert checks.compose_image_problems(compose, checks.project_version()) == [
        "redis: runs 'redis:7', which is neither the project's image nor an allowed one"
    ]


def test_a_pipeline_naming_an_undefined_exporter_is_reported(compose: dict[str, Any]):
    config = yaml.safe_load(checks.OTEL_COLLECTOR_CONFIG.read_text(encoding="utf-8"))
    config["service"]["pipelines"]["traces"]["exporters"].append("debug")
    assert checks.otel_collector_problems(config, compose) == ["pipeline traces: exporter 'debug' is not defined"]


def test_an_undeclared_config_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["configs"].append("runs_vkey")
    assert checks.compose_reference_problems(compose) == ["lineage: config 'runs_vkey' is not declared under configs"]


# --- the ledger checks catch what they exist for --------------------------------------------------------------------


def test_another_authoritys_ledger_key_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["secrets"].append("lineage_ledger_key")
    assert checks.compose_secret_problems(compose) == ["runs: reads lineage_ledger_key (lineage's ledger signing key)"]


def test_a_ledger_key_given_to_a_migration_is_reported(compose: dict[str, Any]):
    compose["services"]["migrate-runs"]["secrets"].append("runs_ledger_key")
    assert checks.compose_secret_problems(compose) == [
        "migrate-runs: reads runs_ledger_key (runs's ledger signing key)"
    ]


def test_swapped_key_files_are_reported(compose: dict[str, Any]):
    files = compose["secrets"]
    files["runs_ledger_key"], files["lineage_ledger_key"] = files["lineage_ledger_key"], files["runs_ledger_key"]
    assert checks.compose_ledger_problems(compose) == [
        "runs: secret runs_ledger_key is '../../var/compose/keys/lineage.ledger.key', not keys/runs.ledger.key",
        "lineage: secret lineage_ledger_key is '../../var/compose/keys/runs.ledger.key', not keys/lineage.ledger.key",
    ]


def test_an_authority_reading_its_key_straight_from_the_bind_mount_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["environment"]["CUSTODY_LINEAGE_LEDGER_KEY_FILE"] = "/run/secrets/ledger_key"
    assert checks.compose_ledger_problems(compose) == [
        "lineage: CUSTODY_LINEAGE_LEDGER_KEY_FILE is the secret's bind mount, which keeps its host mode (0644, "
        "init-secrets.sh) and which lineage refuses: the entry point must copy it to a private file"
    ]


def test_an_entry_point_that_does_not_copy_the_key_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["entrypoint"] = ["custody"]
    assert checks.compose_ledger_problems(compose) == [
        "runs: CUSTODY_RUNS_LEDGER_KEY_FILE (/tmp/ledger.key) is not a copy the entry point makes of "
        "/run/secrets/ledger_key (umask 077 && cat /run/secrets/ledger_key > /tmp/ledger.key)"
    ]


def test_a_key_copy_without_a_private_umask_is_reported(compose: dict[str, Any]):
    entrypoint = compose["services"]["ai-gateway"]["entrypoint"]
    entrypoint[2] = entrypoint[2].replace("umask 077 && ", "")
    problems = checks.compose_ledger_problems(compose)
    assert len(problems) == 1 and problems[0].startswith("ai-gateway: CUSTODY_AI_GATEWAY_LEDGER_KEY_FILE"), problems


def test_a_checkpoint_log_in_the_containers_tmpfs_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["environment"]["CUSTODY_RUNS_LEDGER_CHECKPOINT_DIR"] = "/tmp/ledger"
    assert checks.compose_ledger_problems(compose) == [
        "runs: CUSTODY_RUNS_LEDGER_CHECKPOINT_DIR (/tmp/ledger) is not on a named volume: the checkpoint log must "
        "outlive it"
    ]


def test_another_service_mounting_a_checkpoint_log_is_reported(compose: dict[str, Any]):
    compose["services"]["art-studio"]["volumes"].append("runs-ledger:/var/lib/runs-ledger")
    assert checks.compose_ledger_problems(compose) == ["art-studio: mounts runs's checkpoint log runs-ledger"]


def test_a_witness_without_a_peers_verifier_key_is_reported(compose: dict[str, Any]):
    configs = compose["services"]["lineage"]["configs"]
    configs[:] = [c for c in configs if c["source"] != "runs_ledger_vkey"]
    assert checks.compose_ledger_problems(compose) == [
        "lineage: /etc/custody/ledger-peers/runs.ledger.vkey is not a config of keys/runs.ledger.vkey: lineage "
        "cannot check runs's checkpoints"
    ]


def test_a_private_key_as_a_config_is_reported(compose: dict[str, Any]):
    compose["configs"]["runs_ledger_vkey"]["file"] = "../../var/compose/keys/runs.ledger.key"
    assert checks.compose_ledger_problems(compose) == [
        "config runs_ledger_vkey: ../../var/compose/keys/runs.ledger.key is a private key, and configs are not secret",
        "lineage: /etc/custody/ledger-peers/runs.ledger.vkey is not a config of keys/runs.ledger.vkey: lineage "
        "cannot check runs's checkpoints",
    ]


def test_bind_mounting_the_key_directory_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["volumes"].append("../../var/compose/keys:/etc/custody/ledger-peers:ro")
    assert checks.compose_ledger_problems(compose) == [
        "lineage: bind-mounts ../../var/compose/keys, which holds every authority's private key"
    ]


# --- the TLS checks catch what they exist for ---------------------------------------------------------------------


def test_a_server_without_tls_is_refused_in_the_services_own_words(compose: dict[str, Any]):
    del compose["services"]["runs"]["environment"]["CUSTODY_RUNS_TLS_DIR"]
    del compose["services"]["runs"]["environment"]["CUSTODY_RUNS_PEER_PORT"]
    problems = checks.compose_settings_problems(compose)
    assert len(problems) == 1 and "CUSTODY_RUNS_HOST is '0.0.0.0', not a loopback address" in problems[0], problems


def test_a_healthcheck_without_the_ca_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["healthcheck"]["test"] = compose["services"]["lineage"]["healthcheck"]["test"][:-2]
    problems = checks.compose_healthcheck_problems(compose)
    assert len(problems) == 1 and problems[0].startswith("lineage: healthcheck test is"), problems


def test_another_services_tls_key_is_reported(compose: dict[str, Any]):
    compose["services"]["art-studio"]["secrets"].append("runs_tls_key")
    assert checks.compose_secret_problems(compose) == ["art-studio: reads runs_tls_key (runs's TLS key)"]


def test_swapped_tls_keys_are_reported(compose: dict[str, Any]):
    files = compose["secrets"]
    files["runs_tls_key"], files["lineage_tls_key"] = files["lineage_tls_key"], files["runs_tls_key"]
    assert checks.compose_tls_problems(compose) == [
        "runs: secret runs_tls_key is not tls/runs/tls.key",
        "lineage: secret lineage_tls_key is not tls/lineage/tls.key",
    ]


def test_a_tls_key_read_straight_from_its_bind_mount_is_reported(compose: dict[str, Any]):
    entrypoint = compose["services"]["art-studio"]["entrypoint"]
    entrypoint[2] = entrypoint[2].replace("cat /run/secrets/tls_key > /tmp/tls/tls.key && ", "")
    assert checks.compose_tls_problems(compose) == [
        "art-studio: the entry point does not copy /run/secrets/tls_key to /tmp/tls/tls.key"
    ]


def test_a_tls_copy_without_a_private_umask_is_reported(compose: dict[str, Any]):
    entrypoint = compose["services"]["ai-gateway"]["entrypoint"]
    entrypoint[2] = entrypoint[2].replace("umask 077 && mkdir", "mkdir")
    assert checks.compose_tls_problems(compose) == [
        "ai-gateway: the entry point does not make /tmp/tls under umask 077"
    ]


def test_mounting_the_ca_key_is_reported(compose: dict[str, Any]):
    compose["secrets"]["custody_ca_key"] = {"file": "../../var/compose/tls/ca/ca.key"}
    assert checks.compose_tls_problems(compose) == [
        "secret custody_ca_key: ../../var/compose/tls/ca/ca.key is in tls/ca/, the CA's own directory"
    ]


def test_a_peer_port_published_on_the_host_is_reported(compose: dict[str, Any]):
    compose["services"]["lineage"]["ports"].append("127.0.0.1:50154:50154")
    assert checks.compose_settings_problems(compose) == [
        "lineage: publishes container port 50154, the catalog port is 50054"
    ]


# --- the review console -------------------------------------------------------------------------------------------


def test_the_console_is_published_on_the_hosts_loopback_at_its_port(compose: dict[str, Any]):
    assert compose["services"]["console"]["ports"] == [f"127.0.0.1:{checks.CONSOLE_DEFAULT_PORT}:50080"]


def test_a_console_not_waiting_for_a_service_is_reported(compose: dict[str, Any]):
    del compose["services"]["console"]["depends_on"]["art-studio"]
    assert checks.compose_reference_problems(compose) == [
        "console: must depend on art_studio's server with condition service_healthy"
    ]


def test_a_console_healthcheck_that_does_not_verify_the_certificate_is_reported(compose: dict[str, Any]):
    test = compose["services"]["console"]["healthcheck"]["test"]
    test[-1] = test[-1].replace(
        "ssl.create_default_context(cafile='/tmp/tls/ca.crt')", "ssl._create_unverified_context()"
    )
    problems = checks.compose_healthcheck_problems(compose)
    assert len(problems) == 1 and problems[0].startswith("console: healthcheck test is"), problems


def test_the_credentials_given_to_the_console_are_reported(compose: dict[str, Any]):
    compose["services"]["console"]["secrets"].append("credentials")
    assert checks.compose_secret_problems(compose) == [
        "console: the console reads credentials; it authenticates no one (the services do)"
    ]


def test_a_service_token_given_to_the_console_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["secrets"].append("runs_config")
    assert checks.compose_secret_problems(compose) == ["console: reads runs_config (another service's token)"]


def test_a_services_tls_key_given_to_the_console_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["secrets"].append("lineage_tls_key")
    assert checks.compose_secret_problems(compose) == ["console: reads lineage_tls_key (lineage's TLS key)"]


def test_the_consoles_tls_key_given_to_a_service_is_reported(compose: dict[str, Any]):
    compose["services"]["runs"]["secrets"].append("console_tls_key")
    assert checks.compose_secret_problems(compose) == ["runs: reads console_tls_key (console's TLS key)"]


def test_a_console_calling_a_peer_port_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["environment"]["CUSTODY_CONSOLE_LINEAGE_ADDRESS"] = "lineage:50154"
    assert checks.compose_settings_problems(compose) == [
        "console: CUSTODY_CONSOLE_LINEAGE_ADDRESS is 'lineage:50154', expected 'lineage:50054'"
    ]


def test_a_console_setting_of_another_process_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["environment"]["CUSTODY_RUNS_TOKEN"] = "cst_..."
    assert checks.compose_settings_problems(compose) == [
        "console: CUSTODY_RUNS_TOKEN is runs's setting, not console's (custody exits with a configuration error)"
    ]


def test_a_console_published_on_every_interface_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["ports"] = ["50080:50080"]
    assert checks.compose_settings_problems(compose) == [
        "console: publishes 50080:50080 beyond the host's loopback (127.0.0.1)"
    ]


def test_a_console_without_its_tls_key_copy_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["entrypoint"] = ["custody"]
    problems = checks.compose_tls_problems(compose)
    assert problems[0] == "console: the entry point does not make /tmp/tls under umask 077", problems


def test_a_console_serving_another_certificate_is_reported(compose: dict[str, Any]):
    compose["configs"]["console_tls_crt"]["file"] = "../../var/compose/tls/lineage/tls.crt"
    assert checks.compose_tls_problems(compose) == ["console: config console_tls_crt is not tls/console/tls.crt"]


def test_a_writable_console_is_reported(compose: dict[str, Any]):
    compose["services"]["console"]["read_only"] = False
    assert checks.compose_settings_problems(compose) == ["console: read_only must be true"]


def test_the_s3_override_keeps_every_deployment_rule_and_gives_runs_alone_its_s3_credentials():
    merged = checks.load_compose_with(checks.COMPOSE_S3_OVERRIDE)
    problems = (
        checks.compose_reference_problems(merged)
        + checks.compose_image_problems(merged, checks.project_version())
        + checks.compose_secret_problems(merged)
        + checks.compose_settings_problems(merged)
        + checks.compose_tls_problems(merged)
    )
    assert problems == []
    runs = merged["services"]["runs"]
    assert runs["environment"]["CUSTODY_RUNS_BLOB_BACKEND"] == "s3"
    holders = {n for n, d in merged["services"].items() if "runs_s3_credentials" in checks._secret_names(d)}
    assert holders == {"runs"}
    identities = {n for n, d in merged["services"].items() if "seaweedfs_s3_identities" in checks._secret_names(d)}
    assert identities == {"seaweedfs"}
