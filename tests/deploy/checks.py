"""Offline checks of deploy/: the image, compose and the Kubernetes manifests, with no Docker engine or cluster.

Every check is a plain function returning a list of problems (empty: fine), so the tests run it on the real
files and on deliberately broken copies, proving it catches what it exists for. What is "right" comes from the
code, never from a second hand-kept list: services, ports, gRPC names and the call graph from
services/common/catalog.py, setting names from each service's settings class (the review console's from
ConsoleSettings), the provider key's variable name from services/ai_gateway/transport/.

The review console is a process of the deployment but no service: it serves HTTPS to people, holds no secret but
its TLS key, and calls every service on its TLS port for people, as a person's CLI does. `Pod.serves()` names the
service a pod serves (never the console); `Pod.process` names what `custody serve` runs, the console included.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from services.ai_gateway.transport import OPENAI_KEY_ENV
from services.cli.content_ca import SIGNING_SERVICES
from services.cli.registry import settings_class
from services.common.catalog import CONSOLE, CONSOLE_DEFAULT_PORT, PROCESS_NAMES, SERVICES, callers_of
from services.common.config import CONFIG_FILE_SUFFIX, PEER_PORT_OFFSET, ConfigError, env_prefix
from services.common.ledger.ledger import load_signer
from services.common.ledger.note import generate_note_key
from services.common.tls.certificates import CertificateAuthority
from services.common.tls.credentials import CA_FILE, CERTIFICATE_FILE, KEY_FILE, TlsDirectory, TlsFilesError
from services.console.config import ConsoleSettings

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
DOCKERFILE = DEPLOY_DIR / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
COMPOSE_FILE = DEPLOY_DIR / "compose" / "compose.yaml"
COMPOSE_S3_OVERRIDE = DEPLOY_DIR / "compose" / "compose.s3.yaml"  # runs' blobs in SeaweedFS
OTEL_COLLECTOR_CONFIG = DEPLOY_DIR / "compose" / "otel-collector.yaml"
PROMETHEUS_CONFIG = DEPLOY_DIR / "compose" / "prometheus.yaml"
GRAFANA_DATASOURCES = DEPLOY_DIR / "compose" / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
GRAFANA_DASHBOARD = DEPLOY_DIR / "grafana" / "custody.json"
K8S_DIR = DEPLOY_DIR / "k8s"
K8S_OVERLAYS = ("dev", "prod")
# cert-manager issues the servers' certificates instead of secrets.sh when an overlay adds this component.
CERT_MANAGER_COMPONENT = K8S_DIR / "components" / "cert-manager"
# An Ingress in front of the review console, and the ingress controller its NetworkPolicy admits (namespace, labels:
# ingress-nginx's chart defaults).
CONSOLE_INGRESS_COMPONENT = K8S_DIR / "components" / "console-ingress"
S3_BLOBS_COMPONENT = K8S_DIR / "components" / "s3-blobs"
INGRESS_CONTROLLER = ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
# The oldest Kubernetes the manifests support: native gRPC probes are GA since 1.27, all else is older.
KUBERNETES_VERSION = "1.30.0"

PROJECT_IMAGE = "custody"
PROVIDER_KEY_ENV = OPENAI_KEY_ENV
PROVIDER_KEY_SECRET = "ai-gateway-provider"  # Kubernetes
S3_KEY_SECRET = "runs-s3"  # Kubernetes, with components/s3-blobs
COMPOSE_PROVIDER_KEY_SECRET = "openai_api_key"  # compose
COMPOSE_CA_CONFIG = "custody_ca"  # compose: the CA certificate every server trusts (tls/ca.crt)
CREDENTIALS_SECRET = "custody-credentials"
# The only images compose may run besides the project's: the database, the tracing pipeline and the metrics one.
COMPOSE_THIRD_PARTY_IMAGES = (
    "postgres:",
    "otel/opentelemetry-collector:",
    "jaegertracing/all-in-one:",
    "prom/prometheus:",
    "grafana/grafana:",
    "chrislusf/seaweedfs:",  # compose.s3.yaml: the S3-compatible blob store
)
POD_SPEC_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
# Tamper evidence: the services that keep a ledger (those with a database), the one that witnesses its peers'
# checkpoints, and where the deployments keep what `custody init` writes for them (keys/<service>.ledger.key|vkey).
AUTHORITIES = tuple(name for name, spec in SERVICES.items() if spec.stateful)
WITNESS = "lineage"
LEDGER_VERIFIER_KEYS = "ledger-verifier-keys"  # Kubernetes ConfigMap: every authority's <service>.ledger.vkey
PRIVATE_NOTE_KEY_PREFIX = "PRIVATE+KEY+"  # services/common/ledger/note.py: how every private note key starts
# Overlays for one-node clusters (kind, minikube), where every replica can mount a ReadWriteOnce claim.
SINGLE_NODE_OVERLAYS = ("dev",)
CONTAINER_LISTS = ("initContainers", "containers")
# Transport (services/common/tls/): the container ports a server declares for its three listeners, the files of its
# certificate directory (cert-manager's layout) and the settings that decide what it listens on.
PUBLIC_PORT_NAME, PEER_PORT_NAME, HEALTH_PORT_NAME = "grpc", "grpc-peer", "health"
# Every server's plaintext Prometheus endpoint in the deployments (METRICS_PORT; the OpenTelemetry Prometheus
# exporter's registered port), a container and Service port of this name so that a ServiceMonitor can select it.
METRICS_PORT_NAME, METRICS_PORT = "metrics", 9464
TLS_FILES = (CERTIFICATE_FILE, KEY_FILE, CA_FILE)
# The review console's one listener (HTTPS for people, as its container port is named) and its probe path.
CONSOLE_PORT_NAME = "https"
CONSOLE_HEALTH_PATH = "/healthz"
# The ports people reach (operators' tools, browsers): each service's TLS port for people, and the console's.
PEOPLE_PORTS = (PUBLIC_PORT_NAME, CONSOLE_PORT_NAME)
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# Where the network policies expect operators' tools (custody CLI, grpcurl): a namespace with this label.
OPERATORS_NAMESPACE = ("operators", {"custody.dev/operators": "true"})
TRANSPORT_SETTINGS = ("HOST", "PORT", "TLS_DIR", "PEER_PORT", "HEALTH_PORT", "ALLOW_PLAINTEXT", "TRUST_DOMAIN")

Manifest = dict[str, Any]
Edge = tuple[str, str]


# --- the project, as the code declares it -------------------------------------------------------------------------


def project_version() -> str:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]


def k8s_name(service: str) -> str:
    """Kubernetes and compose names cannot hold underscores: ai_gateway is ai-gateway there."""
    return service.replace("_", "-")


def catalog_call_graph() -> set[Edge]:
    return {(name, callee) for name, spec in SERVICES.items() for callee in spec.calls}


def settings_call_graph() -> set[Edge]:
    """The call graph as the client configuration declares it: one `<peer>_address` setting per callee."""
    return {
        (name, field.removesuffix("_address"))
        for name in SERVICES
        for field in settings_class(name).model_fields
        if field.endswith("_address")
    }


def call_graph_problems() -> list[str]:
    catalog, declared = catalog_call_graph(), settings_call_graph()
    return [f"catalog says {a} calls {b} but {a} has no {b}_address setting" for a, b in sorted(catalog - declared)] + [
        f"{a} has a {b}_address setting but the catalog does not let it call {b}" for a, b in sorted(declared - catalog)
    ]


def setting_names(service: str) -> set[str]:
    """Every variable `custody serve <service>` accepts; any other CUSTODY_<SERVICE>_* stops it at start."""
    prefix = env_prefix(service)
    fields = set(settings_class(service).model_fields)
    return {prefix + field.upper() for field in fields} | {prefix + CONFIG_FILE_SUFFIX}


def witnessed_peers(witness: str = WITNESS) -> tuple[str, ...]:
    """The authorities whose checkpoints the witness checks: those that deliver to it (call it)."""
    return tuple(name for name in callers_of(witness) if name in AUTHORITIES)


def ledger_key_name(service: str) -> str:
    """The file `custody init` writes the service's checkpoint signing key to, under keys/."""
    return f"{service}.ledger.key"


def ledger_vkey_name(service: str) -> str:
    return f"{service}.ledger.vkey"


def ledger_key_mode_accepted(mode: int) -> bool:
    """Whether the service accepts a ledger key file of this mode: its own check (load_signer) run on a throwaway
    key, so the rule comes from the code."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / ledger_key_name("probe")
        path.write_text(generate_note_key("probe")[0] + "\n", encoding="utf-8")
        path.chmod(mode)
        try:
            load_signer(path)
        except PermissionError:
            return False
    return True


@dataclass(frozen=True)
class Listeners:
    """What a server listens on, as its own settings class resolves its variables."""

    public: int
    peer: int | None  # mutual TLS for its callers (TLS only)
    health: int | None  # plaintext health-only (if set)
    tls_dir: str | None
    allow_plaintext: bool


def listeners(service: str, env: Mapping[str, Any]) -> Listeners | str:
    """The server's listeners from the deployment's variables, or the configuration error `custody serve` would
    stop with (plaintext on a non-loopback host without ALLOW_PLAINTEXT, clashing ports...): the code's rules."""
    prefix = env_prefix(service)
    chosen = {prefix + key: env[prefix + key] for key in TRANSPORT_SETTINGS if isinstance(env.get(prefix + key), str)}
    try:
        settings = settings_class(service).load(environ=chosen)
    except ConfigError as exc:
        return str(exc)
    tls_dir = str(settings.tls_dir) if settings.tls_dir is not None else None
    return Listeners(
        settings.port, settings.resolved_peer_port, settings.health_port, tls_dir, settings.allow_plaintext
    )


def metrics_problems(docs: list[Manifest]) -> list[str]:
    """Each server serves its metrics where Prometheus looks: METRICS_PORT set to the container port named
    metrics (9464, which its Service exposes under that name for a ServiceMonitor), and the pod template's
    prometheus.io annotations pointing at it."""
    problems = []
    for doc in docs:
        if doc.get("kind") not in POD_SPEC_KINDS:
            continue
        template = (doc.get("spec") or {}).get("template") or {}
        pod = next(iter(pods([doc])))
        service = pod.serves()
        if service is None:
            continue
        container, env = server_env(docs, pod)
        variable = env_prefix(service) + "METRICS_PORT"
        if str(env.get(variable)) != str(METRICS_PORT):
            problems.append(f"{pod.workload}: {variable} is {env.get(variable)!r}, not {METRICS_PORT}")
        if named_port(container, METRICS_PORT_NAME) != (METRICS_PORT, METRICS_PORT_NAME):
            problems.append(f"{pod.workload}: must declare containerPort {METRICS_PORT} named {METRICS_PORT_NAME}")
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        wanted = {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(METRICS_PORT),
            "prometheus.io/path": "/metrics",
        }
        if {k: annotations.get(k) for k in wanted} != wanted:
            problems.append(f"{pod.workload}: pod annotations must be {wanted}")
    return problems


def peer_port(service: str) -> int:
    """Where callers reach a service over mutual TLS: its catalog port + the offset the settings default to."""
    return SERVICES[service].default_port + PEER_PORT_OFFSET


def tls_key_mode_accepted(mode: int) -> bool:
    """Whether the service accepts a TLS key file of this mode: its own check (TlsDirectory) on a throwaway one."""
    with tempfile.TemporaryDirectory() as directory:
        issued = CertificateAuthority.create().issue("probe")
        tls = TlsDirectory(Path(directory))
        tls.certificate.write_bytes(issued.certificate_pem)
        tls.key.write_bytes(issued.key_pem)
        tls.ca.write_bytes(issued.certificate_pem)
        tls.key.chmod(mode)
        try:
            tls.read_raw()
        except TlsFilesError:
            return False
    return True


def console_settings(env: Mapping[str, Any]) -> ConsoleSettings | str:
    """The console's settings from the deployment's variables, or the configuration error `custody serve console`
    would stop with: the code's rules. Unknown variables are left to the settings checks, which name them."""
    known = setting_names(CONSOLE) - {env_prefix(CONSOLE) + CONFIG_FILE_SUFFIX}
    chosen = {name: value for name, value in env.items() if name in known and isinstance(value, str)}
    try:
        return ConsoleSettings.load(environ=chosen)
    except ConfigError as exc:
        return str(exc)


def served_tls_dir(process: str, env: Mapping[str, Any]) -> str | None:
    """The certificate directory a server or the console serves TLS from (None: plaintext, or a configuration
    error the settings checks report)."""
    if process == CONSOLE:
        found = console_settings(env)
        return str(found.tls_dir) if isinstance(found, ConsoleSettings) and found.tls_dir is not None else None
    listening = listeners(process, env)
    return listening.tls_dir if isinstance(listening, Listeners) else None


