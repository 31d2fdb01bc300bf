"""What the domain is configured with: plain frozen values, built once by main.py from AiGatewaySettings (the
domain never sees the pydantic settings object)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The image sizes GenerateImage accepts; each image model supports some of them.
IMAGE_SIZES: tuple[str, ...] = ("256x256", "512x512", "1024x1024")


@dataclass(frozen=True)
class Operation:
    """Defaults of one operation; a request may override provider, model, temperature and max_tokens."""

    categories: tuple[str, ...]
    provider: str = "auto"  # "auto", "local" or "openai"
    model: str = ""
    temperature: float = 0.7
    max_tokens: int = 1024
    # Tried in order when the chosen provider is unavailable after its retries.
    fallback_providers: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageOperation:
    """Defaults of one image operation; a request may override provider, model and size."""

    categories: tuple[str, ...]
    provider: str = "auto"  # "auto", "local" or "openai"
    model: str = ""
    size: str = "1024x1024"


@dataclass(frozen=True)
class ImageModel:
    """An image model a provider may be asked for: its sizes ("1024x1024") and most images per request."""

    sizes: tuple[str, ...]
    max_count: int = 4


@dataclass(frozen=True)
class GatewayConfig:
    operations: Mapping[str, Operation]
    image_operations: Mapping[str, ImageOperation] = field(default_factory=dict)
    # provider -> model -> what it can make; a model missing here is refused by GenerateImage.
    image_models: Mapping[str, Mapping[str, ImageModel]] = field(default_factory=dict)
    openai_image_model: str = "gpt-image-1"
    local_image_model: str = "custody-local-image-1"
    # "auto": openai when its key is configured, else the offline local provider.
    default_provider: str = "auto"
    # Default models of providers that are not configured (named by GetPolicy and in error messages).
    openai_model: str = "gpt-4o-mini"
    local_model: str = "custody-local-1"
    # Per-attempt limit towards the provider; the caller's deadline bounds everything.
    provider_timeout_s: float = 120.0
    # Retries: see services/ai_gateway/domain/attempts.py for the rules these numbers feed.
    max_attempts: int = 3
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_wait_s: float = 20.0
    # Work budget when the caller sent no deadline.
    call_deadline_s: float = 300.0
    max_tokens_limit: int = 32_768
    max_schema_bytes: int = 64 * 1024
    audit_verbose: bool = False
    replay_retention_s: float = 24 * 3600.0
