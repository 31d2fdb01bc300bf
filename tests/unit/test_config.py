"""Configuration: CUSTODY_<SERVICE>_* variables over an optional YAML file over defaults, validated at start."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.registry import settings_class
from services.common.catalog import SERVICES
from services.common.config import ConfigError
from services.lineage.config import LineageSettings
from services.runs.config import RunsSettings


def test_defaults_listen_on_the_documented_port() -> None:
    for name, spec in SERVICES.items():
        assert settings_class(name).load(environ={}).port == spec.default_port


def test_environment_overrides_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "runs.yaml"
    config.write_text("port: 6000\nlog_level: DEBUG\n")
    settings = RunsSettings.load(config, {"CUSTODY_RUNS_PORT": "6001"})
    assert (settings.port, settings.log_level) == (6001, "DEBUG")


def test_config_file_can_be_named_by_variable(tmp_path: Path) -> None:
    config = tmp_path / "runs.yaml"
    config.write_text("port: 6002\n")
    assert RunsSettings.load(environ={"CUSTODY_RUNS_CONFIG_FILE": str(config)}).port == 6002


def test_unknown_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="CUSTODY_RUNS_PROT: unknown setting"):
        RunsSettings.load(environ={"CUSTODY_RUNS_PROT": "1"})


def test_invalid_value_is_an_error_naming_the_variable_and_value() -> None:
    with pytest.raises(ConfigError, match=r"CUSTODY_RUNS_PORT: .*65535 \(got '70000'\)"):
        RunsSettings.load(environ={"CUSTODY_RUNS_PORT": "70000"})


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        RunsSettings.load(environ={"CUSTODY_RUNS_PORT": "x", "CUSTODY_RUNS_LOG_LEVEL": "LOUD"})
    assert "CUSTODY_RUNS_PORT" in str(raised.value) and "CUSTODY_RUNS_LOG_LEVEL" in str(raised.value)


def test_invalid_secret_is_named_but_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "runs.yaml"
    config.write_text("token: [not, a, string]\n")
    with pytest.raises(ConfigError) as raised:
        RunsSettings.load(config, {})
    assert "token" in str(raised.value) and "not" not in str(raised.value).split("token", 1)[1]


def test_unknown_file_key_is_an_error_naming_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "runs.yaml"
    config.write_text("prot: 1\n")
    with pytest.raises(ConfigError, match=r"runs\.yaml: prot: unknown setting"):
        RunsSettings.load(config, {})


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        RunsSettings.load(tmp_path / "absent.yaml", {})


def test_another_services_variables_are_not_this_services_business() -> None:
    assert RunsSettings.load(environ={"CUSTODY_LINEAGE_PORT": "1"}).port == 50052


def test_stateful_services_default_to_sqlite_under_the_state_dir() -> None:
    settings = LineageSettings.load(environ={"CUSTODY_LINEAGE_STATE_DIR": "/srv/custody"})
    assert settings.resolved_database_url == "sqlite:////srv/custody/lineage.db"


def test_peer_addresses_are_declared_exactly_for_the_call_graph() -> None:
    for name, spec in SERVICES.items():
        fields = {f.removesuffix("_address") for f in settings_class(name).model_fields if f.endswith("_address")}
        assert fields == set(spec.calls), name


def test_asking_for_a_peer_outside_the_call_graph_is_a_bug() -> None:
    with pytest.raises(ValueError, match="does not call"):
        RunsSettings.load(environ={}).peer_address("art_studio")


# --- transport: TLS, the peer port, plaintext only where nobody else can listen ------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "runs.internal"])
def test_a_non_loopback_host_without_tls_is_refused_naming_both_ways_out(host: str) -> None:
    with pytest.raises(ConfigError) as raised:
        RunsSettings.load(environ={"CUSTODY_RUNS_HOST": host})
    message = str(raised.value)
    assert "CUSTODY_RUNS_HOST" in message and "CUSTODY_RUNS_TLS_DIR" in message
    assert "CUSTODY_RUNS_ALLOW_PLAINTEXT=true" in message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_a_loopback_host_may_serve_plaintext(host: str) -> None:
    assert RunsSettings.load(environ={"CUSTODY_RUNS_HOST": host}).tls_dir is None


def test_plaintext_on_any_interface_needs_saying_so() -> None:
    settings = RunsSettings.load(environ={"CUSTODY_RUNS_HOST": "0.0.0.0", "CUSTODY_RUNS_ALLOW_PLAINTEXT": "true"})
    assert settings.allow_plaintext and settings.tls_dir is None


def test_with_tls_any_interface_is_fine_and_the_peer_port_is_port_plus_100(tmp_path: Path) -> None:
    settings = RunsSettings.load(environ={"CUSTODY_RUNS_HOST": "0.0.0.0", "CUSTODY_RUNS_TLS_DIR": str(tmp_path)})
    assert settings.resolved_peer_port == 50152
    assert settings.peer_listen_address == "0.0.0.0:50152"


def test_with_tls_peers_are_called_at_their_peer_ports_unless_configured(tmp_path: Path) -> None:
    settings = RunsSettings.load(
        environ={"CUSTODY_RUNS_TLS_DIR": str(tmp_path), "CUSTODY_RUNS_LINEAGE_ADDRESS": "lineage:7000"}
    )
    assert settings.peer_address("ai_gateway") == "127.0.0.1:50151"
    assert settings.peer_address("lineage") == "lineage:7000"
    assert RunsSettings.load(environ={}).peer_address("ai_gateway") == "127.0.0.1:50051"


def test_a_peer_port_without_tls_is_refused() -> None:
    with pytest.raises(ConfigError, match="CUSTODY_RUNS_PEER_PORT is set but CUSTODY_RUNS_TLS_DIR is not"):
        RunsSettings.load(environ={"CUSTODY_RUNS_PEER_PORT": "6000"})


def test_the_three_ports_must_differ(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must differ"):
        RunsSettings.load(environ={"CUSTODY_RUNS_TLS_DIR": str(tmp_path), "CUSTODY_RUNS_HEALTH_PORT": "50152"})


def test_a_trust_domain_must_be_a_spiffe_trust_domain() -> None:
    with pytest.raises(ConfigError, match="CUSTODY_RUNS_TRUST_DOMAIN"):
        RunsSettings.load(environ={"CUSTODY_RUNS_TRUST_DOMAIN": "Custody/evil"})


@pytest.mark.parametrize(
    "value",
    ["127.0.0.1:50054,127.0.0.1:50064", "10.0.0.1:50054, 10.0.0.2:50054", "[::1]:50054,[::1]:50064", "lineage:50054"],
)
def test_a_peer_address_may_list_replicas(value: str) -> None:
    settings = RunsSettings.load(environ={"CUSTODY_RUNS_LINEAGE_ADDRESS": value})
    assert settings.peer_address("lineage") == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("runs-0.runs:50052,runs-1.runs:50052", "does not name an IP address.*one DNS name that resolves to every"),
        ("127.0.0.1:50052,127.0.0.1", "not host:port with a port from 1 to 65535"),
        ("127.0.0.1:50052,[::1]:50052", "mixes IPv4 and IPv6"),
        ("::1:50052,::1:50062", "in brackets"),
    ],
)
def test_a_list_of_replicas_that_grpc_cannot_call_is_refused_at_start_naming_the_variable(
    value: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=f"CUSTODY_ART_STUDIO_RUNS_ADDRESS: .*{problem}"):
        settings_class("art_studio").load(environ={"CUSTODY_ART_STUDIO_RUNS_ADDRESS": value})