def console_address_problems() -> list[str]:
    """The console has an address setting for every service, and for nothing else: it calls all four."""
    declared = {field.removesuffix("_address") for field in ConsoleSettings.model_fields if field.endswith("_address")}
    return [f"the console has no {name}_address setting" for name in sorted(set(SERVICES) - declared)] + [
        f"the console has a {name}_address setting, and {name} is no service"
        for name in sorted(declared - set(SERVICES))
    ]


# --- tools --------------------------------------------------------------------------------------------------------


class ToolMissing(AssertionError):
    """A validation tool the lock installs is absent: fail loudly rather than skip the validation."""


def venv_tool(name: str) -> Path:
    """The tool the hashed lock installed next to this interpreter (not whatever is on PATH)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise ToolMissing(f"{path} is missing: `make install` installs it from requirements.lock (dev extra)")
    return path


def run_tool(args: list[str | Path], cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def render_overlay(overlay_dir: Path) -> str:
    result = run_tool([venv_tool("kubectl"), "kustomize", overlay_dir])
    if result.returncode != 0:
        raise AssertionError(f"kubectl kustomize {overlay_dir} failed:\n{result.stderr}")
    return result.stdout


def render_with_component(overlay_dir: Path, component: Path) -> str:
    """An overlay with a component added, as a user's kustomization would add it (kustomize wants relative paths)."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        (root / "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [os.path.relpath(overlay_dir, root)],
                    "components": [os.path.relpath(component, root)],
                }
            ),
            encoding="utf-8",
        )
        return render_overlay(root)


def load_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def dump_manifests(docs: Iterable[Manifest]) -> str:
    return yaml.safe_dump_all(list(docs), sort_keys=False)


def _tool_output_problems(tool: str, result: subprocess.CompletedProcess[str]) -> list[str]:
    if result.returncode == 0:
        return []
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return [f"{tool}: {line}" for line in lines] or [f"{tool}: exit code {result.returncode}, no output"]


def kubernetes_schema_problems(path: Path, version: str = KUBERNETES_VERSION) -> list[str]:
    """kubernetes-validate --strict: schema errors and unknown fields, against the bundled Kubernetes schemas."""
    args: list[str | Path] = [venv_tool("kubernetes-validate"), "--strict", "--quiet", "-k", version, path]
    return _tool_output_problems("kubernetes-validate", run_tool(args))


