"""The local, versioned price table and the cost of one call.

Text models are priced per 1M tokens, image models per image and size (`image_models`). Costs are computed with
Decimal from the provider's own usage report (for images: the images it returned). An unknown model or a missing usage
report gives an absent estimate with a reason, never 0; the local provider's model is listed at an explicit 0,
which is a known price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from services.ai_gateway.policy import PolicyError, describe_validation, read_yaml
from services.ai_gateway.transport.base import Usage
from services.common.hashing import sha256_canonical

PER = Decimal(1_000_000)
Price = Annotated[Decimal, Field(ge=0, le=100_000, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelPrice(_Strict):
    """USD per 1M tokens."""

    input: Price
    cached_input: Price
    output: Price
    aliases: list[str] = Field(default_factory=list)


class ImagePrice(_Strict):
    """USD per image, by size ("1024x1024"); a size missing here is unpriced."""

    per_image: dict[str, Price]
    aliases: list[str] = Field(default_factory=list)


class PriceTableDocument(_Strict):
    version: Annotated[str, Field(min_length=1, max_length=64)]
    currency: str = "USD"
    models: dict[str, dict[str, ModelPrice]]
    image_models: dict[str, dict[str, ImagePrice]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _usd_and_unique_names(self) -> PriceTableDocument:
        if self.currency != "USD":
            raise ValueError("only USD price tables are supported")
        tables: list[tuple[str, dict[str, ModelPrice] | dict[str, ImagePrice]]] = [
            *self.models.items(),
            *((f"image_models.{p}", m) for p, m in self.image_models.items()),
        ]
        for provider, models in tables:
            names = [n for name, price in models.items() for n in (name, *price.aliases)]
            if len(set(names)) != len(names):
                raise ValueError(f"{provider}: a model name or alias appears twice")
        return self


@dataclass(frozen=True)
class Cost:
    """estimate_usd is None when unknown, and unpriced_reason then says why."""

    estimate_usd: float | None
    price_table_version: str
    provider: str
    model: str
    usage: Usage | None
    unpriced_reason: str = ""


class PriceTable:
    def __init__(self, document: PriceTableDocument) -> None:
        self.document = document
        self.sha256 = sha256_canonical(document.model_dump(mode="json"))
        self._by_name: dict[tuple[str, str], ModelPrice] = {}
        for provider, models in document.models.items():
            for name, price in models.items():
                for alias in (name, *price.aliases):
                    self._by_name[(provider, alias)] = price
        self._images: dict[tuple[str, str], ImagePrice] = {}
        for provider, images in document.image_models.items():
            for name, image_price in images.items():
                for alias in (name, *image_price.aliases):
                    self._images[(provider, alias)] = image_price

    @property
    def version(self) -> str:
        return self.document.version

    def price(self, provider: str, model: str) -> ModelPrice | None:
        return self._by_name.get((provider, model))

    def image_price(self, provider: str, model: str, size: str) -> Decimal | None:
        """USD per image of `size` from this image model; None when the table has no such price."""
        price = self._images.get((provider, model))
        return None if price is None else price.per_image.get(size)

    def image_cost(self, provider: str, models: tuple[str, ...], size: str, images: int | None, why: str) -> Cost:
        """Cost of `images` images of `size` at the first of `models` priced for that size; `images` None means
        unknown (an attempt timed out after the provider may have made them), with `why`."""
        model = next((m for m in models if m and self.image_price(provider, m, size) is not None), None)
        shown = next((m for m in models if m), "")
        if images is None:
            return Cost(None, self.version, provider, shown, Usage(), why)
        if model is None:
            reason = f"image model {shown!r} has no price for {size} in the price table"
            return Cost(None, self.version, provider, shown, Usage(), reason)
        per_image = self.image_price(provider, model, size)
        assert per_image is not None
        return Cost(float(per_image * images), self.version, provider, model, Usage())

    def lists(self, provider: str, model: str) -> bool:
        """Whether the table names this model (text or image), priced or not: a finite set, unlike what callers
        may ask for."""
        return (provider, model) in self._by_name or (provider, model) in self._images

    def is_priced(self, provider: str, *models: str) -> bool:
        return any(self.price(provider, m) is not None for m in models if m)

    def cost(self, provider: str, models: tuple[str, ...], usage: Usage | None) -> Cost:
        """Cost of `usage` at the first of `models` (answering model, then requested one) that has a price."""
        model = next((m for m in models if m and self.price(provider, m) is not None), None)
        shown = next((m for m in models if m), "")
        if usage is None:
            return Cost(None, self.version, provider, shown, None, "the provider reported no usage")
        if model is None:
            return Cost(None, self.version, provider, shown, usage, f"model {shown!r} is not in the price table")
        return Cost(float(self.estimate(provider, model, usage)), self.version, provider, model, usage)

    def estimate(self, provider: str, model: str, usage: Usage) -> Decimal:
        price = self.price(provider, model)
        if price is None:
            raise KeyError(f"{provider}/{model} has no price")
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        return (
            (usage.input_tokens - cached) * price.input
            + cached * price.cached_input
            + usage.output_tokens * price.output
        ) / PER


def load_price_table(path: Path) -> PriceTable:
    document = read_yaml(path, "price table")
    try:
        return PriceTable(PriceTableDocument.model_validate(document))
    except ValidationError as exc:
        raise PolicyError(f"price table {path} is invalid: {describe_validation(exc)}") from None
