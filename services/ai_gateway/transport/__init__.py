"""Transport: the only package that imports vendor SDKs or reads provider keys (enforced by tests/guards).

`build_providers` reads the key from the environment here and nowhere else; the rest of the gateway sees only
`Provider` objects and whether a provider is configured, never a key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.ai_gateway.transport.base import Provider
from services.ai_gateway.transport.local import LocalProvider

# The variable every OpenAI-compatible tool reads; `custody up` passes it to ai_gateway only.
OPENAI_KEY_ENV = "OPENAI_API_KEY"


@dataclass(frozen=True)
class TransportConfig:
    openai_base_url: str
    openai_model: str
    local_model: str
    connect_timeout_s: float
    timeout_s: float
    max_connections: int


def openai_key_configured(environ: Mapping[str, str] | None = None) -> bool:
    return bool((os.environ if environ is None else environ).get(OPENAI_KEY_ENV, "").strip())


def build_providers(config: TransportConfig, environ: Mapping[str, str] | None = None) -> dict[str, Provider]:
    """`local` always; `openai` when its key is set. Some OpenAI-compatible servers need no key: set any value."""
    environ = os.environ if environ is None else environ
    providers: dict[str, Provider] = {"local": LocalProvider(config.local_model)}
    key = environ.get(OPENAI_KEY_ENV, "").strip()
    if key:
        from services.ai_gateway.transport.openai_provider import OpenAIProvider

        providers["openai"] = OpenAIProvider(
            api_key=key,
            base_url=config.openai_base_url,
            model=config.openai_model,
            connect_timeout_s=config.connect_timeout_s,
            timeout_s=config.timeout_s,
            max_connections=config.max_connections,
        )
    return providers
