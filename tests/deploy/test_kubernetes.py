"""The kustomize overlays: they render, pass the Kubernetes schemas strictly, and hold the deployment rules; and
each rule's check catches the breakage it exists for, on a copy of the rendered prod overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.common.catalog import CONSOLE, SERVICES
from tests.deploy import checks
from tests.deploy.checks import Manifest


def find(docs: list[Manifest], kind: str, name: str) -> Manifest:
    """The object of that kind named `name` (ConfigMaps by name before kustomize's hash suffix)."""
    for doc in docs:
        found = doc["metadata"]["name"]
        if doc["kind"] == kind and (found == name or (kind == "ConfigMap" and found.rsplit("-", 1)[0] == name)):
            return doc
    raise LookupError(f"no {kind}/{name} in the rendered manifests")


def pod_spec(docs: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    return find(docs, kind, name)["spec"]["template"]["spec"]


def server(docs: list[Manifest], name: str) -> dict[str, Any]:
    return pod_spec(docs, "Deployment", name)["containers"][0]


def secret_env(variable: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def pod_peer(service: str) -> dict[str, Any]:
    return {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": service, "app.kubernetes.io/component": "server"}}
    }


# --- the real overlays --------------------------------------------------------------------------------------------


def test_every_overlay_renders_every_server_the_console_and_every_migration(manifests: list[Manifest]):
    roles = {pod.role for pod in checks.pods(manifests)}
    expected = {("serve", name) for name in SERVICES} | {("migrate", n) for n, s in SERVICES.items() if s.stateful}
    assert roles == expected | {("serve", CONSOLE)}


def test_every_overlay_passes_the_kubernetes_schemas_strictly(
    rendered_text: dict[str, str], overlay: str, tmp_path: Path
):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(rendered_text[overlay])
    assert checks.kubernetes_schema_problems(path) == []


def test_probes_ask_each_servers_grpc_port_for_its_own_service(manifests: list[Manifest]):
    assert checks.probe_problems(manifests) == []


def test_services_select_the_server_pods_on_a_port_they_declare(manifests: list[Manifest]):
    assert checks.service_problems(manifests) == []


def test_network_policies_allow_exactly_the_call_graph(manifests: list[Manifest]):
    assert checks.network_policy_problems(manifests) == []


def test_the_provider_key_reaches_only_the_ai_gateway_server(manifests: list[Manifest]):
    assert checks.provider_key_problems(manifests) == []


def test_tokens_and_database_urls_reach_only_their_own_service(manifests: list[Manifest]):
    assert checks.secret_scope_problems(manifests) == []


def test_every_setting_is_known_to_the_service_that_reads_it(manifests: list[Manifest]):
    assert checks.settings_problems(manifests) == []


def test_every_container_runs_the_project_image(manifests: list[Manifest]):
    assert checks.image_problems(manifests, checks.project_version()) == []


def test_every_container_is_non_root_read_only_and_bounded(manifests: list[Manifest]):
    assert checks.security_problems(manifests) == []


def test_stateful_services_migrate_in_jobs_and_their_servers_wait_for_the_schema(manifests: list[Manifest]):
    assert checks.migration_problems(manifests) == []


def test_servers_have_disruption_budgets_and_the_edge_services_autoscale(manifests: list[Manifest]):
    assert checks.availability_problems(manifests) == []


def test_each_authority_signs_with_its_own_secret_and_logs_to_a_claim_its_replicas_share(
    manifests: list[Manifest], overlay: str
):
    assert checks.ledger_problems(manifests, single_node=overlay in checks.SINGLE_NODE_OVERLAYS) == []


def test_prod_keeps_every_checkpoint_log_on_a_read_write_many_claim(rendered: dict[str, list[Manifest]]):
    for name in checks.AUTHORITIES:
        assert find(rendered["prod"], "PersistentVolumeClaim", f"{checks.k8s_name(name)}-ledger")["spec"][
            "accessModes"
        ] == ["ReadWriteMany"]


def test_the_witness_checks_the_peers_that_deliver_to_it():
    """The peer-key checks are not vacuous: runs delivers to lineage through its outbox."""
    assert (checks.WITNESS, checks.witnessed_peers()) == ("lineage", ("runs",))


def test_every_server_reads_the_credentials_secret_through_a_mount_that_receives_updates(
    manifests: list[Manifest],
):
    assert checks.credentials_problems(manifests) == []


def test_prod_runs_more_replicas_than_dev(rendered: dict[str, list[Manifest]]):
    def capacity(docs: list[Manifest]) -> dict[str, int]:
        counts = {d["metadata"]["name"]: d["spec"].get("replicas", 1) for d in docs if d["kind"] == "Deployment"}
        for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
            counts[hpa["spec"]["scaleTargetRef"]["name"]] = hpa["spec"]["minReplicas"]
        return counts

    dev, prod = capacity(rendered["dev"]), capacity(rendered["prod"])
    assert all(prod[name] > dev[name] for name in dev), (dev, prod)


def test_prod_takes_every_database_url_from_a_secret(rendered: dict[str, list[Manifest]]):
    for name, spec in SERVICES.items():
        if spec.stateful:
            env = {e["name"]: e for e in server(rendered["prod"], checks.k8s_name(name))["env"]}
            variable = f"CUSTODY_{name.upper()}_DATABASE_URL"
            assert env[variable]["valueFrom"]["secretKeyRef"]["name"] == f"{checks.k8s_name(name)}-database"


def test_migration_jobs_connect_as_the_owner_and_servers_as_the_runtime_role(manifests: list[Manifest]):
    assert checks.database_role_problems(manifests) == []


def test_no_deployment_gets_the_owner_roles_url(rendered: dict[str, list[Manifest]], overlay: str):
    for pod in checks.pods(rendered[overlay]):
        owner_secrets = {checks.migration_database_secret(name) for name in checks.AUTHORITIES}
        read = {s for container in pod.containers() for s in checks.secret_references(container, pod)}
        if pod.workload.startswith("Deployment/"):
            assert not read & owner_secrets, pod.workload
        elif pod.role and pod.role[0] == "migrate":
            assert read == {checks.migration_database_secret(pod.role[1])}, pod.workload


# --- each check catches what it exists for ------------------------------------------------------------------------


def test_a_server_given_the_owner_roles_url_is_reported(prod: list[Manifest]):
    env = server(prod, "lineage")["env"]
    env.append(secret_env("CUSTODY_LINEAGE_MIGRATION_DATABASE_URL", "lineage-migration-database", "url"))
    assert checks.database_role_problems(prod) == [
        "Deployment/lineage container lineage reads the owner role's URL (lineage-migration-database)",
        "Deployment/lineage container lineage: CUSTODY_LINEAGE_MIGRATION_DATABASE_URL is set; a server connects as "
        "the runtime role only",
    ]
    assert checks.secret_scope_problems(prod) == [
        "Deployment/lineage reads Secret lineage-migration-database, which is only for: migrate lineage"
    ]


def test_a_server_connecting_with_the_owner_roles_url_is_reported(prod: list[Manifest]):
    env = {e["name"]: e for e in server(prod, "runs")["env"]}
    env["CUSTODY_RUNS_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] = "runs-migration-database"
    problems = checks.database_role_problems(prod)
    assert "Deployment/runs container runs: CUSTODY_RUNS_DATABASE_URL must come from runs-database" in problems


def test_a_migration_job_given_the_runtime_roles_url_is_reported(prod: list[Manifest]):
    job = pod_spec(prod, "Job", "runs-migrate")["containers"][0]
    job["env"].append(secret_env("CUSTODY_RUNS_DATABASE_URL", "runs-database", "url"))
    assert checks.database_role_problems(prod) == [
        "Job/runs-migrate container migrate: CUSTODY_RUNS_DATABASE_URL is set; a migration needs only the owner's URL"
    ]
    assert checks.secret_scope_problems(prod) == [
        "Job/runs-migrate reads Secret runs-database, which is only for: serve runs"
    ]


def test_a_migration_job_without_the_owner_roles_url_is_reported(prod: list[Manifest]):
    job = pod_spec(prod, "Job", "ai-gateway-migrate")["containers"][0]
    job["env"] = [e for e in job["env"] if e["name"] != "CUSTODY_AI_GATEWAY_MIGRATION_DATABASE_URL"]
    assert checks.database_role_problems(prod) == [
        "Job/ai-gateway-migrate container migrate: CUSTODY_AI_GATEWAY_MIGRATION_DATABASE_URL must come from "
        "ai-gateway-migration-database"
    ]


def test_a_probe_on_another_port_is_reported(prod: list[Manifest]):
    server(prod, "runs")["readinessProbe"]["grpc"]["port"] = 50099
    problems = checks.probe_problems(prod)
    assert any("readinessProbe asks port 50099" in p for p in problems), problems


def test_a_probe_asking_for_another_grpc_service_is_reported(prod: list[Manifest]):
    server(prod, "runs")["livenessProbe"]["grpc"]["service"] = SERVICES["lineage"].full_name
    problems = checks.probe_problems(prod)
    assert any("livenessProbe asks for 'custody.lineage.v1.LineageService'" in p for p in problems), problems


def test_a_server_without_a_readiness_probe_is_reported(prod: list[Manifest]):
    del server(prod, "lineage")["readinessProbe"]
    assert checks.probe_problems(prod) == ["Deployment/lineage: lineage has no native gRPC readinessProbe"]


def test_a_service_selecting_no_pods_is_reported(prod: list[Manifest]):
    find(prod, "Service", "runs")["spec"]["selector"]["app.kubernetes.io/name"] = "run"
    problems = checks.service_problems(prod)
    assert any(p.startswith("Service/runs: selector") and "matches no pod" in p for p in problems), problems


def test_a_service_target_port_the_pods_do_not_declare_is_reported(prod: list[Manifest]):
    find(prod, "Service", "lineage")["spec"]["ports"][0]["targetPort"] = "http"
    assert checks.service_problems(prod) == ["Service/lineage: targetPort 'http' is not a port of Deployment/lineage"]


def test_an_extra_ingress_edge_from_lineage_to_runs_is_reported(prod: list[Manifest]):
    find(prod, "NetworkPolicy", "runs-ingress")["spec"]["ingress"][0]["from"].append(pod_peer("lineage"))
    problems = checks.network_policy_problems(prod)
    assert problems == ["NetworkPolicy ingress allows lineage -> runs, which is not in the call graph"]


def test_an_extra_egress_edge_is_reported(prod: list[Manifest]):
    egress = find(prod, "NetworkPolicy", "runs-egress")["spec"]["egress"]
    egress.append({"to": [pod_peer("art-studio")], "ports": [{"protocol": "TCP", "port": 50153}]})
    problems = checks.network_policy_problems(prod)
    assert problems == ["NetworkPolicy egress allows runs -> art_studio, which is not in the call graph"]


def test_a_service_allowed_to_a_peers_tls_port_for_people_is_reported(prod: list[Manifest]):
    """runs may call lineage, but on lineage's mutual-TLS port: its TLS port for people is the operators'."""
    egress = find(prod, "NetworkPolicy", "runs-egress")["spec"]["egress"]
    egress.append({"to": [pod_peer("lineage")], "ports": [{"protocol": "TCP", "port": 50054}]})
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy egress lets runs reach lineage's TLS port for people (grpc): services call their peers on "
        "the mutual-TLS port only"
    ]


def test_a_peer_port_opened_to_operators_is_reported(prod: list[Manifest]):
    rules = find(prod, "NetworkPolicy", "lineage-ingress")["spec"]["ingress"]
    rules[1]["ports"].append({"protocol": "TCP", "port": 50154})
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy ingress allows console -> lineage, which is not in the call graph",  # it shares the rule
        "NetworkPolicy ingress lets operators reach lineage's grpc-peer port 50154",
    ]


def test_operators_kept_from_a_tls_port_is_reported(prod: list[Manifest]):
    rules = find(prod, "NetworkPolicy", "art-studio-ingress")["spec"]["ingress"]
    rules[0]["ports"] = [{"protocol": "TCP", "port": 50253}]
    problems = checks.network_policy_problems(prod)
    assert "NetworkPolicy ingress keeps operators from art_studio's grpc port 50053" in problems, problems
    assert "NetworkPolicy ingress lets operators reach art_studio's health port 50253" in problems, problems


def test_a_missing_edge_of_the_call_graph_is_reported(prod: list[Manifest]):
    rule = find(prod, "NetworkPolicy", "lineage-ingress")["spec"]["ingress"][0]
    rule["from"] = [peer for peer in rule["from"] if "runs" not in str(peer)]
    problems = checks.network_policy_problems(prod)
    assert problems == ["NetworkPolicy ingress blocks runs -> lineage, which the call graph needs"]


def test_a_migration_job_that_can_reach_a_service_is_reported(prod: list[Manifest]):
    del find(prod, "NetworkPolicy", "runs-egress")["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy egress lets Job/runs-migrate, which serves nothing, reach ai_gateway",
        "NetworkPolicy egress lets Job/runs-migrate, which serves nothing, reach lineage",
    ]


def test_an_edge_on_another_port_does_not_count(prod: list[Manifest]):
    egress = find(prod, "NetworkPolicy", "runs-egress")["spec"]["egress"]
    egress.append({"to": [pod_peer("art-studio")], "ports": [{"protocol": "TCP", "port": 9090}]})
    assert checks.network_policy_problems(prod) == []


def test_an_ingress_rule_open_to_every_source_is_reported(prod: list[Manifest]):
    del find(prod, "NetworkPolicy", "ai-gateway-ingress")["spec"]["ingress"][0]["from"]
    problems = checks.network_policy_problems(prod)
    assert "NetworkPolicy ingress allows lineage -> ai_gateway, which is not in the call graph" in problems, problems


def test_a_missing_default_deny_is_reported(prod: list[Manifest]):
    prod.remove(find(prod, "NetworkPolicy", "default-deny-all"))
    assert checks.network_policy_problems(prod) == [
        "no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)"
    ]


def test_a_server_no_policy_isolates_is_open_to_every_pod(prod: list[Manifest]):
    prod.remove(find(prod, "NetworkPolicy", "default-deny-all"))
    prod.remove(find(prod, "NetworkPolicy", "lineage-ingress"))
    problems = checks.network_policy_problems(prod)
    assert "NetworkPolicy ingress allows ai_gateway -> lineage, which is not in the call graph" in problems, problems


def test_the_provider_key_given_to_runs_is_reported(prod: list[Manifest]):
    server(prod, "runs")["env"].append(secret_env("OPENAI_API_KEY", checks.PROVIDER_KEY_SECRET, "OPENAI_API_KEY"))
    problems = checks.provider_key_problems(prod)
    assert problems == ["Deployment/runs container runs gets the provider key (Secret ai-gateway-provider)"]


def test_the_provider_key_in_a_configmap_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "art-studio-config")["data"][checks.PROVIDER_KEY_ENV] = "sk-..."
    problems = checks.provider_key_problems(prod)
    assert any("holds OPENAI_API_KEY" in p for p in problems), problems
    assert any("Deployment/art-studio container art-studio gets the provider key" in p for p in problems), problems


def test_the_provider_key_mounted_as_a_volume_elsewhere_is_reported(prod: list[Manifest]):
    spec = pod_spec(prod, "Deployment", "lineage")
    spec["volumes"].append({"name": "key", "secret": {"secretName": checks.PROVIDER_KEY_SECRET}})
    spec["containers"][0]["volumeMounts"].append({"name": "key", "mountPath": "/etc/key", "readOnly": True})
    problems = checks.provider_key_problems(prod)
    assert problems == ["Deployment/lineage container lineage gets the provider key (Secret ai-gateway-provider)"]


def test_the_provider_key_given_to_the_gateways_migration_job_is_reported(prod: list[Manifest]):
    job = pod_spec(prod, "Job", "ai-gateway-migrate")["containers"][0]
    job["env"].append(secret_env("OPENAI_API_KEY", checks.PROVIDER_KEY_SECRET, "OPENAI_API_KEY"))
    assert checks.provider_key_problems(prod) == [
        "Job/ai-gateway-migrate container migrate gets the provider key (Secret ai-gateway-provider)"
    ]


def test_another_services_token_is_reported(prod: list[Manifest]):
    server(prod, "art-studio")["env"].append(secret_env("CUSTODY_ART_STUDIO_TOKEN", "runs-token", "token"))
    problems = checks.secret_scope_problems(prod)
    assert problems == ["Deployment/art-studio reads Secret runs-token, which is only for: serve runs"]


def test_an_unknown_setting_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "runs-config")["data"]["CUSTODY_RUNS_PROT"] = "50052"
    problems = checks.settings_problems(prod)
    assert any("CUSTODY_RUNS_PROT is not a setting of runs" in p for p in problems), problems