def compose_schema_problems(path: Path) -> list[str]:
    """check-jsonschema against the Compose Specification schema it ships (no download)."""
    args: list[str | Path] = [venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", path]
    return _tool_output_problems("check-jsonschema", run_tool(args))


# --- pods in rendered Kubernetes manifests ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Pod:
    """A pod template: what a workload would run, with the labels policies and Services select on."""

    workload: str
    namespace: str
    labels: Mapping[str, str]
    spec: Mapping[str, Any]

    def containers(self, *lists: str) -> Iterator[Mapping[str, Any]]:
        for key in lists or CONTAINER_LISTS:
            yield from self.spec.get(key) or []

    @property
    def role(self) -> tuple[str, str] | None:
        """("serve" | "migrate", service) from what the main container runs (the image's entry point is custody)."""
        for container in self.containers("containers"):
            found = container_role(container)
            if found:
                return found
        return None

    @property
    def service(self) -> str | None:
        return self.role[1] if self.role else None

    @property
    def process(self) -> str | None:
        """What `custody serve` runs here: a service or the console (None: a migration, or nothing of ours)."""
        return self.role[1] if self.role and self.role[0] == "serve" and self.role[1] in PROCESS_NAMES else None

    @property
    def console(self) -> bool:
        return self.process == CONSOLE

    def serves(self) -> str | None:
        """The service this pod's server serves (never the console, which is no service)."""
        return self.role[1] if self.role and self.role[0] == "serve" and self.role[1] in SERVICES else None


def container_role(container: Mapping[str, Any]) -> tuple[str, str] | None:
    argv = [str(a) for a in (container.get("command") or [PROJECT_IMAGE])] + [
        str(a) for a in container.get("args") or []
    ]
    if len(argv) >= 3 and Path(argv[0]).name == PROJECT_IMAGE and argv[1] in ("serve", "migrate"):
        return argv[1], argv[2]
    return None


def pods(docs: Iterable[Manifest]) -> list[Pod]:
    found = []
    for doc in docs:
        kind, meta = doc.get("kind"), doc.get("metadata") or {}
        if kind == "Pod":
            template: Mapping[str, Any] = doc
        elif kind in POD_SPEC_KINDS:
            template = (doc.get("spec") or {}).get("template") or {}
        elif kind == "CronJob":
            template = ((doc.get("spec") or {}).get("jobTemplate") or {}).get("spec", {}).get("template") or {}
        else:
            continue
        found.append(
            Pod(
                workload=f"{kind}/{meta.get('name')}",
                namespace=meta.get("namespace", "default"),
                labels=(template.get("metadata") or {}).get("labels") or {},
                spec=template.get("spec") or {},
            )
        )
    return found


def _of_kind(docs: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc.get("kind") == kind]


def _namespace(doc: Manifest) -> str:
    return (doc.get("metadata") or {}).get("namespace", "default")


def _name(doc: Manifest) -> str:
    return str((doc.get("metadata") or {}).get("name"))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label selector semantics: matchLabels and matchExpressions, all must hold; {} matches all."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        holds = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not holds:
            return False
    return True


def named_port(container: Mapping[str, Any], name: str) -> tuple[int, str] | None:
    for port in container.get("ports") or []:
        if port.get("name") == name:
            return int(port["containerPort"]), name
    return None


def grpc_port(container: Mapping[str, Any]) -> tuple[int, str] | None:
    return named_port(container, PUBLIC_PORT_NAME)


def declared_port(container: Mapping[str, Any], port: Any) -> int | None:
    """The container port a probe's port (a number or a port name) means, if the container declares it."""
    if port is None:
        return None
    for declared in container.get("ports") or []:
        if port in (declared.get("name"), declared.get("containerPort")):
            return int(declared["containerPort"])
    return None


def _server_container(pod: Pod) -> Mapping[str, Any] | None:
    return next((c for c in pod.containers("containers") if container_role(c)), None)


# --- Kubernetes checks --------------------------------------------------------------------------------------------


def probe_problems(docs: list[Manifest]) -> list[str]:
    """Each server declares its three listeners as named container ports (grpc at the catalog port, grpc-peer and
    health where its settings put them), and its readiness and liveness probes ask the health-only port (native
    gRPC probes cannot speak TLS) for its own gRPC service name; no probe points at a port its container lacks."""
    problems = []
    for pod in pods(docs):
        for container in pod.containers():
            declared = {int(p["containerPort"]) for p in container.get("ports") or []}
            for kind in PROBES:
                for handler in ("grpc", "httpGet", "tcpSocket"):
                    action = (container.get(kind) or {}).get(handler)
                    if action and declared_port(container, action.get("port")) is None:
                        problems.append(
                            f"{pod.workload} {container['name']}: {kind} asks port {action.get('port')}, "
                            f"which the container does not declare ({sorted(declared)})"
                        )
        if pod.console:
            problems += _console_probe_problems(docs, pod)
        service = pod.serves()
        if service is None:
            continue
        spec, (container, env) = SERVICES[service], server_env(docs, pod)
        port = grpc_port(container)
        if port is None or port[0] != spec.default_port:
            problems.append(f"{pod.workload}: {service} must declare containerPort {spec.default_port} named grpc")
            continue
        found = listeners(service, env)
        if isinstance(found, str) or found.health is None:
            problems.append(
                f"{pod.workload}: {service} has no health-only port ({env_prefix(service)}HEALTH_PORT): probes "
                "cannot speak TLS"
            )
            continue
        for name, number in ((PEER_PORT_NAME, found.peer), (HEALTH_PORT_NAME, found.health)):
            if number is not None and named_port(container, name) != (number, name):
                problems.append(f"{pod.workload}: {service} must declare containerPort {number} named {name}")
        for kind in ("readinessProbe", "livenessProbe"):
            grpc = (container.get(kind) or {}).get("grpc")
            if not grpc:
                problems.append(f"{pod.workload}: {service} has no native gRPC {kind}")
                continue
            if grpc.get("port") != found.health:
                problems.append(
                    f"{pod.workload}: {kind} asks port {grpc.get('port')}, the health port is {found.health}"
                )
            if grpc.get("service") != spec.full_name:
                problems.append(f"{pod.workload}: {kind} asks for {grpc.get('service')!r}, not {spec.full_name!r}")
    return problems


def _console_probe_problems(docs: list[Manifest], pod: Pod) -> list[str]:
    """The console declares its one port, named https, and its readiness and liveness probes (and its startup probe,
    if any) GET /healthz there in the scheme it serves: HTTPS with a TLS directory (the kubelet does not verify the
    certificate). There is no gRPC health on the console."""
    container, env = server_env(docs, pod)
    settings = console_settings(env)
    if isinstance(settings, str):
        return []  # settings_problems reports it
    if named_port(container, CONSOLE_PORT_NAME) != (settings.port, CONSOLE_PORT_NAME):
        return [f"{pod.workload}: the console must declare containerPort {settings.port} named {CONSOLE_PORT_NAME}"]
    problems = []
    scheme = "HTTPS" if settings.tls_dir is not None else "HTTP"
    for kind in PROBES:
        probe = container.get(kind)
        if probe is None and kind == "startupProbe":
            continue
        action = (probe or {}).get("httpGet")
        if not action:
            problems.append(f"{pod.workload}: the console has no httpGet {kind} on {CONSOLE_HEALTH_PATH}")
            continue
        if action.get("path") != CONSOLE_HEALTH_PATH:
            problems.append(f"{pod.workload}: {kind} asks {action.get('path')!r}, not {CONSOLE_HEALTH_PATH!r}")
        if declared_port(container, action.get("port")) != settings.port:
            problems.append(f"{pod.workload}: {kind} asks port {action.get('port')}, the console's is {settings.port}")
        if action.get("scheme", "HTTP") != scheme:
            problems.append(
                f"{pod.workload}: {kind} speaks {action.get('scheme', 'HTTP')} to a console that serves {scheme}"
            )
    return problems


def listening_ports(process: str) -> dict[int, str]:
    """Port number -> container port name of what a process's Service exposes: a service's catalog port (TLS, for
    people), peer port (mutual TLS, for its callers) and metrics port (for Prometheus); the console's one HTTPS
    port."""
    if process == CONSOLE:
        return {CONSOLE_DEFAULT_PORT: CONSOLE_PORT_NAME}
    return {
        SERVICES[process].default_port: PUBLIC_PORT_NAME,
        peer_port(process): PEER_PORT_NAME,
        METRICS_PORT: METRICS_PORT_NAME,
    }


def service_problems(docs: list[Manifest]) -> list[str]:
    """Each Service selects the pods of one server, on target ports those pods declare: the catalog port (TLS, for
    people) and the peer port (mutual TLS, for its callers), nothing else; each server has a Service. The console's
    Service exposes its HTTPS port and nothing else."""
    problems = []
    all_pods = pods(docs)
    covered: set[str] = set()
    for svc in _of_kind(docs, "Service"):
        name, spec = _name(svc), svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector:
            problems.append(f"Service/{name}: has no selector")
            continue
        matched = [
            p
            for p in all_pods
            if p.namespace == _namespace(svc) and all(p.labels.get(k) == v for k, v in selector.items())
        ]
        if not matched:
            problems.append(f"Service/{name}: selector {selector} matches no pod template")
            continue
        served = {p.process for p in matched}
        if len(served) != 1 or None in served:
            problems.append(f"Service/{name}: selector {selector} matches pods other than one server: {served}")
            continue
        service = served.pop()
        assert service is not None
        covered.add(service)
        listens_on = listening_ports(service)
        for port in spec.get("ports") or []:
            target = port.get("targetPort", port.get("port"))
            for pod in matched:
                declared = [p for c in pod.containers("containers") for p in c.get("ports") or []]
                hit = next((p for p in declared if p.get("name") == target or p.get("containerPort") == target), None)
                if hit is None:
                    problems.append(f"Service/{name}: targetPort {target!r} is not a port of {pod.workload}")
                elif port.get("port") in listens_on and hit.get("name") != listens_on[port["port"]]:
                    problems.append(
                        f"Service/{name}: port {port['port']} leads to {pod.workload}'s {hit.get('name')!r} port, "
                        f"not its {listens_on[port['port']]!r} listener"
                    )
        exposed = {port.get("port") for port in spec.get("ports") or []}
        expected = set(listens_on)
        for number in sorted(exposed - expected, key=str):
            if service == CONSOLE:
                problems.append(f"Service/{name}: port {number} is not the console's port {CONSOLE_DEFAULT_PORT}")
                continue
            problems.append(
                f"Service/{name}: port {number} is neither {service}'s port {SERVICES[service].default_port}, its "
                f"peer port {peer_port(service)} nor its metrics port {METRICS_PORT}"
            )
        for number in sorted(expected - exposed):
            problems.append(f"Service/{name}: does not expose {service}'s port {number}")
    for service in sorted({str(p.process) for p in all_pods if p.process} - covered):
        problems.append(f"{service} has no Service")
    return problems


def _namespace_labels(docs: Iterable[Manifest]) -> dict[str, dict[str, str]]:
    labels: dict[str, dict[str, str]] = {}
    for doc in docs:
        namespace = doc.get("metadata", {}).get("namespace")
        if namespace:
            labels.setdefault(namespace, {"kubernetes.io/metadata.name": namespace})
    for ns in _of_kind(docs, "Namespace"):
        labels[_name(ns)] = {**(ns["metadata"].get("labels") or {}), "kubernetes.io/metadata.name": _name(ns)}
    return labels


def _policy_types(policy: Manifest) -> set[str]:
    spec = policy.get("spec") or {}
    if "policyTypes" in spec:
        return set(spec["policyTypes"])
    return {"Ingress"} | ({"Egress"} if "egress" in spec else set())


def _peer_matches(
    peer: Mapping[str, Any], policy_ns: str, pod: Pod, namespaces: Mapping[str, Mapping[str, str]]
) -> bool:
    if "ipBlock" in peer:
        # An address block may contain pod addresses: count it as reaching every pod (its ports decide).
        return True
    if "namespaceSelector" in peer:
        labels = namespaces.get(pod.namespace, {"kubernetes.io/metadata.name": pod.namespace})
        in_namespace = selector_matches(peer["namespaceSelector"], labels)
    else:
        in_namespace = pod.namespace == policy_ns
    return in_namespace and ("podSelector" not in peer or selector_matches(peer["podSelector"], pod.labels))


def _port_allowed(ports: list[Mapping[str, Any]] | None, number: int, name: str) -> bool:
    if not ports:
        return True
    for port in ports:
        if port.get("protocol", "TCP") != "TCP":
            continue
        value = port.get("port")
        if value is None or value == name:
            return True
        if isinstance(value, int) and (value == number or value <= number <= int(port.get("endPort", value))):
            return True
    return False


def _allows(
    direction: str,
    policies: list[Manifest],
    src: Pod,
    dst: Pod,
    port: tuple[int, str],
    namespaces: Mapping[str, Mapping[str, str]],
) -> bool:
    """Whether the policies let src open a TCP connection to dst's port, judged on one side (Ingress: dst's
    policies; Egress: src's). A pod no policy of that direction selects is not isolated in that direction."""
    subject, other = (dst, src) if direction == "Ingress" else (src, dst)
    rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if direction in _policy_types(p)
        and _namespace(p) == subject.namespace
        and selector_matches((p.get("spec") or {}).get("podSelector"), subject.labels)
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in (policy.get("spec") or {}).get(rules_key) or []:
            peers = rule.get(peers_key)
            reaches = not peers or any(_peer_matches(peer, _namespace(policy), other, namespaces) for peer in peers)
            if reaches and _port_allowed(rule.get("ports"), *port):
                return True
    return False


def reachable(docs: list[Manifest], direction: str, port_name: str = PEER_PORT_NAME) -> set[tuple[Pod, str]]:
    """(pod template, process) pairs where one side of the NetworkPolicies lets the pod reach that process's
    servers on their port of that name (default: the mutual-TLS port services call each other on; the console's
    is named https)."""
    policies = _of_kind(docs, "NetworkPolicy")
    namespaces = _namespace_labels(docs)
    all_pods = pods(docs)
    found = set()
    for dst in all_pods:
        container = _server_container(dst) if dst.process else None
        port = named_port(container, port_name) if container else None
        if port is None:
            continue
        for src in all_pods:
            if _allows(direction, policies, src, dst, port, namespaces):
                found.add((src, str(dst.process)))
    return found


def network_graph(docs: list[Manifest], direction: str, port_name: str = PEER_PORT_NAME) -> set[Edge]:
    """Edges one side of the NetworkPolicies allows, from servers (and the console) to servers."""
    return {(str(src.process), dst) for src, dst in reachable(docs, direction, port_name) if src.process}


def network_policy_problems(docs: list[Manifest]) -> list[str]:
    """Default deny in both directions; the graph each side allows on the mutual-TLS ports EQUALS the call graph of
    the catalog; no service reaches a server's TLS port for people or its health-only port (operators' namespaces
    and the kubelet are not pods of these manifests); nothing that serves nothing reaches any of them. The console
    reaches every service's TLS port for people and nothing else; no pod reaches the console."""
    problems = []
    deny_all = [
        p
        for p in _of_kind(docs, "NetworkPolicy")
        if (p.get("spec") or {}).get("podSelector") in ({}, None)
        and _policy_types(p) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    if not deny_all:
        problems.append("no default-deny NetworkPolicy (podSelector {}, Ingress and Egress, no rules)")
    expected = catalog_call_graph()
    for direction in ("Ingress", "Egress"):
        problems += sorted(
            {
                f"NetworkPolicy {direction.lower()} lets {src.workload}, which serves nothing, reach {dst}"
                for name in (PEER_PORT_NAME, PUBLIC_PORT_NAME, HEALTH_PORT_NAME, CONSOLE_PORT_NAME)
                for src, dst in reachable(docs, direction, name)
                if not src.process
            }
        )
        allowed = network_graph(docs, direction)
        problems += [
            f"NetworkPolicy {direction.lower()} allows {a} -> {b}, which is not in the call graph"
            for a, b in sorted(allowed - expected)
        ]
        problems += [
            f"NetworkPolicy {direction.lower()} blocks {a} -> {b}, which the call graph needs"
            for a, b in sorted(expected - allowed)
        ]
        for name, what in ((PUBLIC_PORT_NAME, "TLS port for people"), (HEALTH_PORT_NAME, "plaintext health port")):
            problems += [
                f"NetworkPolicy {direction.lower()} lets {a} reach {b}'s {what} ({name}): "
                + (
                    "the console calls the TLS ports for people only"
                    if a == CONSOLE
                    else "services call their peers on the mutual-TLS port only"
                )
                for a, b in sorted(network_graph(docs, direction, name))
                if not (a == CONSOLE and name == PUBLIC_PORT_NAME)
            ]
        problems += _console_reach_problems(docs, direction)
    return problems + _operator_problems(docs) + _console_egress_problems(docs)


def _console_reach_problems(docs: list[Manifest], direction: str) -> list[str]:
    """On one side: the console reaches every service's TLS port for people (it calls all four as the signed-in
    person); no pod of the deployment reaches the console (people do, from outside these manifests)."""
    if not any(pod.console for pod in pods(docs)):
        return []
    allowed = {b for a, b in network_graph(docs, direction, PUBLIC_PORT_NAME) if a == CONSOLE}
    problems = [
        f"NetworkPolicy {direction.lower()} blocks console -> {name}'s TLS port for people ({PUBLIC_PORT_NAME}), "
        "which the console calls as the signed-in person"
        for name in SERVICES
        if name not in allowed
    ]
    return problems + sorted(
        {
            f"NetworkPolicy {direction.lower()} lets {src.workload} reach the console's {CONSOLE_PORT_NAME} port: "
            "people open it, no pod of the deployment"
            for src, _ in reachable(docs, direction, CONSOLE_PORT_NAME)
            if src.process
        }
    )


def _is_dns_rule(rule: Mapping[str, Any]) -> bool:
    """An egress rule to the cluster's DNS only (port 53 in namespace kube-system), as allow-dns-egress is."""
    ports, peers = rule.get("ports") or [], rule.get("to") or []
    kube_system = {"kubernetes.io/metadata.name": "kube-system"}
    return (
        bool(ports and peers)
        and all(port.get("port") == 53 for port in ports)
        and all((peer.get("namespaceSelector") or {}).get("matchLabels") == kube_system for peer in peers)
    )


def _is_collector_rule(rule: Mapping[str, Any], endpoint: str | None) -> bool:
    """An egress rule to the OTLP endpoint the console exports to only: its port, in its namespace (the endpoint's
    host is <service>.<namespace>.svc)."""
    if endpoint is None:
        return False
    address = urlsplit(endpoint)
    labels = (address.hostname or "").split(".")
    namespace = labels[1] if len(labels) > 2 and labels[2] == "svc" else None
    ports, peers = rule.get("ports") or [], rule.get("to") or []
    return (
        namespace is not None
        and bool(ports and peers)
        and all(port.get("port") == address.port for port in ports)
        and all(
            (peer.get("namespaceSelector") or {}).get("matchLabels") == {"kubernetes.io/metadata.name": namespace}
            for peer in peers
        )
    )


def _console_egress_problems(docs: list[Manifest]) -> list[str]:
    """Every egress rule that applies to the console is DNS, the collector it exports traces to, or names server
    pods of this namespace (no address block, no other namespace): which of their ports it may reach, the graph
    checks above decide."""
    problems = []
    all_pods = pods(docs)
    for console in (pod for pod in all_pods if pod.console):
        settings = console_settings(server_env(docs, console)[1])
        exports = isinstance(settings, ConsoleSettings) and settings.telemetry_exporter == "otlp"
        endpoint = settings.otlp_endpoint if isinstance(settings, ConsoleSettings) and exports else None
        for policy in _of_kind(docs, "NetworkPolicy"):
            spec = policy.get("spec") or {}
            if (
                "Egress" not in _policy_types(policy)
                or _namespace(policy) != console.namespace
                or not selector_matches(spec.get("podSelector"), console.labels)
            ):
                continue
            for rule in spec.get("egress") or []:
                if _is_dns_rule(rule) or _is_collector_rule(rule, endpoint):
                    continue
                peers = rule.get("to") or []
                if not peers:
                    problems.append(f"NetworkPolicy/{_name(policy)} lets the console reach any address")
                for peer in peers:
                    if set(peer) != {"podSelector"}:
                        problems.append(
                            f"NetworkPolicy/{_name(policy)} lets the console reach {peer}: beside DNS and its "
                            "collector, it calls the services' pods only"
                        )
                        continue
                    for pod in all_pods:
                        if (
                            pod.namespace == _namespace(policy)
                            and selector_matches(peer["podSelector"], pod.labels)
                            and not pod.serves()
                        ):
                            problems.append(
                                f"NetworkPolicy/{_name(policy)} lets the console reach {pod.workload}, which is no "
                                "service"
                            )
    return problems


def outside_reach(
    docs: list[Manifest], who: str, namespace: str, namespace_labels: Mapping[str, str], labels: Mapping[str, str]
) -> dict[tuple[str, str], tuple[int, bool]]:
    """(process, port name) -> (port number, whether the ingress side of the NetworkPolicies lets a pod from outside
    these manifests, in a namespace of those labels and with those pod labels, reach that port of its servers)."""
    visitor = Pod(who, namespace, labels, {})
    namespaces = {
        **_namespace_labels(docs),
        namespace: {**namespace_labels, "kubernetes.io/metadata.name": namespace},
    }
    policies = _of_kind(docs, "NetworkPolicy")
    found = {}
    for dst in pods(docs):
        container = _server_container(dst) if dst.process else None
        if container is None:
            continue
        for name in (PUBLIC_PORT_NAME, PEER_PORT_NAME, HEALTH_PORT_NAME, CONSOLE_PORT_NAME):
            port = named_port(container, name)
            if port is not None:
                allowed = _allows("Ingress", policies, visitor, dst, port, namespaces)
                found[(str(dst.process), name)] = (port[0], allowed)
    return found


def _operator_problems(docs: list[Manifest]) -> list[str]:
    """Operators' tools, in a namespace labelled as network-policies.yaml assumes, reach every server's TLS port
    and the console's, and no mutual-TLS or health port (ingress: their own namespace's egress is theirs to
    decide)."""
    namespace, labels = OPERATORS_NAMESPACE
    problems = []
    for (process, name), (number, allowed) in outside_reach(docs, "operators' tools", namespace, labels, {}).items():
        if allowed != (name in PEOPLE_PORTS):
            verb = "lets operators reach" if allowed else "keeps operators from"
            problems.append(f"NetworkPolicy ingress {verb} {process}'s {name} port {number}")
    return problems


def _configmaps(docs: Iterable[Manifest]) -> dict[tuple[str, str], Mapping[str, str]]:
    return {(_namespace(d), _name(d)): d.get("data") or {} for d in _of_kind(docs, "ConfigMap")}


def container_env(
    container: Mapping[str, Any], namespace: str, configmaps: Mapping[tuple[str, str], Mapping[str, str]]
) -> dict[str, Any]:
    """Variable name -> value (a string, or the valueFrom mapping) as the container will see them."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref:
            data = configmaps.get((namespace, ref["name"]))
            if data is None:
                env[f"<missing ConfigMap {ref['name']}>"] = None
                continue
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
    for item in container.get("env") or []:
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def secret_references(container: Mapping[str, Any], pod: Pod) -> set[str]:
    """Secrets a container can read: through env, envFrom, or any secret/projected volume of its pod."""
    names = {
        item["valueFrom"]["secretKeyRef"]["name"]
        for item in container.get("env") or []
        if (item.get("valueFrom") or {}).get("secretKeyRef")
    }
    names |= {s["secretRef"]["name"] for s in container.get("envFrom") or [] if s.get("secretRef")}
    mounted = {m["name"] for m in container.get("volumeMounts") or []}
    for volume in pod.spec.get("volumes") or []:
        if volume["name"] not in mounted:
            continue
        if volume.get("secret"):
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources") or []:
            if source.get("secret"):
                names.add(source["secret"]["name"])
    return names


def provider_key_problems(docs: list[Manifest]) -> list[str]:
    """The provider key (its Secret, or any variable of its name) reaches the ai_gateway server and no other pod."""
    problems = []
    configmaps = _configmaps(docs)
    for (namespace, name), data in configmaps.items():
        if PROVIDER_KEY_ENV in data:
            problems.append(f"ConfigMap {namespace}/{name} holds {PROVIDER_KEY_ENV}: keys belong in a Secret")
    gateway_has_key = False
    for pod in pods(docs):
        for container in pod.containers():
            sees_secret = PROVIDER_KEY_SECRET in secret_references(container, pod)
            sees_variable = PROVIDER_KEY_ENV in container_env(container, pod.namespace, configmaps)
            if not (sees_secret or sees_variable):
                continue
            if pod.serves() == "ai_gateway" and container is _server_container(pod):
                gateway_has_key = True
            else:
                what = f"Secret {PROVIDER_KEY_SECRET}" if sees_secret else f"variable {PROVIDER_KEY_ENV}"
                problems.append(f"{pod.workload} container {container['name']} gets the provider key ({what})")
    if any(p.serves() == "ai_gateway" for p in pods(docs)) and not gateway_has_key:
        problems.append(f"the ai_gateway server does not get {PROVIDER_KEY_ENV} from Secret {PROVIDER_KEY_SECRET}")
    return problems


def allowed_secret_readers(secret: str) -> set[tuple[str, str]] | None:
    """(role, service) pairs that may read a Secret of the Custody naming scheme; None for other Secrets."""
    if secret == PROVIDER_KEY_SECRET:
        return {("serve", "ai_gateway")}
    if secret == S3_KEY_SECRET:
        return {("serve", "runs")}
    if secret == CREDENTIALS_SECRET:
        return {("serve", name) for name in SERVICES}
    if secret == tls_secret(CONSOLE):
        return {("serve", CONSOLE)}
    for name, spec in SERVICES.items():
        if secret == f"{k8s_name(name)}-token":
            return {("serve", name)}
        if spec.stateful and secret == database_secret(name):
            return {("serve", name)}
        if spec.stateful and secret == migration_database_secret(name):
            return {("migrate", name)}
        if spec.stateful and secret == f"{k8s_name(name)}-page-token":
            return {("serve", name)}
        if name in AUTHORITIES and secret == ledger_key_secret(name):
            return {("serve", name)}
        if secret == tls_secret(name):
            return {("serve", name)}
        if name in SIGNING_SERVICES and secret == content_signer_secret(name):
            return {("serve", name)}
    return None


def content_signer_secret(service: str) -> str:
    """The C2PA signer's key and chain: the signing server's only."""
    return f"{k8s_name(service)}-c2pa"


def database_secret(service: str) -> str:
    """The runtime role's URL: the server's only (and its wait-for-schema init container's)."""
    return f"{k8s_name(service)}-database"


def migration_database_secret(service: str) -> str:
    """The owner role's URL: the migration Job's only."""
    return f"{k8s_name(service)}-migration-database"


def secret_scope_problems(docs: list[Manifest]) -> list[str]:
    """A service's token, database URL, page-token key and ledger key reach only that service's pods; unknown
    Secrets are not referenced."""
    problems = []
    for pod in pods(docs):
        for container in pod.containers():
            for secret in sorted(secret_references(container, pod)):
                readers = allowed_secret_readers(secret)
                if readers is None:
                    problems.append(f"{pod.workload} reads Secret {secret}, which no Custody component owns")
                elif pod.role not in readers:
                    meant = ", ".join(f"{role} {service}" for role, service in sorted(readers))
                    problems.append(f"{pod.workload} reads Secret {secret}, which is only for: {meant}")
    return problems


def referenced_secrets(docs: list[Manifest]) -> set[str]:
    return {s for pod in pods(docs) for c in pod.containers() for s in secret_references(c, pod)}


def referenced_configmaps(docs: list[Manifest]) -> set[str]:
    """ConfigMaps the pods read (env, envFrom, volumes) that the manifests do not themselves contain: those an
    operator creates, like ledger-verifier-keys."""
    names = set()
    for pod in pods(docs):
        for container in pod.containers():
            names |= {s["configMapRef"]["name"] for s in container.get("envFrom") or [] if s.get("configMapRef")}
            names |= {
                item["valueFrom"]["configMapKeyRef"]["name"]
                for item in container.get("env") or []
                if (item.get("valueFrom") or {}).get("configMapKeyRef")
            }
        for volume in pod.spec.get("volumes") or []:
            if volume.get("configMap"):
                names.add(volume["configMap"]["name"])
            for source in (volume.get("projected") or {}).get("sources") or []:
                if source.get("configMap"):
                    names.add(source["configMap"]["name"])
    return names - {_name(d) for d in _of_kind(docs, "ConfigMap")}


# --- the ledgers (tamper evidence) --------------------------------------------------------------------------------


def ledger_key_secret(service: str) -> str:
    return f"{k8s_name(service)}-ledger-key"


def tls_secret(service: str) -> str:
    """The kubernetes.io/tls Secret of a server's certificate (secrets.sh or cert-manager writes it)."""
    return f"{k8s_name(service)}-tls"


def mount_of(container: Mapping[str, Any], path: str) -> Mapping[str, Any] | None:
    """The volumeMount a path lies in: the deepest mountPath at or above it."""
    found: Mapping[str, Any] | None = None
    for mount in container.get("volumeMounts") or []:
        root = str(mount["mountPath"]).rstrip("/")
        if (path == root or path.startswith(root + "/")) and (
            found is None or len(root) > len(str(found["mountPath"]).rstrip("/"))
        ):
            found = mount
    return found


def pod_volume(pod: Pod, name: str) -> Mapping[str, Any]:
    return next((v for v in pod.spec.get("volumes") or [] if v["name"] == name), {})


@dataclass(frozen=True)
class MountedFile:
    """A file of a secret or configMap volume as a pod's process sees it."""

    source: str  # "secret" | "configMap" | another volume type
    name: str  # the Secret's or ConfigMap's name
    key: str | None  # the key whose value the file holds (None: no such file in the volume)
    mode: int  # as the kubelet leaves it: the item's or default mode, ORed with 0440 under an fsGroup
    group_readable_by_pod: bool  # the kubelet gives the file the pod's fsGroup, a group of every container
    read_only: bool


def mounted_file(pod: Pod, container: Mapping[str, Any], path: str) -> MountedFile | None:
    """Where a file path a container is given comes from. Secret and configMap files are written by the kubelet
    as root, mode `items[].mode` or `defaultMode` (0644 unset); with an fsGroup it then ORs 0440 into the mode and
    gives the file that group (pkg/volume/volume_linux.go, SetVolumeOwnership: these volumes are read-only)."""
    mount = mount_of(container, path)
    if mount is None:
        return None
    volume = pod_volume(pod, mount["name"])
    fs_group = (pod.spec.get("securityContext") or {}).get("fsGroup")
    read_only = bool(mount.get("readOnly"))
    for kind, name_field in (("secret", "secretName"), ("configMap", "name")):
        source = volume.get(kind)
        if source is None:
            continue
        relative = path[len(str(mount["mountPath"]).rstrip("/")) + 1 :]
        items = source.get("items")
        item = next((i for i in items if i["path"] == relative), None) if items else {"key": relative}
        mode = int((item or {}).get("mode", source.get("defaultMode", 0o644)))
        if fs_group is not None:
            mode |= 0o440
        key = (item or {}).get("key") if relative else None
        return MountedFile(kind, str(source.get(name_field)), key, mode, fs_group is not None, read_only)
    kind = next((k for k in volume if k != "name"), "<no volume>")
    return MountedFile(kind, str(mount["name"]), None, 0, False, read_only)


def credentials_problems(docs: list[Manifest]) -> list[str]:
    """Every server reads its CREDENTIALS_FILE from Secret custody-credentials through a whole-volume mount. The
    kubelet updates such a volume in place (it swaps a `..data` symlink, which the service follows and re-reads
    within about a second); a subPath mount never sees an update, so a revoked token would keep working there
    until the pod restarts."""
    problems = []
    configmaps = _configmaps(docs)
    for pod in pods(docs):
        service, container = pod.serves(), _server_container(pod)
        if service is None or container is None:
            continue
        variable = env_prefix(service) + "CREDENTIALS_FILE"
        path = container_env(container, pod.namespace, configmaps).get(variable)
        absolute = isinstance(path, str) and path.startswith("/")
        if absolute and (mount_of(container, str(path)) or {}).get("subPath"):
            problems.append(
                f"{pod.workload}: {variable} ({path}) is mounted with subPath, which never receives updates: a "
                "revoked token would keep working until the pod restarts"
            )
            continue
        found = mounted_file(pod, container, str(path)) if absolute else None
        if found is None or (found.source, found.name, found.key) != ("secret", CREDENTIALS_SECRET, "credentials"):
            origin = "no volume" if found is None else f"{found.source} {found.name}"
            problems.append(
                f"{pod.workload}: {variable} ({path}) is not key credentials of Secret {CREDENTIALS_SECRET} "
                f"(it is in {origin})"
            )
    return problems


def _max_replicas(docs: list[Manifest]) -> dict[str, int]:
    """Workload -> the most pods it may run at once (replicas, or its autoscaler's maximum)."""
    counts = {
        f"{d.get('kind')}/{_name(d)}": int((d.get("spec") or {}).get("replicas", 1))
        for d in docs
        if d.get("kind") in POD_SPEC_KINDS
    }
    for hpa in _of_kind(docs, "HorizontalPodAutoscaler"):
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        counts[f"{target.get('kind')}/{target.get('name')}"] = int(hpa["spec"].get("maxReplicas", 1))
    return counts


def _ledger_key_problems(where: str, pod: Pod, container: Mapping[str, Any], env: Mapping[str, Any]) -> list[str]:
    service = str(pod.serves())
    variable, secret = env_prefix(service) + "LEDGER_KEY_FILE", ledger_key_secret(service)
    path = env.get(variable)
    if not isinstance(path, str) or not path.startswith("/"):
        return [f"{where}: {variable} must name the key file mounted from Secret {secret} (got {path!r})"]
    found = mounted_file(pod, container, path)
    if found is None or (found.source, found.name) != ("secret", secret) or found.key is None:
        origin = "no volume" if found is None else f"{found.source} {found.name}"
        return [f"{where}: {variable} ({path}) is not a file of Secret {secret} (it is in {origin})"]
    problems = []
    if not found.read_only:
        problems.append(f"{where}: the ledger key's mount must be readOnly")
    if not found.group_readable_by_pod:
        problems.append(
            f"{where}: no fsGroup: the kubelet writes the ledger key as root, mode {found.mode:04o}, which uid "
            f"{(pod.spec.get('securityContext') or {}).get('runAsUser')} cannot read"
        )
    if not ledger_key_mode_accepted(found.mode):
        problems.append(
            f"{where}: the ledger key would be mode {found.mode:04o}, which {service} refuses (others may read it or "
            "its group write it)"
        )
    return problems


def _checkpoint_log_problems(
    where: str,
    pod: Pod,
    container: Mapping[str, Any],
    env: Mapping[str, Any],
    claims: Mapping[tuple[str, str], Manifest],
    replicas: int,
    single_node: bool,
) -> list[str]:
    service = str(pod.serves())
    variable = env_prefix(service) + "LEDGER_CHECKPOINT_DIR"
    path = env.get(variable)
    if not isinstance(path, str) or not path.startswith("/"):
        return [f"{where}: {variable} must name a directory on a PersistentVolumeClaim (got {path!r})"]
    mount = mount_of(container, path)
    claim_name = (pod_volume(pod, mount["name"]).get("persistentVolumeClaim") or {}).get("claimName") if mount else None
    if mount is None or claim_name is None:
        return [f"{where}: {variable} ({path}) is not on a PersistentVolumeClaim: the checkpoint log must outlive pods"]
    problems = []
    if mount.get("readOnly"):
        problems.append(f"{where}: the checkpoint log's mount is readOnly")
    claim = claims.get((pod.namespace, claim_name))
    if claim is None:
        return [*problems, f"{where}: PersistentVolumeClaim {claim_name} is not in the manifests"]
    modes = set((claim.get("spec") or {}).get("accessModes") or [])
    if "ReadWriteOncePod" in modes:
        problems.append(f"PersistentVolumeClaim/{claim_name}: ReadWriteOncePod stops a second replica or surge pod")
    elif replicas > 1 and not single_node and "ReadWriteMany" not in modes:
        problems.append(
            f"PersistentVolumeClaim/{claim_name}: {pod.workload} may run {replicas} replicas, which share the "
            f"checkpoint log: it must be ReadWriteMany (has {sorted(modes)})"
        )
    return problems


def _peer_key_problems(where: str, pod: Pod, container: Mapping[str, Any], env: Mapping[str, Any]) -> list[str]:
    variable = env_prefix(WITNESS) + "LEDGER_PEER_KEYS_DIR"
    directory = env.get(variable)
    if not isinstance(directory, str) or not directory.startswith("/"):
        return [f"{where}: {variable} must name the directory of ConfigMap {LEDGER_VERIFIER_KEYS} (got {directory!r})"]
    problems = []
    for peer in witnessed_peers():
        found = mounted_file(pod, container, f"{directory.rstrip('/')}/{ledger_vkey_name(peer)}")
        if found is None or (found.source, found.name, found.key) != (
            "configMap",
            LEDGER_VERIFIER_KEYS,
            ledger_vkey_name(peer),
        ):
            problems.append(
                f"{where}: {directory}/{ledger_vkey_name(peer)} is not key {ledger_vkey_name(peer)} of ConfigMap "
                f"{LEDGER_VERIFIER_KEYS}: {WITNESS} cannot check {peer}'s checkpoints"
            )
    return problems


def server_env(docs: list[Manifest], pod: Pod) -> tuple[Mapping[str, Any], dict[str, Any]]:
    """A pod's server container and the variables it sees (ConfigMaps resolved)."""
    container = _server_container(pod)
    if container is None:
        raise LookupError(f"{pod.workload} runs no custody server")
    return container, container_env(container, pod.namespace, _configmaps(docs))


def ledger_problems(docs: list[Manifest], single_node: bool = False) -> list[str]:
    """Each authority's servers sign with the key of their own Secret, mounted read-only with a mode the service
    accepts, and log checkpoints to a PersistentVolumeClaim of their own that all their replicas can mount; the
    witness gets every witnessed peer's verifier key; no ConfigMap holds a private key."""
    problems = []
    configmaps = _configmaps(docs)
    claims = {(_namespace(d), _name(d)): d for d in _of_kind(docs, "PersistentVolumeClaim")}
    replicas = _max_replicas(docs)
    for (namespace, name), data in configmaps.items():
        if any(PRIVATE_NOTE_KEY_PREFIX in str(value) for value in data.values()):
            problems.append(f"ConfigMap {namespace}/{name} holds a private note key: keys belong in a Secret")
    mounted_by: dict[tuple[str, str], set[str]] = {}
    for pod in pods(docs):
        mounted = {m["name"] for c in pod.containers() for m in c.get("volumeMounts") or []}
        for volume in pod.spec.get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and volume["name"] in mounted:
                mounted_by.setdefault((pod.namespace, claim), set()).add(pod.workload)
        service, container = pod.serves(), _server_container(pod)
        if service not in AUTHORITIES or container is None:
            continue
        env = container_env(container, pod.namespace, configmaps)
        problems += _ledger_key_problems(pod.workload, pod, container, env)
        problems += _checkpoint_log_problems(
            pod.workload, pod, container, env, claims, replicas.get(pod.workload, 1), single_node
        )
        if service == WITNESS:
            problems += _peer_key_problems(pod.workload, pod, container, env)
    for (_, claim), workloads in sorted(mounted_by.items()):
        if len(workloads) > 1:
            problems.append(
                f"PersistentVolumeClaim/{claim} is mounted by {', '.join(sorted(workloads))}: each authority's "
                "checkpoint log is its own"
            )
    return problems


def tls_problems(docs: list[Manifest]) -> list[str]:
    """Each server's TLS_DIR is its own Secret <service>-tls mounted read-only, holding tls.crt, tls.key and ca.crt
    under those names, with a key mode the service accepts (root:fsGroup 0440, as for the ledger key); the
    console's likewise Secret console-tls."""
    problems = []
    for pod in pods(docs):
        service, container = pod.process, _server_container(pod)
        if service is None or container is None:
            continue
        tls_dir = served_tls_dir(service, server_env(docs, pod)[1])
        if tls_dir is None:
            continue  # settings_problems reports it
        secret = tls_secret(service)
        for file in TLS_FILES:
            mounted = mounted_file(pod, container, f"{tls_dir.rstrip('/')}/{file}")
            if mounted is None or (mounted.source, mounted.name, mounted.key) != ("secret", secret, file):
                origin = "nothing" if mounted is None else f"{mounted.source} {mounted.name} key {mounted.key}"
                problems.append(f"{pod.workload}: {tls_dir}/{file} is not key {file} of Secret {secret} ({origin})")
                continue
            if not mounted.read_only:
                problems.append(f"{pod.workload}: the TLS directory's mount must be readOnly")
            if file == KEY_FILE and not (mounted.group_readable_by_pod and tls_key_mode_accepted(mounted.mode)):
                problems.append(
                    f"{pod.workload}: the TLS key would be mode {mounted.mode:04o}"
                    f"{'' if mounted.group_readable_by_pod else ' without an fsGroup'}, which {service} cannot read "
                    "or refuses (others may read it or its group write it)"
                )
    return problems


def is_project_image(image: str, version: str) -> bool:
    """REGISTRY/.../custody:<project version> or .../custody@sha256:<digest>."""
    match = re.fullmatch(r"(?:[^@]+/)?([^/:@]+)(?::([^@/]+))?(?:@sha256:([0-9a-f]{64}))?", image)
    if not match or match.group(1) != PROJECT_IMAGE:
        return False
    return bool(match.group(3)) or match.group(2) == version


def image_problems(docs: list[Manifest], version: str) -> list[str]:
    """Every container and init container runs the project's image, at the project's version (or a digest)."""
    return [
        f"{pod.workload} container {c['name']} runs {c.get('image')!r}, not the project's image custody:{version}"
        for pod in pods(docs)
        for c in pod.containers()
        if not is_project_image(str(c.get("image")), version)
    ]


def _settings_env_problems(where: str, service: str, env: Mapping[str, Any], role: str) -> list[str]:
    problems = []
    known = setting_names(service)
    for name in sorted(env):
        if name.startswith("<missing"):
            problems.append(f"{where}: {name}")
        elif name.startswith("CUSTODY_") and name not in known:
            owner = next((s for s in PROCESS_NAMES if name.startswith(env_prefix(s))), None)
            reason = (
                f"{owner}'s setting, not {service}'s" if owner and owner != service else f"not a setting of {service}"
            )
            problems.append(f"{where}: {name} is {reason} (custody exits with a configuration error)")
    if role != "serve":
        return problems
    if service == CONSOLE:
        return problems + _console_settings_problems(where, env)
    prefix, spec = env_prefix(service), SERVICES[service]
    if env.get(prefix + "HOST") != "0.0.0.0":
        problems.append(f"{where}: {prefix}HOST must be 0.0.0.0 in a container (got {env.get(prefix + 'HOST')!r})")
    if str(env.get(prefix + "PORT", spec.default_port)) != str(spec.default_port):
        problems.append(f"{where}: {prefix}PORT is {env[prefix + 'PORT']}, the catalog port is {spec.default_port}")
    if spec.stateful and str(env.get(prefix + "AUTO_MIGRATE", "true")).lower() != "false":
        problems.append(f"{where}: {prefix}AUTO_MIGRATE must be false (the migration job migrates)")
    return problems + _transport_problems(where, service, env)


def _transport_problems(where: str, service: str, env: Mapping[str, Any]) -> list[str]:
    """A deployed server serves TLS (plaintext only on its health-only port), with its peer port where its callers'
    addresses expect it; whatever `custody serve` itself would refuse is reported in its own words."""
    prefix = env_prefix(service)
    found = listeners(service, env)
    if isinstance(found, str):
        return [f"{where}: {found}"]
    problems = []
    if found.tls_dir is None:
        problems.append(f"{where}: {prefix}TLS_DIR is not set: a deployed server serves TLS, never plaintext")
    if found.allow_plaintext:
        problems.append(f"{where}: {prefix}ALLOW_PLAINTEXT must not be true in a deployment")
    if found.tls_dir is not None and found.peer != peer_port(service):
        problems.append(f"{where}: the peer port is {found.peer}, its callers' addresses expect {peer_port(service)}")
    return problems


def _console_settings_problems(where: str, env: Mapping[str, Any]) -> list[str]:
    """A deployed console listens on every interface at its port and serves HTTPS (never plaintext), trusts the CA
    of its own certificate directory for the services' certificates, and marks cookies Secure; whatever `custody
    serve console` itself would refuse is reported in its own words."""
    prefix = env_prefix(CONSOLE)
    settings = console_settings(env)
    if isinstance(settings, str):
        return [f"{where}: {settings}"]
    problems = []
    if settings.host != "0.0.0.0":
        problems.append(f"{where}: {prefix}HOST must be 0.0.0.0 in a container (got {settings.host!r})")
    if settings.port != CONSOLE_DEFAULT_PORT:
        problems.append(f"{where}: {prefix}PORT is {settings.port}, the console's port is {CONSOLE_DEFAULT_PORT}")
    if settings.tls_dir is None:
        problems.append(f"{where}: {prefix}TLS_DIR is not set: a deployed console serves HTTPS, never plaintext")
        return problems
    if settings.allow_plaintext:
        problems.append(f"{where}: {prefix}ALLOW_PLAINTEXT must not be true in a deployment")
    if settings.resolved_ca_file != settings.tls_dir / CA_FILE:
        problems.append(
            f"{where}: the console trusts {settings.resolved_ca_file}, not the CA of its certificate directory "
            f"({settings.tls_dir / CA_FILE}), which issued the services' certificates"
        )
    if not settings.resolved_secure_cookies:
        problems.append(f"{where}: {prefix}SECURE_COOKIES is false: the session cookie holds the person's token")
    return problems


def _console_call_problems(where: str, env: Mapping[str, Any], resolve: Mapping[str, str]) -> list[str]:
    """The console addresses every service by the host that serves it, at its TLS port for people: it calls as the
    signed-in person, with no client certificate, so never on a peer port."""
    problems = []
    for service in SERVICES:
        variable = f"{env_prefix(CONSOLE)}{service.upper()}_ADDRESS"
        expected = f"{resolve.get(service, '<no host serves ' + service + '>')}:{SERVICES[service].default_port}"
        if env.get(variable) != expected:
            problems.append(f"{where}: {variable} is {env.get(variable)!r}, expected {expected!r}")
    return problems


def _address_problems(where: str, service: str, env: Mapping[str, Any], resolve: Mapping[str, str]) -> list[str]:
    """Each peer address names the host that serves that peer, at the peer's mutual-TLS port (the console: each
    service's TLS port for people)."""
    if service == CONSOLE:
        return _console_call_problems(where, env, resolve)
    problems = []
    for peer in SERVICES[service].calls:
        variable = f"{env_prefix(service)}{peer.upper()}_ADDRESS"
        expected = f"{resolve.get(peer, '<no host serves ' + peer + '>')}:{peer_port(peer)}"
        if env.get(variable) != expected:
            problems.append(f"{where}: {variable} is {env.get(variable)!r}, expected {expected!r}")
    return problems


def settings_problems(docs: list[Manifest]) -> list[str]:
    """Every CUSTODY_* variable a container sees is a setting of the service it runs (the console's: of
    ConsoleSettings); servers listen on all interfaces at the catalog port; peers are addressed through the Service
    selecting the peer's servers."""
    configmaps = _configmaps(docs)
    all_pods = pods(docs)
    hosts = {}
    for svc in _of_kind(docs, "Service"):
        selector = (svc.get("spec") or {}).get("selector") or {}
        for pod in all_pods:
            if selector and pod.serves() and all(pod.labels.get(k) == v for k, v in selector.items()):
                hosts[str(pod.serves())] = _name(svc)
    problems = []
    for pod in all_pods:
        if pod.role is None:
            continue
        role, service = pod.role
        for container in pod.containers():
            env = container_env(container, pod.namespace, configmaps)
            where = f"{pod.workload} {container['name']}"
            own_role = role if container is _server_container(pod) else "other"
            problems += _settings_env_problems(where, service, env, own_role)
            if own_role == "serve":
                problems += _address_problems(where, service, env, hosts)
    return problems


def security_problems(docs: list[Manifest]) -> list[str]:
    """Non-root with a fixed UID, RuntimeDefault seccomp, read-only root, no privilege escalation, no capabilities,
    no service account token, and requests and limits on every container."""
    problems = []
    for pod in pods(docs):
        ctx = pod.spec.get("securityContext") or {}
        if ctx.get("runAsNonRoot") is not True or not ctx.get("runAsUser"):
            problems.append(f"{pod.workload}: pod must set runAsNonRoot: true and a non-zero runAsUser")
        if (ctx.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{pod.workload}: pod seccompProfile must be RuntimeDefault")
        if pod.spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{pod.workload}: automountServiceAccountToken must be false (no API access needed)")
        for container in pod.containers():
            where = f"{pod.workload} container {container['name']}"
            sc = container.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                problems.append(f"{where}: capabilities must drop ALL")
            if sc.get("privileged") or sc.get("runAsUser") == 0:
                problems.append(f"{where}: must not run privileged or as root")
            resources = container.get("resources") or {}
            for bound in ("requests", "limits"):
                missing = {"cpu", "memory"} - set(resources.get(bound) or {})
                if missing:
                    problems.append(f"{where}: resources.{bound} lacks {', '.join(sorted(missing))}")
    return problems


def migration_problems(docs: list[Manifest]) -> list[str]:
    """Each stateful service has a Job running `custody migrate <service>`, and its servers wait for the schema
    (init container) instead of migrating themselves; stateless services have neither."""
    problems = []
    all_pods = pods(docs)
    migrated = {p.service for p in all_pods if p.role and p.role[0] == "migrate" and p.workload.startswith("Job/")}
    for name, spec in SERVICES.items():
        if spec.stateful != (name in migrated):
            problems.append(f"{name}: {'no' if spec.stateful else 'a'} migration Job (stateful: {spec.stateful})")
        for pod in (p for p in all_pods if p.serves() == name):
            waits = any(
                "wait_for_schema.py" in " ".join(map(str, c.get("command") or [])) and name in (c.get("command") or [])
                for c in pod.containers("initContainers")
            )
            if spec.stateful and not waits:
                problems.append(f"{pod.workload}: no init container waiting for {name}'s schema (wait_for_schema.py)")
    return problems


def _secret_variable(env: Mapping[str, Any], variable: str) -> str | None:
    """The Secret a variable comes from (None when unset or a literal)."""
    value = env.get(variable)
    ref = value.get("secretKeyRef") if isinstance(value, dict) else None
    return str(ref["name"]) if ref else None


def database_role_problems(docs: list[Manifest]) -> list[str]:
    """Least privilege in PostgreSQL: each migration Job connects with the owner role's URL (its own Secret) and
    nothing else, every server container (init containers included) with the runtime role's URL and never the
    owner's: no Deployment gets the owner DSN."""
    problems = []
    configmaps = _configmaps(docs)
    for pod in pods(docs):
        if pod.role is None or pod.role[1] not in SERVICES or not SERVICES[pod.role[1]].stateful:
            continue
        role, service = pod.role
        prefix = env_prefix(service)
        owner_variable, runtime_variable = prefix + "MIGRATION_DATABASE_URL", prefix + "DATABASE_URL"
        for container in pod.containers():
            env = container_env(container, pod.namespace, configmaps)
            where = f"{pod.workload} container {container['name']}"
            if migration_database_secret(service) in secret_references(container, pod) and role != "migrate":
                problems.append(f"{where} reads the owner role's URL ({migration_database_secret(service)})")
            if role == "migrate":
                if _secret_variable(env, owner_variable) != migration_database_secret(service):
                    problems.append(f"{where}: {owner_variable} must come from {migration_database_secret(service)}")
                if runtime_variable in env:
                    problems.append(f"{where}: {runtime_variable} is set; a migration needs only the owner's URL")
            else:
                if owner_variable in env:
                    problems.append(f"{where}: {owner_variable} is set; a server connects as the runtime role only")
                if _secret_variable(env, runtime_variable) != database_secret(service):
                    problems.append(f"{where}: {runtime_variable} must come from {database_secret(service)}")
    return problems


def availability_problems(docs: list[Manifest]) -> list[str]:
    """Every server Deployment (the console's too) has a PodDisruptionBudget; ai_gateway and art_studio have an
    autoscaler aimed at their Deployment, the others a fixed replica count."""
    problems = []
    deployments = {_name(d): pod for d in _of_kind(docs, "Deployment") for pod in pods([d]) if pod.process}
    budgets = _of_kind(docs, "PodDisruptionBudget")
    autoscaled = {
        ((h.get("spec") or {}).get("scaleTargetRef") or {}).get("name")
        for h in _of_kind(docs, "HorizontalPodAutoscaler")
    }
    for name, pod in deployments.items():
        if not any(selector_matches((b.get("spec") or {}).get("selector"), pod.labels) for b in budgets):
            problems.append(f"Deployment/{name}: no PodDisruptionBudget selects its pods")
        should_scale = pod.serves() in ("ai_gateway", "art_studio")
        if should_scale != (name in autoscaled):
            problems.append(f"Deployment/{name}: {'no' if should_scale else 'an unexpected'} HorizontalPodAutoscaler")
    for target in sorted(str(t) for t in autoscaled - set(deployments)):
        problems.append(f"a HorizontalPodAutoscaler targets {target}, which is not a server Deployment")
    return problems


# --- an Ingress in front of the console (components/console-ingress) ------------------------------------------------

# How ingress-nginx is told that a backend speaks HTTPS (the console serves nothing else).
BACKEND_PROTOCOL_ANNOTATION = "nginx.ingress.kubernetes.io/backend-protocol"


def ingress_problems(docs: list[Manifest]) -> list[str]:
    """Each Ingress backend is a Service of the manifests, on a port it exposes; a backend that is the console is
    reached over HTTPS (it serves nothing else), so the controller's hop to it carries no cookie in the clear."""
    problems = []
    services = {(_namespace(d), _name(d)): d for d in _of_kind(docs, "Service")}
    selectors = {key: (svc.get("spec") or {}).get("selector") or {} for key, svc in services.items()}
    consoles = {
        key
        for key, selector in selectors.items()
        if selector and any(p.console and all(p.labels.get(k) == v for k, v in selector.items()) for p in pods(docs))
    }
    for ingress in _of_kind(docs, "Ingress"):
        spec, where = ingress.get("spec") or {}, f"Ingress/{_name(ingress)}"
        backends = [spec["defaultBackend"]] if spec.get("defaultBackend") else []
        backends += [
            path["backend"] for rule in spec.get("rules") or [] for path in (rule.get("http") or {}).get("paths") or []
        ]
        for backend in backends:
            target = backend.get("service") or {}
            key = (_namespace(ingress), str(target.get("name")))
            service = services.get(key)
            if service is None:
                problems.append(f"{where}: backend Service {target.get('name')!r} is not in the manifests")
                continue
            port = target.get("port") or {}
            exposed = [p for p in (service.get("spec") or {}).get("ports") or [] if p.get("name") == port.get("name")]
            exposed += [
                p for p in (service.get("spec") or {}).get("ports") or [] if p.get("port") == port.get("number")
            ]
            if not exposed:
                problems.append(f"{where}: Service/{key[1]} exposes no port {port.get('name') or port.get('number')}")
            protocol = ((ingress.get("metadata") or {}).get("annotations") or {}).get(BACKEND_PROTOCOL_ANNOTATION)
            if key in consoles and protocol != "HTTPS":
                problems.append(
                    f"{where}: the console serves HTTPS only; {BACKEND_PROTOCOL_ANNOTATION} is {protocol!r}, "
                    "not 'HTTPS'"
                )
    return problems


def ingress_controller_problems(docs: list[Manifest]) -> list[str]:
    """The ingress controller (components/console-ingress assumes ingress-nginx's defaults) reaches the console's
    port and no other port of the deployment."""
    namespace, labels = INGRESS_CONTROLLER
    reach = outside_reach(docs, "the ingress controller", namespace, {}, labels)
    verbs = {True: "lets the ingress controller reach", False: "keeps the ingress controller from"}
    return [
        f"NetworkPolicy ingress {verbs[allowed]} {process}'s {name} port {number}"
        for (process, name), (number, allowed) in reach.items()
        if allowed != ((process, name) == (CONSOLE, CONSOLE_PORT_NAME))
    ]


K8S_CHECKS = (
    probe_problems,
    service_problems,
    network_policy_problems,
    provider_key_problems,
    secret_scope_problems,
    settings_problems,
    security_problems,
    migration_problems,
    database_role_problems,
    availability_problems,
    ledger_problems,
    tls_problems,
    ingress_problems,
)


# --- compose ------------------------------------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Compose interpolation: ${VAR:-default} -> the variable if set and non-empty, else default; $$ -> $."""
    environ = environ or {}

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return environ.get(match.group(1)) or match.group(2) or ""

    if isinstance(value, str):
        return _INTERPOLATION.sub(substitute, value)
    if isinstance(value, list):
        return [interpolate(v, environ) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, environ) for k, v in value.items()}
    return value


def load_compose(path: Path = COMPOSE_FILE, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    return interpolate(yaml.safe_load(path.read_text(encoding="utf-8")), environ)


def load_compose_with(override: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """compose.yaml with an override file on top, merged as `docker compose -f ... -f ...` does for what these
    files use: mappings merged key by key, lists (secrets, volumes) appended."""
    return _merged(load_compose(COMPOSE_FILE, environ), load_compose(override, environ))


def _merged(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {key: _merged(base[key], value) if key in base else value for key, value in {**base, **override}.items()}
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


def compose_role(definition: Mapping[str, Any]) -> tuple[str, str] | None:
    command = definition.get("command")
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command or []]
    if len(argv) >= 2 and argv[0] in ("serve", "migrate") and argv[1] in SERVICES:
        return argv[0], argv[1]
    if len(argv) >= 2 and argv[:2] == ["serve", CONSOLE]:
        return "serve", CONSOLE
    return None


def _servers(compose: Mapping[str, Any]) -> dict[str, str]:
    """Catalog service -> the compose service that serves it."""
    return {
        role[1]: name
        for name, definition in compose.get("services", {}).items()
        if (role := compose_role(definition)) and role[0] == "serve"
    }


def _depends_on(definition: Mapping[str, Any]) -> dict[str, str]:
    value = definition.get("depends_on") or {}
    if isinstance(value, list):
        return {name: "service_started" for name in value}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in value.items()}


def _environment(definition: Mapping[str, Any]) -> dict[str, Any]:
    value = definition.get("environment") or {}
    if isinstance(value, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in value)
    return {k: (None if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}


def _secret_names(definition: Mapping[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in definition.get("secrets") or []}


def _file_mounts(definition: Mapping[str, Any], kind: str) -> dict[str, str]:
    """Secret or config name -> the path the container sees it at (secrets default to /run/secrets/<name>,
    configs to /<name>; a relative secret target is under /run/secrets)."""
    found = {}
    for entry in definition.get(kind) or []:
        name, target = (entry, None) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        target = target or name
        if not target.startswith("/"):
            target = f"/run/secrets/{target}" if kind == "secrets" else f"/{target}"
        found[name] = target
    return found


def _volume_mounts(definition: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry; the source is a named volume, a host path, or "" (anonymous)."""
    found = []
    for volume in definition.get("volumes") or []:
        if isinstance(volume, str):
            parts = volume.split(":")
            found.append(("", parts[0]) if len(parts) == 1 else (parts[0], parts[1]))
        else:
            found.append((str(volume.get("source", "")), str(volume.get("target", ""))))
    return found


def _under(path: str, root: str) -> bool:
    root = root.rstrip("/")
    return path == root or path.startswith(root + "/")


def compose_reference_problems(compose: Mapping[str, Any]) -> list[str]:
    """Every depends_on target, secret, volume and network a service names exists; the custody services wait for
    the peers they call (healthy) and the stateful ones for their migration (completed); the console for every
    service (healthy)."""
    problems = []
    services = compose.get("services", {})
    servers = _servers(compose)
    migrations = {role[1]: n for n, d in services.items() if (role := compose_role(d)) and role[0] == "migrate"}
    for name, definition in services.items():
        depends = _depends_on(definition)
        for target in sorted(set(depends) - set(services)):
            problems.append(f"{name}: depends_on {target!r}, which is not a service")
        for secret in sorted(_secret_names(definition) - set(compose.get("secrets") or {})):
            problems.append(f"{name}: secret {secret!r} is not declared under secrets")
        for config in sorted(set(_file_mounts(definition, "configs")) - set(compose.get("configs") or {})):
            problems.append(f"{name}: config {config!r} is not declared under configs")
        for network in definition.get("networks") or []:
            if network not in (compose.get("networks") or {}):
                problems.append(f"{name}: network {network!r} is not declared under networks")
        for volume in definition.get("volumes") or []:
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith(("/", ".", "~")) and source not in (compose.get("volumes") or {}):
                problems.append(f"{name}: volume {source!r} is not declared under volumes")
        role = compose_role(definition)
        if not role or role[0] != "serve":
            continue
        service = role[1]
        callees = tuple(SERVICES) if service == CONSOLE else SERVICES[service].calls
        for callee in callees:
            if depends.get(servers.get(callee, "?")) != "service_healthy":
                problems.append(f"{name}: must depend on {callee}'s server with condition service_healthy")
        if service in SERVICES and SERVICES[service].stateful:
            job = migrations.get(service)
            if job is None or depends.get(job) != "service_completed_successfully":
                problems.append(f"{name}: must depend on `migrate {service}` with service_completed_successfully")
    return problems


def console_healthcheck(port: int, tls_dir: str | None) -> list[str]:
    """The console's compose healthcheck: GET /healthz inside the container, over HTTPS trusting the CA of its
    certificate directory (the image has python, not curl). urlopen raises on a refused connection, a certificate
    it cannot verify or any status but 2xx, so the command exits non-zero then."""
    url = f"{'https' if tls_dir else 'http'}://127.0.0.1:{port}{CONSOLE_HEALTH_PATH}"
    context = f", context=ssl.create_default_context(cafile={tls_dir.rstrip('/') + '/' + CA_FILE!r})" if tls_dir else ""
    return ["CMD", "python", "-c", f"import ssl, urllib.request; urllib.request.urlopen({url!r}, timeout=4{context})"]


def compose_healthcheck_problems(compose: Mapping[str, Any]) -> list[str]:
    """Each server's healthcheck is `custody health` for that service at its catalog port inside the container,
    over TLS trusting the CA of its certificate directory; the console's GETs /healthz likewise."""
    problems = []
    for name, definition in compose.get("services", {}).items():
        role = compose_role(definition)
        if not role or role[0] != "serve":
            continue
        service = role[1]
        tls_dir = served_tls_dir(service, _environment(definition))
        if service == CONSOLE:
            expected = console_healthcheck(CONSOLE_DEFAULT_PORT, tls_dir)
        else:
            expected = [
                "CMD",
                *("custody", "health", "--service", service),
                *("--address", f"127.0.0.1:{SERVICES[service].default_port}"),
                *(("--cacert", f"{tls_dir.rstrip('/')}/{CA_FILE}") if tls_dir else ()),
            ]
        test = (definition.get("healthcheck") or {}).get("test")
        if test != expected:
            problems.append(f"{name}: healthcheck test is {test}, expected {expected}")
    return problems


def compose_image_problems(compose: Mapping[str, Any], version: str) -> list[str]:
    """Custody containers run the project's image; the rest are the database, the tracing and the metrics
    pipelines only."""
    problems = []
    for name, definition in compose.get("services", {}).items():
        image = str(definition.get("image"))
        if compose_role(definition):
            if not is_project_image(image, version):
                problems.append(f"{name}: runs {image!r}, not the project's image custody:{version}")
        elif not image.startswith(COMPOSE_THIRD_PARTY_IMAGES):
            problems.append(f"{name}: runs {image!r}, which is neither the project's image nor an allowed one")
    return problems


def compose_secret_problems(compose: Mapping[str, Any]) -> list[str]:
    """The provider key (secret or variable name anywhere in a definition) reaches ai_gateway's server only; each
    service's config secret (its token, its runtime role's URL) and ledger key reach only that service's server, its
    migration config (the owner role's URL) only its migration; credentials only servers."""
    problems = []
    for name, definition in compose.get("services", {}).items():
        role = compose_role(definition)
        secrets = _secret_names(definition)
        mentions_key = PROVIDER_KEY_ENV in json.dumps(definition)
        if role != ("serve", "ai_gateway") and (COMPOSE_PROVIDER_KEY_SECRET in secrets or mentions_key):
            problems.append(f"{name}: gets the provider key ({COMPOSE_PROVIDER_KEY_SECRET} / {PROVIDER_KEY_ENV})")
        if role == ("serve", "ai_gateway") and COMPOSE_PROVIDER_KEY_SECRET not in secrets:
            problems.append(f"{name}: the ai_gateway server lacks the {COMPOSE_PROVIDER_KEY_SECRET} secret")
        for service in SERVICES:
            if f"{service}_config" in secrets and (role is None or role[1] != service):
                problems.append(f"{name}: reads {service}_config (another service's token)")
            elif f"{service}_config" in secrets and role == ("migrate", service):
                problems.append(f"{name}: reads {service}_config (the server's token and runtime URL)")
            if f"{service}_migration_config" in secrets and role != ("migrate", service):
                problems.append(f"{name}: reads {service}_migration_config (the owner role's URL)")
            if role == ("migrate", service) and f"{service}_migration_config" not in secrets:
                problems.append(f"{name}: lacks {service}_migration_config (the owner role's URL it migrates as)")
        if role and role[0] == "serve" and env_prefix(role[1]) + "MIGRATION_DATABASE_URL" in json.dumps(definition):
            problems.append(f"{name}: a server gets a migration URL; it connects as the runtime role only")
        if "credentials" in secrets and (role is None or role[0] != "serve"):
            problems.append(f"{name}: reads credentials but serves nothing")
        elif "credentials" in secrets and role == ("serve", CONSOLE):
            problems.append(f"{name}: the console reads credentials; it authenticates no one (the services do)")
        for service in AUTHORITIES:
            if f"{service}_ledger_key" in secrets and role != ("serve", service):
                problems.append(f"{name}: reads {service}_ledger_key ({service}'s ledger signing key)")
        for service in PROCESS_NAMES:
            if compose_tls_key_secret(service) in secrets and role != ("serve", service):
                problems.append(f"{name}: reads {compose_tls_key_secret(service)} ({service}'s TLS key)")
        if any(s.startswith("postgres_") for s in secrets) and not str(definition.get("image")).startswith("postgres:"):
            problems.append(f"{name}: reads PostgreSQL passwords (only the postgres service may)")
    return problems


def compose_settings_problems(compose: Mapping[str, Any]) -> list[str]:
    """As for Kubernetes: known settings only, 0.0.0.0 on the catalog port, peers by compose service name, ports
    published on the host's loopback only, and the read-only, unprivileged container settings on every custody
    container."""
    problems = []
    servers = _servers(compose)
    for name, definition in compose.get("services", {}).items():
        role = compose_role(definition)
        if role is None:
            continue
        env = _environment(definition)
        problems += _settings_env_problems(name, role[1], env, role[0])
        if role[0] == "serve":
            problems += _address_problems(name, role[1], env, servers)
            port = CONSOLE_DEFAULT_PORT if role[1] == CONSOLE else SERVICES[role[1]].default_port
            for published in definition.get("ports") or []:
                if isinstance(published, dict):
                    target, host = published.get("target"), published.get("host_ip")
                else:
                    parts = str(published).split(":")
                    target, host = parts[-1], parts[0] if len(parts) == 3 else None
                if str(target) != str(port):
                    problems.append(f"{name}: publishes container port {target}, the catalog port is {port}")
                if host != "127.0.0.1":
                    problems.append(f"{name}: publishes {published} beyond the host's loopback (127.0.0.1)")
        if definition.get("read_only") is not True:
            problems.append(f"{name}: read_only must be true")
        if str(definition.get("user", "")).split(":")[0] in ("", "0", "root"):
            problems.append(f"{name}: must run as a non-root user")
        if "ALL" not in (definition.get("cap_drop") or []):
            problems.append(f"{name}: cap_drop must include ALL")
    return problems


def _copies_privately(definition: Mapping[str, Any], source: str, copy: str) -> bool:
    """Whether the entry point copies `source` to `copy` under umask 077 (a file only its owner can read)."""
    entrypoint = definition.get("entrypoint") or []
    script = entrypoint if isinstance(entrypoint, str) else " ".join(str(a) for a in entrypoint)
    pattern = rf"umask 077 && cat {re.escape(source)} > {re.escape(copy)}(?![\w/.-])"
    return re.search(pattern, " ".join(script.split())) is not None


def _compose_ledger_key_problems(
    name: str, service: str, definition: Mapping[str, Any], secrets: Mapping[str, Any]
) -> list[str]:
    variable, secret = env_prefix(service) + "LEDGER_KEY_FILE", f"{service}_ledger_key"
    mounted = _file_mounts(definition, "secrets")
    if secret not in mounted:
        return [f"{name}: lacks secret {secret}, its ledger signing key"]
    problems = []
    file = str((secrets.get(secret) or {}).get("file", ""))
    if Path(file).name != ledger_key_name(service) or Path(file).parent.name != "keys":
        problems.append(f"{name}: secret {secret} is {file!r}, not keys/{ledger_key_name(service)}")
    path = _environment(definition).get(variable)
    tmpfs = [str(entry).split(":", 1)[0] for entry in definition.get("tmpfs") or []]
    if not path:
        problems.append(f"{name}: {variable} is not set")
    elif path == mounted[secret]:
        problems.append(
            f"{name}: {variable} is the secret's bind mount, which keeps its host mode (0644, init-secrets.sh) and "
            f"which {service} refuses: the entry point must copy it to a private file"
        )
    elif not _copies_privately(definition, mounted[secret], path):
        problems.append(
            f"{name}: {variable} ({path}) is not a copy the entry point makes of {mounted[secret]} "
            f"(umask 077 && cat {mounted[secret]} > {path})"
        )
    elif not any(_under(path, root) for root in tmpfs):
        problems.append(f"{name}: the key copy {path} is not on the container's tmpfs")
    return problems


def _compose_checkpoint_volume(
    name: str, service: str, definition: Mapping[str, Any], volumes: Mapping[str, Any]
) -> tuple[str | None, list[str]]:
    variable = env_prefix(service) + "LEDGER_CHECKPOINT_DIR"
    path = _environment(definition).get(variable)
    if not path or not path.startswith("/"):
        return None, [f"{name}: {variable} must name a directory on a named volume (got {path!r})"]
    holding = [(source, target) for source, target in _volume_mounts(definition) if _under(path, target)]
    source = max(holding, key=lambda mount: len(mount[1].rstrip("/")))[0] if holding else ""
    if source not in volumes:
        return None, [f"{name}: {variable} ({path}) is not on a named volume: the checkpoint log must outlive it"]
    return source, []


def _compose_peer_key_problems(name: str, definition: Mapping[str, Any], configs: Mapping[str, Any]) -> list[str]:
    variable = env_prefix(WITNESS) + "LEDGER_PEER_KEYS_DIR"
    directory = _environment(definition).get(variable)
    if not directory or not directory.startswith("/"):
        return [f"{name}: {variable} must name the directory of the peers' verifier keys (got {directory!r})"]
    problems = []
    mounted = _file_mounts(definition, "configs")
    for peer in witnessed_peers():
        target = f"{directory.rstrip('/')}/{ledger_vkey_name(peer)}"
        config = next((c for c, t in mounted.items() if t == target), None)
        file = Path(str((configs.get(config) or {}).get("file", ""))) if config else None
        if file is None or (file.parent.name, file.name) != ("keys", ledger_vkey_name(peer)):
            problems.append(
                f"{name}: {target} is not a config of keys/{ledger_vkey_name(peer)}: {WITNESS} cannot check "
                f"{peer}'s checkpoints"
            )
    return problems


def compose_ledger_problems(compose: Mapping[str, Any]) -> list[str]:
    """Each authority's server signs with its own key from var/compose/keys, copied to a private file the service
    accepts, and logs checkpoints to a named volume no other service mounts; the witness gets the peers' verifier
    keys; no private key is a config, and no container gets the whole key directory."""
    problems = []
    services = compose.get("services", {})
    secrets, configs, volumes = (compose.get(kind) or {} for kind in ("secrets", "configs", "volumes"))
    for config, spec in configs.items():
        if Path(str((spec or {}).get("file", ""))).suffix == ".key":
            problems.append(f"config {config}: {spec['file']} is a private key, and configs are not secret")
    logs: dict[str, str] = {}
    for name, definition in services.items():
        for source, _ in _volume_mounts(definition):
            if source.startswith((".", "/", "~")) and "keys" in Path(source).parts:
                problems.append(f"{name}: bind-mounts {source}, which holds every authority's private key")
        role = compose_role(definition)
        if role is None or role[0] != "serve" or role[1] not in AUTHORITIES:
            continue
        problems += _compose_ledger_key_problems(name, role[1], definition, secrets)
        volume, found = _compose_checkpoint_volume(name, role[1], definition, volumes)
        problems += found
        if volume:
            logs[volume] = name
        if role[1] == WITNESS:
            problems += _compose_peer_key_problems(name, definition, configs)
    for volume, owner in sorted(logs.items()):
        others = sorted(n for n, d in services.items() if n != owner and volume in dict(_volume_mounts(d)))
        if others:
            problems.append(f"{', '.join(others)}: mount{'s' * (len(others) == 1)} {owner}'s checkpoint log {volume}")
    return problems


def compose_tls_key_secret(service: str) -> str:
    return f"{service}_tls_key"


def _compose_tls_sources(service: str) -> dict[str, tuple[str, str]]:
    """File of the TLS directory -> (kind, name) of the compose secret or config it comes from, and the file under
    the secrets directory (custody init's tls/) that must back it."""
    return {
        KEY_FILE: ("secrets", compose_tls_key_secret(service)),
        CERTIFICATE_FILE: ("configs", f"{service}_tls_crt"),
        CA_FILE: ("configs", COMPOSE_CA_CONFIG),
    }


def _compose_tls_backing(service: str, file: str) -> tuple[str, ...]:
    """The last path parts the secret's or config's file must have (tls/<service>/tls.key, tls/ca.crt)."""
    return ("tls", CA_FILE) if file == CA_FILE else ("tls", service, file)


def compose_tls_problems(compose: Mapping[str, Any]) -> list[str]:
    """Each server's TLS_DIR is a private copy on its tmpfs, made by its entry point under umask 077, of its own
    key (a secret), its own certificate and the CA certificate (configs), each backed by what `custody init` wrote
    for that service; nothing mounts the CA's private key (tls/ca/)."""
    problems = []
    declared = {kind: compose.get(kind) or {} for kind in ("secrets", "configs")}
    for kind, entries in declared.items():
        for entry, spec in entries.items():
            parts = Path(str((spec or {}).get("file", ""))).parts
            if "tls" in parts and parts[parts.index("tls") + 1 : parts.index("tls") + 2] == ("ca",):
                problems.append(f"{kind[:-1]} {entry}: {spec['file']} is in tls/ca/, the CA's own directory")
    for name, definition in compose.get("services", {}).items():
        role = compose_role(definition)
        if role is None or role[0] != "serve":
            continue
        service = role[1]
        tls_dir = served_tls_dir(service, _environment(definition))
        if tls_dir is None:
            continue  # compose_settings_problems reports it
        directory = tls_dir.rstrip("/")
        tmpfs = [str(entry).split(":", 1)[0] for entry in definition.get("tmpfs") or []]
        if not any(_under(directory, root) for root in tmpfs):
            problems.append(f"{name}: the TLS directory {directory} is not on the container's tmpfs")
        entrypoint = definition.get("entrypoint") or []
        script = " ".join((entrypoint if isinstance(entrypoint, str) else " ".join(map(str, entrypoint))).split())
        if f"umask 077 && mkdir -p {directory}" not in script:
            problems.append(f"{name}: the entry point does not make {directory} under umask 077")
        for file, (kind, source) in _compose_tls_sources(service).items():
            mounted = _file_mounts(definition, kind).get(source)
            backing = Path(str((declared[kind].get(source) or {}).get("file", ""))).parts
            expected = _compose_tls_backing(service, file)
            if mounted is None:
                problems.append(f"{name}: lacks {kind[:-1]} {source}, its {file}")
                continue
            if backing[-len(expected) :] != expected:
                problems.append(f"{name}: {kind[:-1]} {source} is not {'/'.join(expected)}")
            copy = rf"cat {re.escape(mounted)} > {re.escape(directory)}/{re.escape(file)}(?![\w/.-])"
            if not re.search(copy, script):
                problems.append(f"{name}: the entry point does not copy {mounted} to {directory}/{file}")
    return problems


COMPOSE_CHECKS = (
    compose_reference_problems,
    compose_healthcheck_problems,
    compose_secret_problems,
    compose_settings_problems,
    compose_ledger_problems,
    compose_tls_problems,
)


def otel_collector_problems(config: Mapping[str, Any], compose: Mapping[str, Any]) -> list[str]:
    """Each pipeline names defined components; the collector receives OTLP/gRPC where the services send it and
    exports to a service that exists."""
    problems = []
    for pipeline, spec in ((config.get("service") or {}).get("pipelines") or {}).items():
        for kind in ("receivers", "processors", "exporters"):
            for component in spec.get(kind) or []:
                if component not in (config.get(kind) or {}):
                    problems.append(f"pipeline {pipeline}: {kind[:-1]} {component!r} is not defined")
    services = compose.get("services", {})
    collector = next((n for n, d in services.items() if str(d.get("image")).startswith("otel/")), None)
    grpc = (((config.get("receivers") or {}).get("otlp") or {}).get("protocols") or {}).get("grpc") or {}
    listen_port = str(grpc.get("endpoint", ":4317")).rsplit(":", 1)[-1]
    for name, definition in services.items():
        for variable, value in _environment(definition).items():
            if variable.endswith("_OTLP_ENDPOINT") and value != f"http://{collector}:{listen_port}":
                problems.append(f"{name}: {variable} is {value!r}, the collector listens on {collector}:{listen_port}")
    for exporter, spec in (config.get("exporters") or {}).items():
        host = str((spec or {}).get("endpoint", "")).split("://")[-1].rsplit(":", 1)[0]
        if host and host not in services:
            problems.append(f"exporter {exporter}: {host!r} is not a compose service")
    return problems


def prometheus_problems(config: Mapping[str, Any], compose: Mapping[str, Any]) -> list[str]:
    """Prometheus scrapes every server (not the console, which has no metrics) by its compose name, at the port its
    METRICS_PORT setting serves on."""
    targets: set[str] = set()
    for job in config.get("scrape_configs") or []:
        for discovery in job.get("dns_sd_configs") or []:
            targets |= {f"{name}:{discovery.get('port')}" for name in discovery.get("names") or []}
        for static in job.get("static_configs") or []:
            targets |= {str(target) for target in static.get("targets") or []}
    problems = []
    for name, definition in compose.get("services", {}).items():
        role = compose_role(definition)
        if role is None or role[0] != "serve" or role[1] not in SERVICES:
            continue
        variable = env_prefix(role[1]) + "METRICS_PORT"
        port = _environment(definition).get(variable)
        if port is None:
            problems.append(f"{name}: {variable} is not set: it serves no metrics")
        elif f"{name}:{port}" not in targets:
            problems.append(f"{name}: Prometheus does not scrape {name}:{port}")
    return problems


# Series the process collector adds beside the catalog's (services/common/metrics.py).
PROCESS_SERIES_PREFIXES = ("process_", "python_gc_")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_PROMQL_FUNCTIONS = {"sum", "rate", "increase", "histogram_quantile", "max", "min", "by", "le", "avg"}


def dashboard_problems(dashboard: Mapping[str, Any], datasources: Mapping[str, Any]) -> list[str]:
    """Every panel queries the provisioned data source, and only series the code declares (a renamed instrument
    would leave a panel silently empty)."""
    from services.common.metrics import DECLARED

    series = {d.prometheus_name for d in DECLARED if d.kind != "histogram"}
    series |= {d.prometheus_name + suffix for d in DECLARED if d.kind == "histogram" for suffix in HISTOGRAM_SUFFIXES}
    uids = {source.get("uid") for source in datasources.get("datasources") or []}
    problems = []
    for panel in dashboard.get("panels") or []:
        if panel.get("type") == "row":
            continue
        title = panel.get("title")
        for target in panel.get("targets") or []:
            if (target.get("datasource") or {}).get("uid") not in uids:
                problems.append(f"panel {title!r}: data source {target.get('datasource')} is not provisioned")
            expr = re.sub(r"\{[^}]*\}|\[[^]]*\]|\bby\s*\([^)]*\)", " ", str(target.get("expr", "")))
            for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
                if word in _PROMQL_FUNCTIONS or word.startswith(PROCESS_SERIES_PREFIXES) or word in series:
                    continue
                problems.append(f"panel {title!r}: {word!r} is not a series services/common/metrics.py declares")
    return problems


# --- the image ----------------------------------------------------------------------------------------------------

# The trees the project's package is built from; every file in them is code or data the processes read at run time.
PACKAGE_TREES = ("services", "custody")


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def package_sources(text: str) -> list[str]:
    """What the builder stage copies from the build context before it installs the project (its deploy/ scripts are
    not part of the package)."""
    instructions = dockerfile_instructions(text)
    stages = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    builder = instructions[stages[0] : stages[1]] if len(stages) > 1 else instructions
    return [
        source
        for keyword, argument in builder
        if keyword == "COPY" and not argument.startswith("--from")
        for source in argument.split()[:-1]
        if not source.startswith("deploy/")
    ]


def package_files_missing(names: Iterable[str]) -> list[str]:
    """Files of the source trees that a built package (the paths in its archive) lacks."""
    present = set(names)
    expected = sorted(
        path.relative_to(REPO_ROOT).as_posix()
        for tree in PACKAGE_TREES
        for path in (REPO_ROOT / tree).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    return [f"{name} is not in the package the image installs" for name in expected if name not in present]


def dockerfile_problems(text: str, dockerignore: str) -> list[str]:
    """A pinned python:3.11 slim base; the builder installs the hashed lock; the final stage installs nothing,
    runs as a fixed non-root UID with `custody` as entry point and exposes every catalog port; the build
    context keeps what it copies."""
    problems = []
    instructions = dockerfile_instructions(text)
    args = dict(a.split("=", 1) for k, a in instructions if k == "ARG" and "=" in a)
    bases = [a.split()[0] for k, a in instructions if k == "FROM"]
    for base in bases:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), base)
        if not re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?(@sha256:[0-9a-f]{64})?", resolved):
            problems.append(f"FROM {base} ({resolved}): the base must be python:3.11.<patch>-slim, pinned")
    stages = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
    if len(stages) < 2:
        return [*problems, "the Dockerfile must be multi-stage (a builder and a final stage)"]
    builder, final = instructions[stages[0] : stages[-1]], instructions[stages[-1] :]
    runs = " ".join(a for k, a in builder if k == "RUN")
    if not re.search(r"pip install --require-hashes --no-deps -r requirements\.lock", runs):
        problems.append("the builder must install `pip install --require-hashes --no-deps -r requirements.lock`")
    if not re.search(r"pip install --no-deps [^&]*\.", runs):
        problems.append("the builder must install the project with --no-deps")
    for keyword, argument in final:
        if keyword == "RUN" and re.search(r"apt-get install|apk add|pip install|gcc|build-essential", argument):
            problems.append(f"the final stage installs or builds: RUN {argument}")
    users = [a for k, a in final if k == "USER"]
    if not users or not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]):
        problems.append(f"the final stage must end as a fixed numeric non-root USER (got {users[-1:]})")
    entrypoints = [a for k, a in final if k == "ENTRYPOINT"]
    if not entrypoints or json.loads(entrypoints[-1]) != ["custody"]:
        problems.append(f'ENTRYPOINT must be ["custody"] (got {entrypoints[-1:]})')
    exposed = {int(p.split("/")[0]) for k, a in final if k == "EXPOSE" for p in a.split()}
    for name, spec in SERVICES.items():
        if spec.default_port not in exposed:
            problems.append(f"EXPOSE lacks {name}'s port {spec.default_port}")
    if CONSOLE_DEFAULT_PORT not in exposed:
        problems.append(f"EXPOSE lacks the console's port {CONSOLE_DEFAULT_PORT}")
    ignored = [line.strip() for line in dockerignore.splitlines() if line.strip() and not line.startswith("#")]
    for keyword, argument in instructions:
        if keyword != "COPY" or argument.startswith("--from"):
            continue
        for source in argument.split()[:-1]:
            if any(source == pattern or source.startswith(pattern.rstrip("/") + "/") for pattern in ignored):
                problems.append(f"COPY {source}: excluded from the build context by .dockerignore")
            elif not (REPO_ROOT / source).exists():
                problems.append(f"COPY {source}: no such path in the repository")
    for must in (".venv", "var", ".git"):
        if must not in ignored:
            problems.append(f".dockerignore must exclude {must}")
    return problems
