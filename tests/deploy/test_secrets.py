"""The two scripts that turn `custody init` output into deployment secrets, run for real into temporary
directories: what they write is exactly what the manifests mount, the tokens in it authenticate as the services
they belong to, and each ledger key reaches its service in a form the service accepts."""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from services.cli.registry import settings_class
from services.common.catalog import CONSOLE, PROCESS_NAMES, SERVICES
from services.common.config import CONFIG_FILE_SUFFIX, StatefulServiceSettings, env_prefix
from services.common.identity import Credentials, Principal
from services.common.ledger.ledger import load_signer
from services.common.ledger.note import NoteSigner, NoteVerifier
from services.common.tls.certificates import DEFAULT_TRUST_DOMAIN, CertificateAuthority
from services.common.tls.credentials import TlsDirectory, TlsMaterial, check
from services.common.tls.peer_identity import service_of
from tests.deploy import checks
from tests.deploy.checks import Manifest

K8S_SECRETS_SCRIPT = checks.K8S_DIR / "secrets.sh"
COMPOSE_SECRETS_SCRIPT = checks.DEPLOY_DIR / "compose" / "init-secrets.sh"
DATABASE_URLS = {
    f"{name.upper()}_{kind}DATABASE_URL": f"postgresql://custody_{name}{role}:pw@db.example:5432/custody_{name}"
    for name, spec in SERVICES.items()
    if spec.stateful
    for kind, role in (("", "_runtime"), ("MIGRATION_", ""))
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


@functools.cache
def k8s_script_output(state_dir: Path, env: tuple[tuple[str, str], ...]) -> str:
    """secrets.sh's output, run once per state directory and environment (the tests only read it)."""
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=DATABASE_URLS | dict(env))
    assert result.returncode == 0, result.stderr
    return result.stdout


def k8s_objects(state_dir: Path, kind: str, **env: str) -> dict[str, dict[str, str]]:
    """What secrets.sh prints, by name: the decoded data of each Secret, or the data of each ConfigMap."""
    decode = (lambda v: base64.b64decode(v).decode()) if kind == "Secret" else str
    return {
        doc["metadata"]["name"]: {k: decode(v) for k, v in (doc.get("data") or {}).items()}
        for doc in checks.load_manifests(k8s_script_output(state_dir, tuple(sorted(env.items()))))
        if doc["kind"] == kind
    }


def k8s_secrets(state_dir: Path, **env: str) -> dict[str, dict[str, str]]:
    return k8s_objects(state_dir, "Secret", **env)


def key_file(state_dir: Path, name: str) -> str:
    return (state_dir / "keys" / name).read_text(encoding="utf-8")


def test_the_kubernetes_secrets_are_exactly_those_the_overlays_reference(
    state_dir: Path, rendered: dict[str, list[Manifest]], overlay: str
):
    assert set(k8s_secrets(state_dir)) == checks.referenced_secrets(rendered[overlay])


def test_the_configmaps_it_prints_are_exactly_those_the_overlays_reference_but_do_not_contain(
    state_dir: Path, rendered: dict[str, list[Manifest]], overlay: str
):
    assert set(k8s_objects(state_dir, "ConfigMap")) == checks.referenced_configmaps(rendered[overlay])


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


