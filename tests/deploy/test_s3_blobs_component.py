"""deploy/k8s/components/s3-blobs: added to an overlay it moves runs' attachment blobs into an S3 bucket, gives
runs (and only runs) its key pair and lets runs' servers (and nothing else) reach the S3 endpoint; every deployment
rule still holds."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from tests.deploy import checks
from tests.deploy.checks import Manifest
from tests.deploy.test_kubernetes import find, server
from tests.deploy.test_secrets import DATABASE_URLS, K8S_SECRETS_SCRIPT, k8s_secrets, run_script

PRIVATE_RANGES = ["10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12", "192.168.0.0/16"]


def runs_settings(docs: list[Manifest]) -> dict[str, str]:
    """The CUSTODY_RUNS_* variables runs' server container gets from its ConfigMap."""
    (config,) = [s["configMapRef"]["name"] for s in server(docs, "runs")["envFrom"] if s.get("configMapRef")]
    return dict(find(docs, "ConfigMap", config)["data"])


def egress_to_443(docs: list[Manifest]) -> dict[str, list[dict[str, Any]]]:
    """Policy name -> the egress rules on TCP 443, of every policy selecting runs' servers."""
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        labels = policy["spec"]["podSelector"].get("matchLabels") or {}
        if labels.get("app.kubernetes.io/name") not in (None, "runs"):
            continue
        rules = [r for r in policy["spec"].get("egress") or [] if {"protocol": "TCP", "port": 443} in r["ports"]]
        if rules:
            found[policy["metadata"]["name"]] = rules
    return found


def test_the_component_passes_the_kubernetes_schemas_strictly(with_s3_blobs_text: str, tmp_path: Path):
    path = tmp_path / "s3-blobs.yaml"
    path.write_text(with_s3_blobs_text)
    assert checks.kubernetes_schema_problems(path) == []


def test_every_deployment_rule_holds_with_the_component(with_s3_blobs: list[Manifest]):
    assert [problem for check in checks.K8S_CHECKS for problem in check(with_s3_blobs)] == []


def test_runs_keeps_its_blobs_in_the_bucket_with_credentials_from_its_own_secret(with_s3_blobs: list[Manifest]):
    settings = runs_settings(with_s3_blobs)
    assert settings["CUSTODY_RUNS_BLOB_BACKEND"] == "s3"
    assert settings["CUSTODY_RUNS_S3_BUCKET"] == "custody-blobs"
    assert {"secretRef": {"name": checks.S3_KEY_SECRET}} in server(with_s3_blobs, "runs")["envFrom"]


def test_without_the_component_runs_keeps_blobs_in_its_database_and_reaches_no_public_address(prod: list[Manifest]):
    assert runs_settings(prod)["CUSTODY_RUNS_BLOB_BACKEND"] == "database"
    assert egress_to_443(prod) == {}
    assert checks.S3_KEY_SECRET not in checks.referenced_secrets(prod)


def test_only_runs_servers_reach_public_addresses_on_443_never_the_cluster_or_metadata(with_s3_blobs: list[Manifest]):
    policy = find(with_s3_blobs, "NetworkPolicy", "runs-s3-egress")
    assert policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "runs",
        "app.kubernetes.io/component": "server",
    }
    ((rule,),) = egress_to_443(with_s3_blobs).values()
    ((peer,),) = [rule["to"]]
    assert peer["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert sorted(peer["ipBlock"]["except"]) == PRIVATE_RANGES
    metadata = ipaddress.ip_address("169.254.169.254")
    assert any(metadata in ipaddress.ip_network(block) for block in peer["ipBlock"]["except"])


def test_another_server_reading_the_s3_secret_is_reported(with_s3_blobs: list[Manifest]):
    server(with_s3_blobs, "art-studio")["envFrom"].append({"secretRef": {"name": checks.S3_KEY_SECRET}})
    assert "Deployment/art-studio reads Secret runs-s3, which is only for: serve runs" in [
        problem for check in checks.K8S_CHECKS for problem in check(with_s3_blobs)
    ]


def test_the_secrets_script_writes_the_s3_key_pair_for_runs_when_given_one(
    state_dir: Path, tmp_path: Path, with_s3_blobs: list[Manifest]
):
    pair = tmp_path / "s3.keys"
    pair.write_text("AKIAEXAMPLE123\nsecret/with+chars=\n")
    secrets = k8s_secrets(state_dir, S3_CREDENTIALS_FILE=str(pair))
    assert secrets[checks.S3_KEY_SECRET] == {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE123",
        "AWS_SECRET_ACCESS_KEY": "secret/with+chars=",
    }
    assert set(secrets) == checks.referenced_secrets(with_s3_blobs)


def test_the_secrets_script_prints_nothing_for_an_s3_key_file_without_the_secret(state_dir: Path, tmp_path: Path):
    pair = tmp_path / "s3.keys"
    pair.write_text("AKIAEXAMPLE123\n")
    result = run_script(K8S_SECRETS_SCRIPT, str(state_dir), env=DATABASE_URLS | {"S3_CREDENTIALS_FILE": str(pair)})
    assert result.returncode == 1
    assert result.stdout == ""
    assert "must hold two lines: the S3 access key id, then the secret access key" in result.stderr
