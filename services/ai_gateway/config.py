"""Settings of the ai_gateway service (`CUSTODY_AI_GATEWAY_*`).

Scalars come from the environment or the YAML config file; the structured settings (`operations`, `budgets`)
are mappings in the config file, or JSON text in the environment. Provider keys are not settings: only the
transport package reads them (see services/ai_gateway/transport/).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.ai_gateway.domain.config import IMAGE_SIZES
from services.common.config import Port, StatefulServiceSettings
from services.common.limits import MAX_IMAGES_PER_CALL

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_POLICY_FILE = PACKAGE_DIR / "policies" / "default.yaml"
DEFAULT_PRICE_TABLE_FILE = PACKAGE_DIR / "prices" / "default.yaml"

ProviderName = Literal["local", "openai"]
# "auto": openai when a key is configured, else the offline local provider.
ProviderChoice = Literal["auto", "local", "openai"]

MAX_TOKENS_LIMIT = 128_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OperationSettings(_Strict):
    """Defaults for one operation; a request may override provider, model, temperature and max_tokens."""

    categories: Annotated[list[str], Field(min_length=1)]
    provider: ProviderChoice = "auto"
    model: str = ""
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)] = 1024
    # Tried in order when the chosen provider is unavailable after its retries.
    fallback_providers: list[ProviderName] = Field(default_factory=list)


# The image sizes GenerateImage accepts (domain/config.py IMAGE_SIZES); each image model supports some of them
# (`image_models`).
ImageSize = Literal["256x256", "512x512", "1024x1024"]


class ImageOperationSettings(_Strict):
    """Defaults for one image operation; a request may override provider, model and size."""

    categories: Annotated[list[str], Field(min_length=1)]
    provider: ProviderChoice = "auto"
    model: str = ""
    size: ImageSize = "1024x1024"


class ImageModelSettings(_Strict):
    """What one image model can make: the sizes it supports and how many images one request may ask for."""

    sizes: Annotated[list[ImageSize], Field(min_length=1)]
    max_count: Annotated[int, Field(ge=1, le=MAX_IMAGES_PER_CALL)] = MAX_IMAGES_PER_CALL


class Budget(_Strict):
    """Limits for one caller; None means unlimited."""

    requests_per_minute: Annotated[int, Field(ge=1)] | None = None
    tokens_per_day: Annotated[int, Field(ge=1)] | None = None
    usd_per_day: Annotated[float, Field(gt=0)] | None = None


DEFAULT_OPERATIONS: dict[str, OperationSettings] = {
    "prompt_to_svg_spec": OperationSettings(
        categories=["ROSETTE_DESIGN"], temperature=0.4, max_tokens=800, fallback_providers=["local"]
    ),
    "explain_run_decision": OperationSettings(categories=["EXPLANATION"], temperature=0.2, max_tokens=1200),
    "general_text": OperationSettings(categories=["GENERAL"], temperature=0.7, max_tokens=1024),
}

DEFAULT_IMAGE_OPERATIONS: dict[str, ImageOperationSettings] = {
    "concept_image": ImageOperationSettings(categories=["ROSETTE_DESIGN", "GENERAL"]),
}
DEFAULT_IMAGE_MODELS: dict[ProviderName, dict[str, ImageModelSettings]] = {
    "local": {"custody-local-image-1": ImageModelSettings(sizes=list(IMAGE_SIZES))},  # type: ignore[arg-type]
    "openai": {
        "gpt-image-1": ImageModelSettings(sizes=["1024x1024"]),
        "dall-e-3": ImageModelSettings(sizes=["1024x1024"], max_count=1),
        "dall-e-2": ImageModelSettings(sizes=list(IMAGE_SIZES)),  # type: ignore[arg-type]
    },
}


class AiGatewaySettings(StatefulServiceSettings):
    service: ClassVar[str] = "ai_gateway"

    port: Port = 50051

    # Safety policy and price table (YAML, versioned, validated at start; nothing is fetched from the network).
    policy_file: Path = DEFAULT_POLICY_FILE
    price_table_file: Path = DEFAULT_PRICE_TABLE_FILE
    operations: dict[str, OperationSettings] = Field(default_factory=lambda: dict(DEFAULT_OPERATIONS))
    # GenerateImage: its operations, and the image models each provider may be asked for (with their sizes).
    image_operations: dict[str, ImageOperationSettings] = Field(default_factory=lambda: dict(DEFAULT_IMAGE_OPERATIONS))
    image_models: dict[ProviderName, dict[str, ImageModelSettings]] = Field(
        default_factory=lambda: {p: dict(m) for p, m in DEFAULT_IMAGE_MODELS.items()}
    )
    # Per-caller limits keyed by principal id ("service:runs", "human:operator"); "*" applies to everyone else.
    budgets: dict[str, Budget] = Field(default_factory=dict)

    # Providers. "auto" picks openai when its key is set, else local.
    default_provider: ProviderChoice = "auto"
    # Any OpenAI-compatible server (vLLM, Ollama, LM Studio); empty: the SDK's default (api.openai.com).
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    local_model: str = "custody-local-1"
    # Default image models of the providers (each must be in image_models).
    openai_image_model: str = "gpt-image-1"
    local_image_model: str = "custody-local-image-1"
    # Per-attempt limits towards the provider; the caller's deadline bounds everything.
    provider_connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    provider_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    # Open connections to the provider: enough for 256+ concurrent in-flight calls.
    provider_max_connections: int = Field(default=512, ge=1, le=10_000)
    # Total attempts per provider for 429, 5xx and timeouts (1 = no retry).
    max_attempts: int = Field(default=3, ge=1, le=10)
    backoff_initial_s: float = Field(default=0.5, ge=0, le=60)
    backoff_max_s: float = Field(default=8.0, ge=0, le=600)
    # A Retry-After longer than this is not waited for: the call fails at once with RetryInfo.
    max_retry_wait_s: float = Field(default=20.0, ge=0, le=600)
    # Work budget when the caller sent no deadline.
    call_deadline_s: float = Field(default=300.0, gt=0, le=3600)

    # Largest accepted max_tokens and response_json_schema.
    max_tokens_limit: int = Field(default=32_768, ge=1, le=MAX_TOKENS_LIMIT)
    max_schema_bytes: int = Field(default=64 * 1024, ge=128, le=1024 * 1024)

    # Store raw prompts and responses (secrets redacted) in the audit rows. Off: hashes and metrics only.
    audit_verbose: bool = False
    # How long a successful result is kept to answer a repeated request_id.
    replay_retention_s: float = Field(default=24 * 3600.0, ge=0)

    @field_validator("operations", "budgets", "image_operations", "image_models", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """Environment variables carry these mappings as JSON text."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"not valid JSON: {exc}") from None
        return value