def add_person(state_dir: Path, name: str) -> str:
    """`custody users add NAME --role reviewer`, as an operator runs it; returns the token it printed."""
    result = subprocess.run(
        [str(custody_cli()), "users", "add", name, "--role", "reviewer", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_after_a_people_change_the_script_prints_just_the_credentials_secret_with_the_person(
    state_dir: Path, tmp_path: Path
):
    copy = tmp_path / "state"
    subprocess.run(["cp", "-r", str(state_dir), str(copy)], check=True)
    token = add_person(copy, "alice")
    result = run_script(K8S_SECRETS_SCRIPT, "--credentials-only", str(copy), env={})  # no database URLs needed
    assert result.returncode == 0, result.stderr
    (secret,) = checks.load_manifests(result.stdout)
    assert (secret["kind"], secret["metadata"]["name"]) == ("Secret", checks.CREDENTIALS_SECRET)
    text = base64.b64decode(secret["data"]["credentials"]).decode()
    assert Credentials.load(write(tmp_path / "from-secret", text)).authenticate(f"Bearer {token}").id == "human:alice"


def test_each_authority_gets_its_own_ledger_key_from_custody_init(state_dir: Path):
    secrets = k8s_secrets(state_dir)
    names = set()
    for name in checks.AUTHORITIES:
        key = secrets[checks.ledger_key_secret(name)]
        assert key == {"key": key_file(state_dir, checks.ledger_key_name(name))}
        signer = NoteSigner(key["key"].strip())
        assert signer.name.endswith(f"/custody/{name}")
        assert signer.vkey == key_file(state_dir, checks.ledger_vkey_name(name)).strip()
        names.add(signer.name)
    assert len(names) == len(checks.AUTHORITIES) == 3
    holders = [s for s, data in secrets.items() if checks.PRIVATE_NOTE_KEY_PREFIX in str(data)]
    assert sorted(holders) == sorted(checks.ledger_key_secret(name) for name in checks.AUTHORITIES)


def test_the_verifier_keys_configmap_holds_every_authoritys_public_key_and_nothing_private(state_dir: Path):
    data = k8s_objects(state_dir, "ConfigMap")[checks.LEDGER_VERIFIER_KEYS]
    assert data == {
        checks.ledger_vkey_name(name): key_file(state_dir, checks.ledger_vkey_name(name)) for name in checks.AUTHORITIES
    }
    assert all(NoteVerifier(vkey.strip()) for vkey in data.values())
    assert checks.PRIVATE_NOTE_KEY_PREFIX not in str(data)


def test_each_authoritys_server_sees_its_key_as_a_group_readable_0440_file_the_service_accepts(
    state_dir: Path, rendered: dict[str, list[Manifest]], overlay: str, tmp_path: Path
):
    """As the kubelet writes it: root-owned, group fsGroup (10001, the server's own group), 0440."""
    secrets = k8s_secrets(state_dir)
    served = set()
    for pod in checks.pods(rendered[overlay]):
        name = pod.serves()
        if name not in checks.AUTHORITIES:
            continue
        container, env = checks.server_env(rendered[overlay], pod)
        found = checks.mounted_file(pod, container, env[f"{env_prefix(name)}LEDGER_KEY_FILE"])
        assert found is not None and found.key is not None
        assert (found.source, found.name, found.mode, found.group_readable_by_pod) == (
            "secret",
            checks.ledger_key_secret(name),
            0o440,
            True,
        )
        assert pod.spec["securityContext"]["fsGroup"] == pod.spec["securityContext"]["runAsGroup"] == 10001
        path = tmp_path / checks.ledger_key_name(name)
        path.write_text(secrets[found.name][found.key])
        path.chmod(found.mode)
        assert load_signer(path).vkey == key_file(state_dir, checks.ledger_vkey_name(name)).strip()
        served.add(name)
    assert served == set(checks.AUTHORITIES)


def test_the_witness_sees_each_witnessed_peers_verifier_key(
    state_dir: Path, rendered: dict[str, list[Manifest]], overlay: str
):
    configmaps = k8s_objects(state_dir, "ConfigMap")
    pod = next(p for p in checks.pods(rendered[overlay]) if p.serves() == checks.WITNESS)
    container, env = checks.server_env(rendered[overlay], pod)
    directory = env[f"{env_prefix(checks.WITNESS)}LEDGER_PEER_KEYS_DIR"]
    for peer in checks.witnessed_peers():
        found = checks.mounted_file(pod, container, f"{directory}/{checks.ledger_vkey_name(peer)}")
        assert found is not None and found.key is not None
        assert configmaps[found.name][found.key] == key_file(state_dir, checks.ledger_vkey_name(peer))


def test_the_kubernetes_secrets_script_prints_nothing_when_a_ledger_key_is_missing(state_dir: Path, tmp_path: Path):
    copy = tmp_path / "state"
    subprocess.run(["cp", "-r", str(state_dir), str(copy)], check=True)
    (copy / "keys" / "runs.ledger.key").unlink()
    result = run_script(K8S_SECRETS_SCRIPT, str(copy), env=DATABASE_URLS)
    assert (result.returncode, result.stdout) == (1, "")
    assert "keys/runs.ledger.key missing: run custody init" in result.stderr


def test_each_server_and_the_console_get_their_own_certificate_as_a_kubernetes_tls_secret(state_dir: Path):
    docs = {d["metadata"]["name"]: d for d in checks.load_manifests(k8s_script_output(state_dir, ()))}
    secrets = k8s_secrets(state_dir)
    ca = (state_dir / "tls" / "ca.crt").read_text()
    for name in PROCESS_NAMES:
        secret = checks.tls_secret(name)
        assert docs[secret]["type"] == "kubernetes.io/tls"
        data = secrets[secret]
        assert set(data) == set(checks.TLS_FILES)
        check(TlsMaterial(*(data[f].encode() for f in checks.TLS_FILES)), state_dir)  # the key is the certificate's
        assert service_of(data["tls.crt"].encode(), DEFAULT_TRUST_DOMAIN, PROCESS_NAMES) == name
        assert data["ca.crt"] == ca
    ca_key = (state_dir / "tls" / "ca" / "ca.key").read_text()
    assert [name for name, data in secrets.items() if ca_key in str(data)] == []  # the CA's key stays home


def test_each_server_reads_its_tls_directory_as_the_kubelet_writes_it(
    state_dir: Path, rendered: dict[str, list[Manifest]], overlay: str, tmp_path: Path
):
    """root:10001 0440 files of the server's own Secret: the service's own reader accepts them (the console's too)."""
    secrets = k8s_secrets(state_dir)
    served = set()
    for pod in checks.pods(rendered[overlay]):
        name = pod.process
        if name is None:
            continue
        container, env = checks.server_env(rendered[overlay], pod)
        directory = tmp_path / name
        directory.mkdir()
        for file in checks.TLS_FILES:
            found = checks.mounted_file(pod, container, f"{env[f'{env_prefix(name)}TLS_DIR']}/{file}")
            assert found is not None and found.key == file and found.name == checks.tls_secret(name)
            (directory / file).write_text(secrets[found.name][found.key])
            (directory / file).chmod(found.mode)
        certificate = TlsDirectory(directory).read().certificate_chain
        assert service_of(certificate, DEFAULT_TRUST_DOMAIN, PROCESS_NAMES) == name
        served.add(name)
    assert served == set(PROCESS_NAMES)


def test_with_cert_manager_the_script_leaves_the_tls_secrets_to_it(state_dir: Path):
    secrets = k8s_secrets(state_dir, CERT_MANAGER="true")
    assert not {checks.tls_secret(name) for name in PROCESS_NAMES} & set(secrets)


def test_the_kubernetes_secrets_script_prints_nothing_when_a_certificate_is_missing(state_dir: Path, tmp_path: Path):
    copy = tmp_path / "state"
    subprocess.run(["cp", "-r", str(state_dir), str(copy)], check=True)
    (copy / "tls" / "lineage" / "tls.key").unlink()
    result = run_script(K8S_SECRETS_SCRIPT, str(copy), env=DATABASE_URLS)
    assert (result.returncode, result.stdout) == (1, "")
    assert "tls/lineage/tls.key missing: run custody init" in result.stderr


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


def test_each_server_gets_its_runtime_roles_url_and_each_job_its_owners(state_dir: Path):
    secrets = k8s_secrets(state_dir)
    for name in checks.AUTHORITIES:
        assert secrets[checks.database_secret(name)] == {"url": DATABASE_URLS[f"{name.upper()}_DATABASE_URL"]}
        owner = DATABASE_URLS[f"{name.upper()}_MIGRATION_DATABASE_URL"]
        assert secrets[checks.migration_database_secret(name)] == {"url": owner}
        assert [s for s, data in secrets.items() if owner in str(data)] == [checks.migration_database_secret(name)]


def test_the_kubernetes_secrets_script_prints_nothing_when_a_migration_url_is_missing(state_dir: Path):
    env = {k: v for k, v in DATABASE_URLS.items() if k != "LINEAGE_MIGRATION_DATABASE_URL"}
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert "LINEAGE_MIGRATION_DATABASE_URL is not set" in result.stderr


def test_the_kubernetes_secrets_script_refuses_a_server_url_that_connects_as_the_owner(state_dir: Path):
    env = DATABASE_URLS | {"RUNS_DATABASE_URL": "postgresql://custody_runs:other@db.example:5432/custody_runs"}
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=env)
    assert (result.returncode, result.stdout) == (1, "")
    assert "both connect as custody_runs: runs would run as its database's owner" in result.stderr


@pytest.fixture(scope="module")
def compose_secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compose") / "secrets"
    result = run_script(COMPOSE_SECRETS_SCRIPT, str(root), env={})
    assert result.returncode == 0, result.stderr
    return root


def compose_secret_files(secrets_dir: Path) -> dict[str, Path]:
    """Every file compose mounts from the secrets directory: its secrets and its configs (the verifier keys)."""
    compose = checks.load_compose(environ={"CUSTODY_SECRETS_DIR": str(secrets_dir)})
    return {name: Path(spec["file"]) for kind in ("secrets", "configs") for name, spec in compose[kind].items()}


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
            password = files[f"postgres_{name}_runtime_password"].read_text()
            assert (
                settings.database_url == f"postgresql://custody_{name}_runtime:{password}@postgres:5432/custody_{name}"
            )
            assert settings.migration_database_url is None and settings.resolved_runtime_role is None
            assert re.search(rf"CREATE ROLE custody_{name}_runtime LOGIN PASSWORD :'{name}_runtime_password';", sql)


def test_each_compose_migration_connects_as_its_databases_owner_and_grants_the_runtime_role(compose_secrets: Path):
    files = compose_secret_files(compose_secrets)
    sql = (checks.DEPLOY_DIR / "compose" / "postgres" / "custody-databases.sql").read_text(encoding="utf-8")
    for name in checks.AUTHORITIES:
        environ = {env_prefix(name) + CONFIG_FILE_SUFFIX: str(files[f"{name}_migration_config"])}
        settings = settings_class(name).load(environ=environ)
        assert isinstance(settings, StatefulServiceSettings)
        password = files[f"postgres_{name}_password"].read_text()
        owner = f"postgresql://custody_{name}:{password}@postgres:5432/custody_{name}"
        assert settings.migration_database_url == owner
        assert settings.resolved_runtime_role == f"custody_{name}_runtime"
        assert settings.token is None and settings.page_token_key is None, "the migration holds no service secret"
        assert re.search(rf"CREATE ROLE custody_{name} LOGIN PASSWORD :'{name}_password';", sql)
        assert re.search(rf"CREATE DATABASE custody_{name} OWNER custody_{name};", sql)


def test_rerunning_the_compose_secrets_script_keeps_every_secret(compose_secrets: Path):
    before = {name: path.read_text() for name, path in compose_secret_files(compose_secrets).items()}
    result = run_script(COMPOSE_SECRETS_SCRIPT, str(compose_secrets), env={})
    assert result.returncode == 0, result.stderr
    assert {name: path.read_text() for name, path in compose_secret_files(compose_secrets).items()} == before


def test_rerunning_the_compose_secrets_script_after_a_people_change_gives_compose_its_modes_back(tmp_path: Path):
    """`custody users` writes the credentials file 0600, which the containers' user cannot read; the script, re-run
    as the README says, makes it readable to them again and keeps the person."""
    root = tmp_path / "secrets"
    assert run_script(COMPOSE_SECRETS_SCRIPT, str(root), env={}).returncode == 0
    token = add_person(root, "alice")
    assert (root / "credentials").stat().st_mode & 0o777 == 0o600
    result = run_script(COMPOSE_SECRETS_SCRIPT, str(root), env={})
    assert result.returncode == 0, result.stderr
    credentials = compose_secret_files(root)["credentials"]
    assert credentials.stat().st_mode & 0o777 == 0o644
    assert Credentials.load(credentials).authenticate(f"Bearer {token}").id == "human:alice"


def compose_server(compose: dict[str, Any], service: str) -> dict[str, Any]:
    return next(d for d in compose["services"].values() if checks.compose_role(d) == ("serve", service))


def fake_custody(bin_dir: Path, tls_variable: str, ledger_variable: str | None) -> None:
    """A `custody` that reads its TLS directory and ledger key as the service does, and prints the service its
    certificate names, the ledger key's verifier key (authorities) and its arguments."""
    bin_dir.mkdir()
    script = bin_dir / "custody"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "from pathlib import Path\n"
        "from services.common.ledger.ledger import load_signer\n"
        "from services.common.tls.credentials import TlsDirectory\n"
        "from services.common.catalog import PROCESS_NAMES\n"
        "from services.common.tls.peer_identity import service_of\n"
        f"material = TlsDirectory(Path(os.environ[{tls_variable!r}])).read()\n"
        f"ledger = {ledger_variable!r}\n"
        "vkey = [load_signer(Path(os.environ[ledger])).vkey] if ledger else []\n"
        "print(service_of(material.certificate_chain, 'custody', PROCESS_NAMES), *vkey, *sys.argv[1:])\n"
    )
    script.chmod(0o755)