def test_another_services_setting_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "lineage-config")["data"]["CUSTODY_RUNS_TOKEN"] = "cst_..."
    problems = checks.settings_problems(prod)
    assert any("CUSTODY_RUNS_TOKEN is runs's setting, not lineage's" in p for p in problems), problems


def test_a_peer_address_pointing_at_another_service_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "runs-config")["data"]["CUSTODY_RUNS_AI_GATEWAY_ADDRESS"] = "lineage:50154"
    problems = checks.settings_problems(prod)
    assert any("CUSTODY_RUNS_AI_GATEWAY_ADDRESS is 'lineage:50154', expected 'ai-gateway:50151'" in p for p in problems)


def test_a_peer_addressed_at_its_tls_port_for_people_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "art-studio-config")["data"]["CUSTODY_ART_STUDIO_RUNS_ADDRESS"] = "runs:50052"
    problems = checks.settings_problems(prod)
    assert problems == [
        "Deployment/art-studio art-studio: CUSTODY_ART_STUDIO_RUNS_ADDRESS is 'runs:50052', expected 'runs:50152'"
    ]


def test_a_server_listening_on_loopback_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "lineage-config")["data"]["CUSTODY_LINEAGE_HOST"] = "127.0.0.1"
    problems = checks.settings_problems(prod)
    assert any("CUSTODY_LINEAGE_HOST must be 0.0.0.0" in p for p in problems), problems


