"""The one configuration loader: pydantic-settings from `CUSTODY_<SERVICE>_*` variables and an optional YAML file.

Precedence: environment over file over defaults. Validation happens at start: an unknown or invalid setting is a
ConfigError naming the variable (or file key), and the process exits with code 2 before it listens on anything.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

import yaml
from pydantic import AfterValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.common.catalog import SERVICES, ServiceSpec
from services.common.tls.certificates import DEFAULT_TRUST_DOMAIN

CONFIG_EXIT_CODE = 2
CONFIG_FILE_SUFFIX = "CONFIG_FILE"
# With TLS, a service's mutual-TLS listener for its peers is on port + 100 unless peer_port says otherwise.
PEER_PORT_OFFSET = 100
LOOPBACK_HOSTS = ("localhost",)
PEER_ADDRESS_DEFAULT = "default: 127.0.0.1 at the peer's default port (with tls_dir, its peer port: port + 100)"
# gRPC's own address-list targets ("ipv4:10.0.0.1:50052,10.0.0.2:50052"), passed through as they are.
ADDRESS_LIST_SCHEMES = ("ipv4:", "ipv6:")


class ConfigError(Exception):
    """A setting is unknown or invalid. The message names it and says what is wrong."""


# Subclasses give `port` their own default; the annotation keeps the bounds ("0" picks a free port, for tests).
Port = Annotated[int, Field(ge=0, le=65535)]
TelemetryExporter = Literal["none", "console", "otlp", "file"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def address_list(value: str) -> list[str]:
    """The replicas a service address names: one entry for a single address (any gRPC target: `host:port`, a DNS
    name resolving to every replica, `dns:///...`, `unix:...`), or each `host:port` of a comma-separated list of IP
    addresses of one family (`10.0.0.1:50052,10.0.0.2:50052`, `[::1]:50052,[::1]:50062`). Raises ValueError saying
    what to write instead: gRPC cannot resolve several host names in one target."""
    value = value.strip()
    if "," not in value or value.startswith(ADDRESS_LIST_SCHEMES):
        if not value:
            raise ValueError("an address is host:port, or several IP host:port separated by commas")
        return [value]
    entries = [entry.strip() for entry in value.split(",")]
    families = set()
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError(f"{entry!r} in the address list is not host:port with a port from 1 to 65535")
        try:
            ip = ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
        except ValueError:
            raise ValueError(
                f"{entry!r} in the address list does not name an IP address: a list of replicas is IP host:port "
                "separated by commas; for host names give one DNS name that resolves to every replica (a headless "
                "Kubernetes Service), e.g. dns:///runs-replicas.custody.svc:50052"
            ) from None
        if ip.version == 6 and not host.startswith("["):
            raise ValueError(f"{entry!r}: write an IPv6 address in brackets, [{host}]:{port}")
        families.add(ip.version)
    if len(families) > 1:
        raise ValueError("an address list mixes IPv4 and IPv6 addresses: gRPC takes a list of one family")
    return entries


def _check_address(value: str | None) -> str | None:
    if value is not None:
        address_list(value)
    return value


# A service's address as a client is configured with it: one address, or the replicas' as a list (address_list).
ServiceAddress = Annotated[str | None, AfterValidator(_check_address)]
# A PostgreSQL role name as created unquoted (lower case), so it needs no quoting anywhere it is written.
RoleName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


class ProcessSettings(BaseSettings):
    """Settings every Custody process has (the four services and the console): where it listens, its state
    directory, logging, telemetry and TLS. Subclasses set `service` to the process's name (its env prefix)."""

    service: ClassVar[str]

    model_config = SettingsConfigDict(extra="forbid", frozen=True, case_sensitive=False)

    host: str = "127.0.0.1"
    port: Port
    state_dir: Path = Path("var")
    log_level: LogLevel = "INFO"
    telemetry_exporter: TelemetryExporter = "none"
    otlp_endpoint: str = "http://127.0.0.1:4317"
    telemetry_file: Path | None = Field(default=None, description="spans as JSON lines, for exporter 'file'")
    # Transport security (services/common/tls/). `tls_dir` holds tls.crt, tls.key and ca.crt (cert-manager's
    # layout; `custody init` writes var/tls/<process>/). Unset, the process serves plaintext on `port`, which it
    # refuses to do on a non-loopback host unless `allow_plaintext`.
    tls_dir: Path | None = None
    allow_plaintext: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # load_settings reads the environment it is given (not always os.environ: `custody up` validates each
        # child's environment before starting it) and passes the merged values in; no implicit sources.
        return (init_settings,)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def transport_problems(self, prefix: str) -> list[str]:
        """What makes the listeners unsafe: plaintext on a non-loopback host (tokens would cross the network
        readable) unless allowed."""
        if self.tls_dir is None and not self.allow_plaintext and not is_loopback(self.host):
            return [
                f"{prefix}HOST is {self.host!r}, not a loopback address, and TLS is not configured: set "
                f"{prefix}TLS_DIR to a directory holding tls.crt, tls.key and ca.crt (`custody init` writes "
                f"var/tls/{self.service}/), or set {prefix}ALLOW_PLAINTEXT=true to serve plaintext on purpose (every "
                "bearer token then crosses the network readable)"
            ]
        return []

    @classmethod
    def load(cls, config_file: Path | None = None, environ: Mapping[str, str] | None = None) -> Self:
        return load_settings(cls, config_file, environ)