def test_each_compose_server_starts_with_private_copies_of_its_own_keys(compose_secrets: Path, tmp_path: Path):
    """The entry point run for real, /run/secrets, /etc/custody and /tmp moved under tmp_path: the bind-mounted keys
    are 0644 (which the service refuses), the copies it hands the service are 0600 and accepted: the TLS directory
    of every server and of the console, the ledger key of every authority."""
    compose = checks.load_compose(environ={"CUSTODY_SECRETS_DIR": str(compose_secrets)})
    files = compose_secret_files(compose_secrets)
    for name in PROCESS_NAMES:
        definition, root = compose_server(compose, name), tmp_path / name
        moved = {
            "/run/secrets/": f"{root}/run/secrets/",
            "/etc/custody/": f"{root}/etc/custody/",
            "/tmp/": f"{root}/tmp/",
        }

        def relocate(text: str, moved: dict[str, str] = moved) -> str:
            return re.sub("|".join(map(re.escape, moved)), lambda match: moved[match[0]], text)

        (root / "tmp").mkdir(parents=True)
        for kind in ("secrets", "configs"):
            for entry in definition.get(kind) or []:
                source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry["target"])
                path = Path(relocate(target if target.startswith("/") else f"/run/secrets/{target}"))
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(files[source], path)
        assert (root / "run" / "secrets" / "tls_key").stat().st_mode & 0o777 == 0o644
        variable = f"{env_prefix(name)}TLS_DIR"
        ledger = f"{env_prefix(name)}LEDGER_KEY_FILE" if name in checks.AUTHORITIES else None
        fake_custody(root / "bin", variable, ledger)
        environ = {
            "PATH": f"{root / 'bin'}:{os.environ['PATH']}",
            variable: relocate(definition["environment"][variable]),
            **({ledger: relocate(definition["environment"][ledger])} if ledger else {}),
        }
        argv = [relocate(str(a)) for a in definition["entrypoint"]] + definition["command"]
        result = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        vkey = [(compose_secrets / "keys" / checks.ledger_vkey_name(name)).read_text().strip()] if ledger else []
        assert result.stdout.split() == [name, *vkey, "serve", name]
        assert (Path(environ[variable]) / "tls.key").stat().st_mode & 0o777 == 0o600
        if ledger:
            assert (root / "run" / "secrets" / "ledger_key").stat().st_mode & 0o777 == 0o644
            assert Path(environ[ledger]).stat().st_mode & 0o777 == 0o600