def test_a_foreign_image_is_reported(prod: list[Manifest]):
    pod_spec(prod, "Deployment", "runs")["initContainers"][0]["image"] = "busybox:1.36"
    problems = checks.image_problems(prod, checks.project_version())
    assert problems == [
        "Deployment/runs container wait-for-schema runs 'busybox:1.36', not the project's image "
        f"custody:{checks.project_version()}"
    ]


def test_a_writable_root_filesystem_is_reported(prod: list[Manifest]):
    server(prod, "ai-gateway")["securityContext"]["readOnlyRootFilesystem"] = False
    assert checks.security_problems(prod) == [
        "Deployment/ai-gateway container ai-gateway: readOnlyRootFilesystem must be true"
    ]


def test_a_stateful_server_that_does_not_wait_for_its_schema_is_reported(prod: list[Manifest]):
    del pod_spec(prod, "Deployment", "lineage")["initContainers"]
    assert checks.migration_problems(prod) == [
        "Deployment/lineage: no init container waiting for lineage's schema (wait_for_schema.py)"
    ]


def test_a_server_without_a_disruption_budget_is_reported(prod: list[Manifest]):
    prod.remove(find(prod, "PodDisruptionBudget", "runs"))
    assert checks.availability_problems(prod) == ["Deployment/runs: no PodDisruptionBudget selects its pods"]


