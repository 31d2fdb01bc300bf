"""The console's settings (`CUSTODY_CONSOLE_*`, optional YAML file), through the one config loader."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from services.common.catalog import CONSOLE, CONSOLE_DEFAULT_PORT, SERVICE_NAMES, SERVICES
from services.common.config import Port, ProcessSettings, ServiceAddress

SERVICE_ADDRESS_DEFAULT = "default: 127.0.0.1 at the service's default (public) port"


class ConsoleSettings(ProcessSettings):
    """The console holds no token and no database: only where the services are and how to trust them.

    It calls the services' public ports, where people are served (server-authenticated TLS, no client
    certificate), never their mutual-TLS peer ports: it acts as the signed-in person, not as a service."""

    service: ClassVar[str] = CONSOLE

    port: Port = CONSOLE_DEFAULT_PORT
    ai_gateway_address: ServiceAddress = Field(default=None, description=SERVICE_ADDRESS_DEFAULT)
    runs_address: ServiceAddress = Field(default=None, description=SERVICE_ADDRESS_DEFAULT)
    art_studio_address: ServiceAddress = Field(default=None, description=SERVICE_ADDRESS_DEFAULT)
    lineage_address: ServiceAddress = Field(default=None, description=SERVICE_ADDRESS_DEFAULT)
    # The CA the services' certificates chain to, when the console serves plain HTTP itself (e.g. behind an
    # ingress that terminates TLS) but the services speak TLS. With tls_dir: its ca.crt.
    ca_file: Path | None = Field(default=None, description="default: <tls_dir>/ca.crt")
    # Cookies marked Secure (sent over HTTPS only). Unset: on with tls_dir. Set true behind a TLS-terminating proxy.
    secure_cookies: bool | None = Field(default=None, description="default: true with tls_dir")
    # The origin browsers use to reach the console when that is not its own listener's (a proxy that terminates
    # TLS in front of it: "https://console.example.com"). Forms are accepted from it as well as from the listener.
    public_origin: str | None = Field(default=None, pattern=r"^https?://[^/\s]+$")
    # How long a sign-in lasts in the browser; the token itself stays valid until revoked.
    session_max_age_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    # Deadline of each call to a service; a page makes several.
    call_timeout_s: float = Field(default=15.0, gt=0, le=300)

    def service_address(self, service: str) -> str:
        configured = getattr(self, f"{service}_address")
        return str(configured) if configured else f"127.0.0.1:{SERVICES[service].default_port}"

    def service_addresses(self) -> dict[str, str]:
        return {service: self.service_address(service) for service in SERVICE_NAMES}

    @property
    def resolved_ca_file(self) -> Path | None:
        if self.ca_file is not None:
            return self.ca_file
        return None if self.tls_dir is None else self.tls_dir / "ca.crt"

    @property
    def resolved_secure_cookies(self) -> bool:
        return self.tls_dir is not None if self.secure_cookies is None else self.secure_cookies