def test_with_cert_manager_every_referenced_secret_is_written_by_exactly_one_of_the_two(
    state_dir: Path, with_cert_manager: list[Manifest]
):
    issued = {
        d["spec"]["secretName"] for d in with_cert_manager if d["kind"] == "Certificate" and not d["spec"].get("isCA")
    }
    scripted = set(k8s_secrets(state_dir, CERT_MANAGER="true"))
    assert not issued & scripted
    assert issued | scripted == checks.referenced_secrets(with_cert_manager)


def test_the_compose_consoles_certificate_names_what_browsers_and_compose_dial(compose_secrets: Path):
    """https://127.0.0.1:50080 and https://localhost:50080 on the host, https://console:50080 in the network; and it
    chains to the CA the services' certificates chain to, which the console trusts for its calls."""
    files = compose_secret_files(compose_secrets)
    certificate = x509.load_pem_x509_certificate(files["console_tls_crt"].read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"console", "localhost"} <= set(names.get_values_for_type(x509.DNSName))
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    authority = x509.load_pem_x509_certificate(files[checks.COMPOSE_CA_CONFIG].read_bytes())
    certificate.verify_directly_issued_by(authority)
    x509.load_pem_x509_certificate(files["runs_tls_crt"].read_bytes()).verify_directly_issued_by(authority)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_healthcheck(test: list[str], moved: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A compose healthcheck's CMD, run here: its python is this interpreter, its paths and port moved."""
    assert test[:2] == ["CMD", "python"], test
    argv = [sys.executable, *(re.sub("|".join(map(re.escape, moved)), lambda m: moved[m[0]], a) for a in test[2:])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_the_consoles_compose_healthcheck_passes_against_the_console_and_fails_with_another_ca(
    compose_secrets: Path, tmp_path: Path
):
    """Its own command, against `custody serve console` serving the compose certificate (the port moved to a free one
    on loopback): it trusts the compose CA, the certificate names 127.0.0.1, /healthz answers. With another CA's
    certificate in its place, the same command exits non-zero."""
    compose = checks.load_compose(environ={"CUSTODY_SECRETS_DIR": str(compose_secrets)})
    definition, files = compose_server(compose, CONSOLE), compose_secret_files(compose_secrets)
    tls = tmp_path / "tls"
    tls.mkdir()
    for name, file in (("console_tls_crt", "tls.crt"), ("console_tls_key", "tls.key"), ("custody_ca", "ca.crt")):
        shutil.copy(files[name], tls / file)
    (tls / "tls.key").chmod(0o600)
    port = free_port()
    tls_dir = definition["environment"]["CUSTODY_CONSOLE_TLS_DIR"]
    moved = {f"{tls_dir}/": f"{tls}/", f":{checks.CONSOLE_DEFAULT_PORT}/": f":{port}/"}
    environ = {
        "PATH": os.environ["PATH"],
        "CUSTODY_CONSOLE_HOST": "127.0.0.1",
        "CUSTODY_CONSOLE_PORT": str(port),
        "CUSTODY_CONSOLE_TLS_DIR": str(tls),
    }
    console = subprocess.Popen(
        [str(custody_cli()), "serve", "console"], env=environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        result = run_healthcheck(definition["healthcheck"]["test"], moved)
        while result.returncode != 0 and console.poll() is None:
            time.sleep(0.2)  # until it listens (or dies, which fails below)
            result = run_healthcheck(definition["healthcheck"]["test"], moved)
        assert result.returncode == 0, (result.stderr, console.stderr.read() if console.poll() is not None else "")
        other = CertificateAuthority.create()
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "ca.crt").write_bytes(other.certificate_pem)
        refused = run_healthcheck(definition["healthcheck"]["test"], {**moved, f"{tls_dir}/": f"{tmp_path}/other/"})
        assert refused.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    finally:
        console.terminate()
        console.wait(timeout=30)