class ServiceSettings(ProcessSettings):
    """Settings every gRPC service has. Subclasses add their own and set `service` to their catalog name."""

    # This service's own bearer token for its outgoing calls. Only this service's configuration holds it.
    token: SecretStr | None = None
    credentials_file: Path | None = Field(default=None, description="default: <state_dir>/credentials")
    max_message_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    grace_period_s: float = Field(default=5.0, ge=0, le=60)
    default_deadline_s: float = Field(default=30.0, gt=0, le=3600)
    max_concurrent_rpcs: int = Field(default=1024, ge=1)
    # Threads for blocking work (database, files) so concurrent calls do not queue for a thread.
    blocking_threads: int = Field(default=64, ge=1, le=1024)
    # Process-level performance knobs (services/common/tuning.py). Off (Python's and glibc's defaults) unless a
    # service's settings turn one on where it measurably helps that service.
    keep_freed_memory: bool = False
    gil_switch_interval_s: float = Field(default=0.005, gt=0, le=0.1)
    freeze_startup_objects: bool = False
    # With `tls_dir` (see ProcessSettings) a service serves server-authenticated TLS on `port` (people, with their
    # bearer token) and mutual TLS on `peer_port` (services, identified by their certificate), and calls its peers
    # with its certificate.
    peer_port: Port | None = Field(default=None, description="default: port + 100 (with tls_dir)")
    # A plaintext listener answering grpc.health.v1 only (Kubernetes probes cannot speak TLS); off unless set.
    health_port: Port | None = None
    # Prometheus scrape endpoint (services/common/metrics.py): plaintext HTTP /metrics on `host`; off unless set.
    # `custody up` sets it to port + 1000; compose and Kubernetes to 9464.
    metrics_port: Port | None = None
    # The SPIFFE trust domain of service certificates (spiffe://<trust_domain>/service/<name>).
    trust_domain: str = Field(default=DEFAULT_TRUST_DOMAIN, pattern=r"^[a-z0-9._-]{1,255}$")

    @classmethod
    def spec(cls) -> ServiceSpec:
        return SERVICES[cls.service]

    @property
    def resolved_credentials_file(self) -> Path:
        return self.credentials_file or self.state_dir / "credentials"

    @property
    def resolved_peer_port(self) -> int | None:
        """The mutual-TLS port for peers; None without TLS."""
        if self.tls_dir is None:
            return None
        if self.peer_port is not None:
            return self.peer_port
        return 0 if self.port == 0 else self.port + PEER_PORT_OFFSET

    @property
    def peer_listen_address(self) -> str | None:
        port = self.resolved_peer_port
        return None if port is None else f"{self.host}:{port}"

    def peer_address(self, service: str) -> str:
        """Address of a service this one calls; only services in its call graph have one. Unset, the peer's
        default port on 127.0.0.1: its peer port (default port + 100) with TLS."""
        if service not in self.spec().calls:
            raise ValueError(
                f"{self.service} does not call {service} (see the call graph in services/common/catalog.py)"
            )
        configured = getattr(self, f"{service}_address")
        if configured:
            return str(configured)
        offset = PEER_PORT_OFFSET if self.tls_dir is not None else 0
        return f"127.0.0.1:{SERVICES[service].default_port + offset}"

    def transport_problems(self, prefix: str) -> list[str]:
        """What makes the listeners unsafe or impossible: plaintext on a non-loopback host (see ProcessSettings),
        a peer port without TLS, a port pushed out of range."""
        problems = super().transport_problems(prefix)
        if self.tls_dir is None and self.peer_port is not None:
            problems.append(f"{prefix}PEER_PORT is set but {prefix}TLS_DIR is not: the peer port is mutual TLS")
        peer_port = self.resolved_peer_port
        if peer_port is not None and peer_port > 65535:
            problems.append(f"{prefix}PORT {self.port} + {PEER_PORT_OFFSET} is no port: set {prefix}PEER_PORT")
        ports = [p for p in (self.port, peer_port, self.health_port, self.metrics_port) if p]
        if len(ports) != len(set(ports)):
            problems.append(
                f"{prefix}PORT, {prefix}PEER_PORT, {prefix}HEALTH_PORT and {prefix}METRICS_PORT must differ "
                f"(got {ports})"
            )
        return problems


S = TypeVar("S", bound=ProcessSettings)