def test_the_strict_schema_validation_rejects_an_unknown_field(prod: list[Manifest], tmp_path: Path):
    server(prod, "runs")["readinesProbe"] = {"grpc": {"port": 50052}}
    path = tmp_path / "broken.yaml"
    path.write_text(checks.dump_manifests(prod))
    problems = checks.kubernetes_schema_problems(path)
    assert any("readinesProbe" in p for p in problems), problems


def test_the_schema_validation_rejects_a_named_port_in_a_grpc_probe(prod: list[Manifest], tmp_path: Path):
    """Kubernetes' gRPC probes take a port number only: a name must fail here, not at rollout."""
    server(prod, "runs")["livenessProbe"]["grpc"]["port"] = "grpc"
    path = tmp_path / "broken.yaml"
    path.write_text(checks.dump_manifests(prod))
    problems = checks.kubernetes_schema_problems(path)
    assert any("livenessProbe.grpc.port: 'grpc' is not of type 'integer'" in p for p in problems), problems


# --- the ledger checks catch what they exist for --------------------------------------------------------------------


def volume(docs: list[Manifest], deployment: str, name: str) -> dict[str, Any]:
    return next(v for v in pod_spec(docs, "Deployment", deployment)["volumes"] if v["name"] == name)


def test_another_services_ledger_key_is_reported(prod: list[Manifest]):
    volume(prod, "runs", "ledger-key")["secret"]["secretName"] = "lineage-ledger-key"
    assert checks.secret_scope_problems(prod) == [
        "Deployment/runs reads Secret lineage-ledger-key, which is only for: serve lineage"
    ]
    assert checks.ledger_problems(prod) == [
        "Deployment/runs: CUSTODY_RUNS_LEDGER_KEY_FILE (/etc/custody/ledger-key/runs.ledger.key) is not a file of "
        "Secret runs-ledger-key (it is in secret lineage-ledger-key)"
    ]


def test_a_ledger_key_mounted_into_a_migration_job_is_reported(prod: list[Manifest]):
    spec = pod_spec(prod, "Job", "runs-migrate")
    spec["volumes"].append({"name": "key", "secret": {"secretName": "runs-ledger-key"}})
    spec["containers"][0]["volumeMounts"].append({"name": "key", "mountPath": "/etc/key", "readOnly": True})
    assert checks.secret_scope_problems(prod) == [
        "Job/runs-migrate reads Secret runs-ledger-key, which is only for: serve runs"
    ]


def test_a_key_file_path_outside_the_secret_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "ai-gateway-config")["data"]["CUSTODY_AI_GATEWAY_LEDGER_KEY_FILE"] = "/var/lib/custody/k"
    assert checks.ledger_problems(prod) == [
        "Deployment/ai-gateway: CUSTODY_AI_GATEWAY_LEDGER_KEY_FILE (/var/lib/custody/k) is not a file of Secret "
        "ai-gateway-ledger-key (it is in emptyDir state)"
    ]


def test_a_key_file_name_the_secret_volume_does_not_hold_is_reported(prod: list[Manifest]):
    volume(prod, "lineage", "ledger-key")["secret"]["items"][0]["path"] = "key"
    problems = checks.ledger_problems(prod)
    assert problems == [
        "Deployment/lineage: CUSTODY_LINEAGE_LEDGER_KEY_FILE (/etc/custody/ledger-key/lineage.ledger.key) is not a "
        "file of Secret lineage-ledger-key (it is in secret lineage-ledger-key)"
    ]


