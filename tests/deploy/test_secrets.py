"""The two scripts that turn `custody init` output into deployment secrets, run for real into temporary
directories: what they write is exactly what the manifests mount, and the tokens in it authenticate as the
services they belong to."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest

from services.cli.registry import settings_class
from services.common.catalog import SERVICES
from services.common.config import CONFIG_FILE_SUFFIX, StatefulServiceSettings, env_prefix
from services.common.identity import Credentials, Principal
from tests.deploy import checks
from tests.deploy.checks import Manifest

K8S_SECRETS_SCRIPT = checks.K8S_DIR / "secrets.sh"
COMPOSE_SECRETS_SCRIPT = checks.DEPLOY_DIR / "compose" / "init-secrets.sh"
DATABASE_URLS = {
    f"{name.upper()}_DATABASE_URL": f"postgresql://custody_{name}:pw@db.example:5432/custody_{name}"
    for name, spec in SERVICES.items()
    if spec.stateful
}


def custody_cli() -> Path:
    return checks.venv_tool("custody")


def run_script(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    environ = {"PATH": os.environ["PATH"], "CUSTODY": str(custody_cli()), "KUBECTL": str(checks.venv_tool("kubectl"))}
    return subprocess.run(
        ["bash", str(script), *args], env=environ | env, capture_output=True, text=True, timeout=120, check=False
    )


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `custody init` writes: credentials, config/<service>.yaml with each token, operator.token."""
    root = tmp_path_factory.mktemp("k8s-state")
    subprocess.run([str(custody_cli()), "init", "--state-dir", str(root)], check=True, capture_output=True)
    return root


def k8s_secrets(state_dir: Path, **env: str) -> dict[str, dict[str, str]]:
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=DATABASE_URLS | env)
    assert result.returncode == 0, result.stderr
    return {
        doc["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
        for doc in checks.load_manifests(result.stdout)
    }


def test_the_kubernetes_secrets_are_exactly_those_the_overlays_reference(
    state_dir: Path, rendered: dict[str, list[Manifest]], overlay: str
):
    assert set(k8s_secrets(state_dir)) == checks.referenced_secrets(rendered[overlay])


def test_the_kubernetes_secrets_pass_the_schemas_strictly(state_dir: Path, tmp_path: Path):
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=DATABASE_URLS)
    path = tmp_path / "secrets.yaml"
    path.write_text(result.stdout)
    assert checks.kubernetes_schema_problems(path) == []


def test_each_token_secret_authenticates_as_its_own_service(state_dir: Path):
    secrets = k8s_secrets(state_dir)
    credentials = Credentials.load(write(state_dir / "from-secret", secrets[checks.CREDENTIALS_SECRET]["credentials"]))
    for name in SERVICES:
        token = secrets[f"{checks.k8s_name(name)}-token"]["token"]
        assert credentials.authenticate(f"Bearer {token}") == Principal.service(name)


def test_each_stateful_service_gets_its_own_page_token_key_from_its_config(state_dir: Path):
    secrets = k8s_secrets(state_dir)
    keys = {}
    for name, spec in SERVICES.items():
        if spec.stateful:
            settings = settings_class(name).load(state_dir / "config" / f"{name}.yaml", environ={})
            assert isinstance(settings, StatefulServiceSettings) and settings.page_token_key is not None
            keys[name] = settings.page_token_key.get_secret_value()
            assert secrets[f"{checks.k8s_name(name)}-page-token"] == {"key": keys[name]}
    assert len(set(keys.values())) == len(keys) == 3


def test_the_kubernetes_secrets_script_prints_nothing_when_a_page_token_key_is_missing(state_dir: Path, tmp_path: Path):
    copy = tmp_path / "state"
    subprocess.run(["cp", "-r", str(state_dir), str(copy)], check=True)
    config = copy / "config" / "lineage.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(True) if "page_token_key" not in line))
    result = run_script(K8S_SECRETS_SCRIPT, str(copy), env=DATABASE_URLS)
    assert (result.returncode, result.stdout) == (1, "")
    assert "no page_token_key in" in result.stderr


def test_the_provider_key_file_lands_in_the_provider_secret_only(state_dir: Path, tmp_path: Path):
    key = "sk-test-" + "x" * 24
    (tmp_path / "openai.key").write_text(key + "\n")
    secrets = k8s_secrets(state_dir, OPENAI_API_KEY_FILE=str(tmp_path / "openai.key"))
    assert secrets[checks.PROVIDER_KEY_SECRET] == {checks.PROVIDER_KEY_ENV: key}
    assert [name for name, data in secrets.items() if key in str(data)] == [checks.PROVIDER_KEY_SECRET]


def test_the_kubernetes_secrets_script_prints_nothing_when_a_database_url_is_missing(state_dir: Path):
    env = {k: v for k, v in DATABASE_URLS.items() if not k.startswith("RUNS_")}
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert "RUNS_DATABASE_URL is not set" in result.stderr


@pytest.fixture(scope="module")
def compose_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compose") / "secrets"
    result = run_script(COMPOSE_SECRETS_SCRIPT, str(root), env={})
    assert result.returncode == 0, result.stderr
    return root


def compose_secret_files(secrets_dir: Path) -> dict[str, Path]:
    compose = checks.load_compose(environ={"CUSTODY_SECRETS_DIR": str(secrets_dir)})
    return {name: Path(spec["file"]) for name, spec in compose["secrets"].items()}


def test_the_compose_secrets_script_writes_every_file_compose_mounts(compose_secrets: Path):
    missing = [str(path) for path in compose_secret_files(compose_secrets).values() if not path.is_file()]
    assert missing == []


def test_compose_secret_files_are_readable_by_the_container_user_and_the_directory_is_private(compose_secrets: Path):
    modes = {name: path.stat().st_mode & 0o777 for name, path in compose_secret_files(compose_secrets).items()}
    assert set(modes.values()) == {0o644}, modes
    assert compose_secrets.stat().st_mode & 0o777 == 0o700


def test_each_compose_config_secret_configures_its_own_service(compose_secrets: Path):
    files = compose_secret_files(compose_secrets)
    credentials = Credentials.load(files["credentials"])
    sql = (checks.DEPLOY_DIR / "compose" / "postgres" / "custody-databases.sql").read_text(encoding="utf-8")
    for name, spec in SERVICES.items():
        environ = {env_prefix(name) + CONFIG_FILE_SUFFIX: str(files[f"{name}_config"])}
        settings = settings_class(name).load(environ=environ)
        assert settings.token is not None
        assert credentials.authenticate(f"Bearer {settings.token.get_secret_value()}") == Principal.service(name)
        if spec.stateful:
            assert isinstance(settings, StatefulServiceSettings)
            assert settings.page_token_key is not None
            password = files[f"postgres_{name}_password"].read_text()
            expected = f"postgresql://custody_{name}:{password}@postgres:5432/custody_{name}"
            assert settings.database_url == expected
            assert re.search(rf"CREATE ROLE custody_{name} LOGIN PASSWORD :'{name}_password';", sql)
            assert re.search(rf"CREATE DATABASE custody_{name} OWNER custody_{name};", sql)


def test_rerunning_the_compose_secrets_script_keeps_every_secret(compose_secrets: Path):
    before = {name: path.read_text() for name, path in compose_secret_files(compose_secrets).items()}
    result = run_script(COMPOSE_SECRETS_SCRIPT, str(compose_secrets), env={})
    assert result.returncode == 0, result.stderr
    assert {name: path.read_text() for name, path in compose_secret_files(compose_secrets).items()} == before