class StatefulServiceSettings(ServiceSettings):
    """Settings of a service that owns a database (and no other service's)."""

    database_url: str | None = Field(default=None, description="default: sqlite:///<state_dir>/<service>.db")
    # Apply schema migrations at start-up; compose and Kubernetes turn this off and run `custody migrate` apart.
    auto_migrate: bool = True
    # PostgreSQL least privilege (services/common/roles.py): migrations connect with this URL, as the owner role,
    # and grant the runtime role (the one `database_url` connects as) only what the service's tables declare.
    migration_database_url: str | None = Field(default=None, description="default: database_url (one role)")
    database_runtime_role: RoleName | None = Field(
        default=None, description="default with migration_database_url: custody_<service>_runtime"
    )
    # Migrations SET ROLE to it, so that it owns the objects whoever logs in (a member of it, e.g. a DBA).
    database_owner_role: RoleName | None = Field(default=None, description="default: the migration URL's user")
    # Signs this service's page tokens (HMAC-SHA256; see services/common/pagination.py). A secret, like `token`:
    # replicas must share it. Unset, each process draws a random key at start, so its page tokens stop working
    # when it restarts and on its replicas; `custody init` writes one into the service's config file.
    page_token_key: SecretStr | None = Field(default=None, min_length=32, description="at least 32 characters")

    # Tamper evidence (services/common/ledger/): the Ed25519 key that signs this authority's checkpoints (written by
    # `custody init`, mode 0600, never in the database), the checkpoint log outside the database, and how often a
    # checkpoint is signed: once `ledger_checkpoint_leaves` leaves are unsigned, or the oldest unsigned leaf is
    # `ledger_checkpoint_interval_s` old. Replicas share the key and the log directory.
    ledger_key_file: Path | None = Field(default=None, description="default: <state_dir>/keys/<service>.ledger.key")
    ledger_checkpoint_dir: Path | None = Field(default=None, description="default: <state_dir>/ledger/<service>")
    ledger_checkpoint_leaves: int = Field(default=1000, ge=1, le=1_000_000)
    ledger_checkpoint_interval_s: float = Field(default=5.0, gt=0, le=3600)
    # Benchmarks only (bench/ measures mints with and without it): off, records get no leaves and a rewrite of the
    # database goes unnoticed.
    ledger_enabled: bool = True

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.state_dir / (self.service + '.db')}"

    @property
    def resolved_runtime_role(self) -> str | None:
        """The role migrations grant runtime privileges to; None when one role both migrates and serves."""
        if self.database_runtime_role:
            return self.database_runtime_role
        return f"custody_{self.service}_runtime" if self.migration_database_url else None

    @property
    def resolved_ledger_key_file(self) -> Path:
        return self.ledger_key_file or ledger_key_path(self.state_dir, self.service)

    @property
    def resolved_ledger_checkpoint_dir(self) -> Path:
        return self.ledger_checkpoint_dir or self.state_dir / "ledger" / self.service


def ledger_key_path(state_dir: Path, service: str) -> Path:
    """Where `custody init` writes an authority's checkpoint signing key (its verifier key sits beside it)."""
    return state_dir / "keys" / f"{service}.ledger.key"


def env_prefix(service: str) -> str:
    return f"CUSTODY_{service.upper()}_"


def load_settings(
    settings_cls: type[S], config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> S:
    """Loads and validates settings, or raises ConfigError naming every offending variable or key."""
    environ = os.environ if environ is None else environ
    prefix = env_prefix(settings_cls.service)
    if config_file is None and environ.get(prefix + CONFIG_FILE_SUFFIX):
        config_file = Path(environ[prefix + CONFIG_FILE_SUFFIX])
    fields = set(settings_cls.model_fields)
    problems: list[str] = []

    env_values: dict[str, str] = {}
    for name, value in environ.items():
        if not name.upper().startswith(prefix) or name.upper() == prefix + CONFIG_FILE_SUFFIX:
            continue
        key = name[len(prefix) :].lower()
        if key in fields:
            env_values[key] = value
        else:
            problems.append(f"{name}: unknown setting (known: {', '.join(sorted(prefix + f.upper() for f in fields))})")

    file_values: dict[str, Any] = {}
    if config_file is not None:
        file_values = _read_config_file(config_file)
        problems.extend(f"{config_file}: {key}: unknown setting" for key in sorted(set(file_values) - fields))

    if problems:
        raise ConfigError("; ".join(problems))
    try:
        settings = settings_cls(**{**file_values, **env_values})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, prefix, env_values, config_file)) from None
    problems = settings.transport_problems(prefix)
    if problems:
        raise ConfigError("; ".join(problems))
    return settings


def is_loopback(host: str) -> bool:
    """Whether `host` is only reachable from this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file does not exist") from None
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: unreadable config file: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: config file must be a mapping of setting: value")
    return {str(k).lower(): v for k, v in loaded.items()}


_SECRET_WORDS = ("token", "password", "secret", "key")


def _describe(exc: ValidationError, prefix: str, env_values: Mapping[str, str], config_file: Path | None) -> str:
    messages = []
    for error in exc.errors():
        key = str(error["loc"][0]) if error["loc"] else "?"
        where = f"{prefix}{key.upper()}" if key in env_values else f"{config_file}: {key}" if config_file else key
        shown = "" if any(word in key for word in _SECRET_WORDS) else f" (got {error.get('input')!r})"
        messages.append(f"{where}: {error['msg']}{shown}")
    return "; ".join(messages)