def test_a_world_readable_ledger_key_is_reported(prod: list[Manifest]):
    volume(prod, "runs", "ledger-key")["secret"]["defaultMode"] = 0o644
    assert checks.ledger_problems(prod) == [
        "Deployment/runs: the ledger key would be mode 0644, which runs refuses (others may read it or its group "
        "write it)"
    ]


def test_a_ledger_key_unreadable_without_an_fs_group_is_reported(prod: list[Manifest]):
    del pod_spec(prod, "Deployment", "runs")["securityContext"]["fsGroup"]
    assert checks.ledger_problems(prod) == [
        "Deployment/runs: no fsGroup: the kubelet writes the ledger key as root, mode 0440, which uid 10001 cannot read"
    ]


def test_a_writable_ledger_key_mount_is_reported(prod: list[Manifest]):
    mount = next(m for m in server(prod, "lineage")["volumeMounts"] if m["name"] == "ledger-key")
    del mount["readOnly"]
    assert checks.ledger_problems(prod) == ["Deployment/lineage: the ledger key's mount must be readOnly"]


def test_a_checkpoint_log_on_an_empty_dir_is_reported(prod: list[Manifest]):
    log = volume(prod, "runs", "ledger")
    del log["persistentVolumeClaim"]
    log["emptyDir"] = {}
    assert checks.ledger_problems(prod) == [
        "Deployment/runs: CUSTODY_RUNS_LEDGER_CHECKPOINT_DIR (/var/lib/custody/ledger/runs) is not on a "
        "PersistentVolumeClaim: the checkpoint log must outlive pods"
    ]


def test_a_checkpoint_log_replicas_on_several_nodes_cannot_share_is_reported(prod: list[Manifest]):
    find(prod, "PersistentVolumeClaim", "runs-ledger")["spec"]["accessModes"] = ["ReadWriteOnce"]
    assert checks.ledger_problems(prod) == [
        "PersistentVolumeClaim/runs-ledger: Deployment/runs may run 3 replicas, which share the checkpoint log: it "
        "must be ReadWriteMany (has ['ReadWriteOnce'])"
    ]


def test_an_autoscaled_authority_counts_its_maximum_replicas(prod: list[Manifest]):
    find(prod, "PersistentVolumeClaim", "ai-gateway-ledger")["spec"]["accessModes"] = ["ReadWriteOnce"]
    assert checks.ledger_problems(prod) == [
        "PersistentVolumeClaim/ai-gateway-ledger: Deployment/ai-gateway may run 12 replicas, which share the "
        "checkpoint log: it must be ReadWriteMany (has ['ReadWriteOnce'])"
    ]


def test_a_single_pod_claim_is_reported_even_on_one_node(prod: list[Manifest]):
    find(prod, "PersistentVolumeClaim", "lineage-ledger")["spec"]["accessModes"] = ["ReadWriteOncePod"]
    assert checks.ledger_problems(prod, single_node=True) == [
        "PersistentVolumeClaim/lineage-ledger: ReadWriteOncePod stops a second replica or surge pod"
    ]


def test_a_checkpoint_log_two_authorities_share_is_reported(prod: list[Manifest]):
    volume(prod, "lineage", "ledger")["persistentVolumeClaim"]["claimName"] = "runs-ledger"
    assert checks.ledger_problems(prod) == [
        "PersistentVolumeClaim/runs-ledger is mounted by Deployment/lineage, Deployment/runs: each authority's "
        "checkpoint log is its own"
    ]


def test_a_witness_without_the_verifier_keys_is_reported(prod: list[Manifest]):
    spec = pod_spec(prod, "Deployment", "lineage")
    spec["containers"][0]["volumeMounts"] = [
        m for m in spec["containers"][0]["volumeMounts"] if m["name"] != "ledger-verifier-keys"
    ]
    assert checks.ledger_problems(prod) == [
        "Deployment/lineage: /etc/custody/ledger-peers/runs.ledger.vkey is not key runs.ledger.vkey of ConfigMap "
        "ledger-verifier-keys: lineage cannot check runs's checkpoints"
    ]


def test_verifier_keys_that_leave_out_a_witnessed_peer_are_reported(prod: list[Manifest]):
    volume(prod, "lineage", "ledger-verifier-keys")["configMap"]["items"] = [
        {"key": "ai_gateway.ledger.vkey", "path": "ai_gateway.ledger.vkey"}
    ]
    assert checks.ledger_problems(prod) == [
        "Deployment/lineage: /etc/custody/ledger-peers/runs.ledger.vkey is not key runs.ledger.vkey of ConfigMap "
        "ledger-verifier-keys: lineage cannot check runs's checkpoints"
    ]


def test_a_private_note_key_in_a_configmap_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "runs-config")["data"]["KEY"] = "PRIVATE+KEY+localhost/custody/runs+00000000+AQ"
    problems = checks.ledger_problems(prod)
    assert len(problems) == 1 and "holds a private note key: keys belong in a Secret" in problems[0], problems


# --- TLS: the checks catch what they exist for --------------------------------------------------------------------


def test_every_server_serves_tls_from_its_own_secret(manifests: list[Manifest]):
    assert checks.tls_problems(manifests) == []


def config(docs: list[Manifest], deployment: str) -> dict[str, str]:
    return find(docs, "ConfigMap", f"{deployment}-config")["data"]


def test_a_server_serving_plaintext_on_all_interfaces_is_refused_in_the_services_own_words(prod: list[Manifest]):
    del config(prod, "runs")["CUSTODY_RUNS_TLS_DIR"]
    del config(prod, "runs")["CUSTODY_RUNS_PEER_PORT"]
    problems = checks.settings_problems(prod)
    assert len(problems) == 1, problems
    assert "CUSTODY_RUNS_HOST is '0.0.0.0', not a loopback address, and TLS is not configured" in problems[0]


def test_plaintext_allowed_on_purpose_is_still_reported_in_a_deployment(prod: list[Manifest]):
    data = config(prod, "lineage")
    del data["CUSTODY_LINEAGE_TLS_DIR"], data["CUSTODY_LINEAGE_PEER_PORT"]
    data["CUSTODY_LINEAGE_ALLOW_PLAINTEXT"] = "true"
    assert checks.settings_problems(prod) == [
        "Deployment/lineage lineage: CUSTODY_LINEAGE_TLS_DIR is not set: a deployed server serves TLS, never plaintext",
        "Deployment/lineage lineage: CUSTODY_LINEAGE_ALLOW_PLAINTEXT must not be true in a deployment",
    ]


def test_a_peer_port_where_callers_do_not_look_is_reported(prod: list[Manifest]):
    config(prod, "ai-gateway")["CUSTODY_AI_GATEWAY_PEER_PORT"] = "50999"
    problems = checks.settings_problems(prod)
    assert "Deployment/ai-gateway ai-gateway: the peer port is 50999, its callers' addresses expect 50151" in problems


def test_a_probe_on_the_tls_port_is_reported(prod: list[Manifest]):
    server(prod, "runs")["livenessProbe"]["grpc"]["port"] = 50052
    assert checks.probe_problems(prod) == ["Deployment/runs: livenessProbe asks port 50052, the health port is 50252"]


def test_a_server_without_a_health_port_is_reported(prod: list[Manifest]):
    del config(prod, "art-studio")["CUSTODY_ART_STUDIO_HEALTH_PORT"]
    assert checks.probe_problems(prod) == [
        "Deployment/art-studio: art_studio has no health-only port (CUSTODY_ART_STUDIO_HEALTH_PORT): probes cannot "
        "speak TLS"
    ]


def test_a_server_not_declaring_its_peer_port_is_reported(prod: list[Manifest]):
    ports = server(prod, "lineage")["ports"]
    ports[:] = [p for p in ports if p["name"] != "grpc-peer"]
    problems = checks.probe_problems(prod) + checks.service_problems(prod)
    assert "Deployment/lineage: lineage must declare containerPort 50154 named grpc-peer" in problems, problems
    assert "Service/lineage: targetPort 'grpc-peer' is not a port of Deployment/lineage" in problems, problems


def test_a_service_port_leading_callers_to_the_tls_port_for_people_is_reported(prod: list[Manifest]):
    peer = next(p for p in find(prod, "Service", "runs")["spec"]["ports"] if p["name"] == "grpc-peer")
    peer["targetPort"] = "grpc"
    assert checks.service_problems(prod) == [
        "Service/runs: port 50152 leads to Deployment/runs's 'grpc' port, not its 'grpc-peer' listener"
    ]


def test_a_service_without_the_peer_port_is_reported(prod: list[Manifest]):
    ports = find(prod, "Service", "ai-gateway")["spec"]["ports"]
    ports[:] = [p for p in ports if p["name"] != "grpc-peer"]
    assert checks.service_problems(prod) == ["Service/ai-gateway: does not expose ai_gateway's port 50151"]


def test_another_services_tls_secret_is_reported(prod: list[Manifest]):
    volume(prod, "runs", "tls")["secret"]["secretName"] = "lineage-tls"
    assert checks.secret_scope_problems(prod) == [
        "Deployment/runs reads Secret lineage-tls, which is only for: serve lineage"
    ]
    assert checks.tls_problems(prod)[0] == (
        "Deployment/runs: /etc/custody/tls/tls.crt is not key tls.crt of Secret runs-tls (secret lineage-tls key "
        "tls.crt)"
    )


def test_a_world_readable_tls_key_is_reported(prod: list[Manifest]):
    volume(prod, "art-studio", "tls")["secret"]["defaultMode"] = 0o644
    assert checks.tls_problems(prod) == [
        "Deployment/art-studio: the TLS key would be mode 0644, which art_studio cannot read or refuses (others may "
        "read it or its group write it)"
    ]


def test_a_tls_secret_volume_without_the_key_is_reported(prod: list[Manifest]):
    volume(prod, "lineage", "tls")["secret"]["items"] = [
        {"key": "tls.crt", "path": "tls.crt"},
        {"key": "ca.crt", "path": "ca.crt"},
    ]
    assert checks.tls_problems(prod) == [
        "Deployment/lineage: /etc/custody/tls/tls.key is not key tls.key of Secret lineage-tls (secret lineage-tls "
        "key None)"
    ]


def test_a_writable_tls_mount_is_reported(prod: list[Manifest]):
    mount = next(m for m in server(prod, "runs")["volumeMounts"] if m["name"] == "tls")
    del mount["readOnly"]
    assert set(checks.tls_problems(prod)) == {"Deployment/runs: the TLS directory's mount must be readOnly"}


def test_a_credentials_secret_mounted_with_sub_path_is_reported(prod: list[Manifest]):
    mount = next(m for m in server(prod, "lineage")["volumeMounts"] if m["name"] == "credentials")
    mount["mountPath"], mount["subPath"] = "/etc/custody/credentials/credentials", "credentials"
    assert checks.credentials_problems(prod) == [
        "Deployment/lineage: CUSTODY_LINEAGE_CREDENTIALS_FILE (/etc/custody/credentials/credentials) is mounted "
        "with subPath, which never receives updates: a revoked token would keep working until the pod restarts"
    ]


def test_a_credentials_file_outside_the_credentials_secret_is_reported(prod: list[Manifest]):
    find(prod, "ConfigMap", "runs-config")["data"]["CUSTODY_RUNS_CREDENTIALS_FILE"] = "/var/lib/custody/credentials"
    assert checks.credentials_problems(prod) == [
        "Deployment/runs: CUSTODY_RUNS_CREDENTIALS_FILE (/var/lib/custody/credentials) is not key credentials of "
        "Secret custody-credentials (it is in emptyDir state)"
    ]


# --- the review console -------------------------------------------------------------------------------------------


def console(docs: list[Manifest]) -> dict[str, Any]:
    return server(docs, "console")


def test_the_console_has_an_address_setting_for_every_service():
    assert checks.console_address_problems() == []


def test_the_console_reaches_every_services_port_for_people_and_nothing_else(rendered: dict[str, list[Manifest]]):
    """Not vacuous: the graph the policies allow on the TLS ports for people holds the console's four edges."""
    for direction in ("Ingress", "Egress"):
        assert checks.network_graph(rendered["prod"], direction, checks.PUBLIC_PORT_NAME) == {
            (CONSOLE, name) for name in SERVICES
        }
        for port in (checks.PEER_PORT_NAME, checks.HEALTH_PORT_NAME):
            assert not {edge for edge in checks.network_graph(rendered["prod"], direction, port) if CONSOLE in edge}


def test_a_console_probe_over_plain_http_is_reported(prod: list[Manifest]):
    console(prod)["readinessProbe"]["httpGet"]["scheme"] = "HTTP"
    assert checks.probe_problems(prod) == [
        "Deployment/console: readinessProbe speaks HTTP to a console that serves HTTPS"
    ]


def test_a_console_probe_on_another_path_is_reported(prod: list[Manifest]):
    console(prod)["livenessProbe"]["httpGet"]["path"] = "/queue"
    assert checks.probe_problems(prod) == ["Deployment/console: livenessProbe asks '/queue', not '/healthz'"]


def test_a_console_with_a_grpc_probe_is_reported(prod: list[Manifest]):
    console(prod)["readinessProbe"] = {"grpc": {"port": 50080}}
    assert checks.probe_problems(prod) == ["Deployment/console: the console has no httpGet readinessProbe on /healthz"]


def test_a_console_probe_on_an_undeclared_port_is_reported(prod: list[Manifest]):
    console(prod)["startupProbe"]["httpGet"]["port"] = "http"
    assert checks.probe_problems(prod) == [
        "Deployment/console console: startupProbe asks port http, which the container does not declare ([50080])",
        "Deployment/console: startupProbe asks port http, the console's is 50080",
    ]


def test_a_console_service_exposing_another_port_is_reported(prod: list[Manifest]):
    find(prod, "Service", "console")["spec"]["ports"].append({"name": "http", "port": 80, "targetPort": "https"})
    assert checks.service_problems(prod) == ["Service/console: port 80 is not the console's port 50080"]


def test_a_console_calling_a_peer_port_is_reported(prod: list[Manifest]):
    """A peer port wants a service's certificate: the console, a person's client, has no business there."""
    find(prod, "ConfigMap", "console-config")["data"]["CUSTODY_CONSOLE_RUNS_ADDRESS"] = "runs:50152"
    assert checks.settings_problems(prod) == [
        "Deployment/console console: CUSTODY_CONSOLE_RUNS_ADDRESS is 'runs:50152', expected 'runs:50052'"
    ]


def test_a_console_allowed_to_a_peer_port_is_reported(prod: list[Manifest]):
    find(prod, "NetworkPolicy", "console-egress")["spec"]["egress"][1]["ports"].append(
        {"protocol": "TCP", "port": 50152}
    )
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy egress allows console -> runs, which is not in the call graph"
    ]


def test_a_console_kept_from_a_services_port_for_people_is_reported(prod: list[Manifest]):
    rule = find(prod, "NetworkPolicy", "lineage-ingress")["spec"]["ingress"][1]
    rule["from"] = [peer for peer in rule["from"] if "console" not in str(peer)]
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy ingress blocks console -> lineage's TLS port for people (grpc), which the console calls as the "
        "signed-in person"
    ]


def test_a_service_allowed_to_open_the_console_is_reported(prod: list[Manifest]):
    find(prod, "NetworkPolicy", "console-ingress")["spec"]["ingress"][0]["from"].append(pod_peer("runs"))
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy ingress lets Deployment/runs reach the console's https port: people open it, no pod of the "
        "deployment"
    ]


def test_a_console_allowed_to_the_internet_is_reported(prod: list[Manifest]):
    egress = find(prod, "NetworkPolicy", "console-egress")["spec"]["egress"]
    egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"protocol": "TCP", "port": 443}]})
    problems = checks.network_policy_problems(prod)
    assert problems == [
        "NetworkPolicy/console-egress lets the console reach {'ipBlock': {'cidr': '0.0.0.0/0'}}: beside DNS and its "
        "collector, it calls the services' pods only"
    ]


def test_a_console_allowed_to_another_port_of_the_collectors_namespace_is_reported(prod: list[Manifest]):
    """The collector rule passes only as the console's OTLP endpoint says: its namespace, its port."""
    rule = find(prod, "NetworkPolicy", "allow-otel-collector-egress")["spec"]["egress"][0]
    rule["ports"].append({"protocol": "TCP", "port": 9090})
    problems = checks.network_policy_problems(prod)
    assert len(problems) == 1 and problems[0].startswith(
        "NetworkPolicy/allow-otel-collector-egress lets the console reach {'namespaceSelector'"
    ), problems


def test_a_console_allowed_to_a_migration_job_is_reported(prod: list[Manifest]):
    egress = find(prod, "NetworkPolicy", "console-egress")["spec"]["egress"]
    egress.append({"to": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "migration"}}}]})
    assert sorted(checks.network_policy_problems(prod)) == [
        f"NetworkPolicy/console-egress lets the console reach Job/{name}-migrate, which is no service"
        for name in ("ai-gateway", "lineage", "runs")
    ]


def test_operators_kept_from_the_console_is_reported(prod: list[Manifest]):
    find(prod, "NetworkPolicy", "console-ingress")["spec"]["ingress"][0]["ports"] = [{"protocol": "TCP", "port": 8080}]
    assert checks.network_policy_problems(prod) == [
        "NetworkPolicy ingress keeps operators from console's https port 50080"
    ]


def test_the_credentials_given_to_the_console_are_reported(prod: list[Manifest]):
    spec = pod_spec(prod, "Deployment", "console")
    spec["volumes"].append({"name": "credentials", "secret": {"secretName": checks.CREDENTIALS_SECRET}})
    spec["containers"][0]["volumeMounts"].append({"name": "credentials", "mountPath": "/etc/custody/credentials"})
    assert checks.secret_scope_problems(prod) == [
        "Deployment/console reads Secret custody-credentials, which is only for: serve ai_gateway, serve art_studio, "
        "serve lineage, serve runs"
    ]


def test_a_service_token_given_to_the_console_is_reported(prod: list[Manifest]):
    console(prod).setdefault("env", []).append(secret_env("CUSTODY_CONSOLE_TOKEN", "runs-token", "token"))
    assert checks.secret_scope_problems(prod) == [
        "Deployment/console reads Secret runs-token, which is only for: serve runs"
    ]
    assert checks.settings_problems(prod) == [
        "Deployment/console console: CUSTODY_CONSOLE_TOKEN is not a setting of console (custody exits with a "
        "configuration error)"
    ]


def test_the_consoles_tls_key_given_to_a_service_is_reported(prod: list[Manifest]):
    volume(prod, "art-studio", "tls")["secret"]["secretName"] = "console-tls"
    problems = checks.secret_scope_problems(prod)
    assert problems == ["Deployment/art-studio reads Secret console-tls, which is only for: serve console"]


def test_a_console_serving_plain_http_is_refused_in_its_own_words(prod: list[Manifest]):
    del find(prod, "ConfigMap", "console-config")["data"]["CUSTODY_CONSOLE_TLS_DIR"]
    problems = checks.settings_problems(prod)
    assert len(problems) == 1 and "CUSTODY_CONSOLE_HOST is '0.0.0.0', not a loopback address" in problems[0], problems


def test_a_console_allowed_plain_http_is_reported(prod: list[Manifest]):
    data = find(prod, "ConfigMap", "console-config")["data"]
    del data["CUSTODY_CONSOLE_TLS_DIR"]
    data["CUSTODY_CONSOLE_ALLOW_PLAINTEXT"] = "true"
    assert checks.settings_problems(prod) == [
        "Deployment/console console: CUSTODY_CONSOLE_TLS_DIR is not set: a deployed console serves HTTPS, never "
        "plaintext"
    ]


def test_a_console_trusting_another_ca_or_sending_cookies_in_the_clear_is_reported(prod: list[Manifest]):
    data = find(prod, "ConfigMap", "console-config")["data"]
    data["CUSTODY_CONSOLE_CA_FILE"] = "/etc/ssl/certs/ca-certificates.crt"
    data["CUSTODY_CONSOLE_SECURE_COOKIES"] = "false"
    assert checks.settings_problems(prod) == [
        "Deployment/console console: the console trusts /etc/ssl/certs/ca-certificates.crt, not the CA of its "
        "certificate directory (/etc/custody/tls/ca.crt), which issued the services' certificates",
        "Deployment/console console: CUSTODY_CONSOLE_SECURE_COOKIES is false: the session cookie holds the person's "
        "token",
    ]


def test_the_console_serving_another_certificate_is_reported(prod: list[Manifest]):
    volume(prod, "console", "tls")["secret"]["secretName"] = "lineage-tls"
    assert checks.tls_problems(prod) == [
        f"Deployment/console: /etc/custody/tls/{file} is not key {file} of Secret console-tls (secret lineage-tls key "
        f"{file})"
        for file in checks.TLS_FILES
    ]


def test_a_console_without_a_disruption_budget_is_reported(prod: list[Manifest]):
    prod.remove(find(prod, "PodDisruptionBudget", "console"))
    assert checks.availability_problems(prod) == ["Deployment/console: no PodDisruptionBudget selects its pods"]


def test_a_writable_console_is_reported(prod: list[Manifest]):
    console(prod)["securityContext"]["readOnlyRootFilesystem"] = False
    assert checks.security_problems(prod) == [
        "Deployment/console container console: readOnlyRootFilesystem must be true"
    ]


# --- metrics ------------------------------------------------------------------------------------------------------


def test_every_server_serves_metrics_on_the_port_prometheus_scrapes(manifests: list[Manifest]):
    assert checks.metrics_problems(manifests) == []


def test_a_server_without_its_metrics_port_is_reported(prod: list[Manifest]):
    container = server(prod, "lineage")
    container["ports"] = [p for p in container["ports"] if p["name"] != checks.METRICS_PORT_NAME]
    assert checks.metrics_problems(prod) == [
        f"Deployment/lineage: must declare containerPort {checks.METRICS_PORT} named {checks.METRICS_PORT_NAME}"
    ]


def test_a_service_without_the_metrics_port_is_reported(prod: list[Manifest]):
    service = find(prod, "Service", "runs")
    service["spec"]["ports"] = [p for p in service["spec"]["ports"] if p["name"] != checks.METRICS_PORT_NAME]
    assert checks.service_problems(prod) == [f"Service/runs: does not expose runs's port {checks.METRICS_PORT}"]
