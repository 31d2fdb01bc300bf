"""The price table: exact costs from reported usage; unknown stays unknown (absent and flagged), never 0."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.ai_gateway.config import DEFAULT_PRICE_TABLE_FILE
from services.ai_gateway.policy import PolicyError
from services.ai_gateway.pricing import PriceTable, load_price_table
from services.ai_gateway.transport.base import Usage


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return load_price_table(DEFAULT_PRICE_TABLE_FILE)


def test_cost_counts_cached_input_at_its_own_price(prices: PriceTable) -> None:
    cost = prices.cost("openai", ("gpt-4o-mini",), Usage(1_000_000, 200_000, 500_000))
    # 800k input at 0.15, 200k cached at 0.075, 500k output at 0.60
    assert cost.estimate_usd == pytest.approx(0.12 + 0.015 + 0.30)
    assert cost.unpriced_reason == "" and cost.price_table_version == prices.version


def test_the_answering_models_dated_name_is_priced_through_its_alias(prices: PriceTable) -> None:
    cost = prices.cost("openai", ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"), Usage(1000, 0, 0))
    assert cost.estimate_usd == pytest.approx(0.00015)
    assert cost.model == "gpt-4o-mini-2024-07-18"


def test_an_unknown_model_has_no_cost_and_says_why(prices: PriceTable) -> None:
    cost = prices.cost("openai", ("gpt-9-ultra",), Usage(10, 0, 10))
    assert cost.estimate_usd is None
    assert "gpt-9-ultra" in cost.unpriced_reason and "not in the price table" in cost.unpriced_reason


def test_missing_usage_has_no_cost_even_for_a_priced_model(prices: PriceTable) -> None:
    cost = prices.cost("openai", ("gpt-4o-mini",), None)
    assert cost.estimate_usd is None and cost.unpriced_reason == "the provider reported no usage"


def test_the_local_model_is_a_known_zero(prices: PriceTable) -> None:
    cost = prices.cost("local", ("custody-local-1",), Usage(100, 0, 100))
    assert cost.estimate_usd == 0.0 and cost.unpriced_reason == ""


def test_prices_are_per_provider(prices: PriceTable) -> None:
    assert prices.cost("local", ("gpt-4o-mini",), Usage(1, 0, 1)).estimate_usd is None


def test_cost_is_exact_for_small_counts(prices: PriceTable) -> None:
    assert prices.cost("openai", ("gpt-4o-mini",), Usage(12, 2, 7)).estimate_usd == 5.85e-06


@pytest.mark.parametrize(
    "models",
    [
        {"openai": {"m": {"input": -1, "cached_input": 0, "output": 0}}},
        {"openai": {"m": {"input": 1, "cached_input": 0}}},
        {
            "openai": {
                "m": {"input": 1, "cached_input": 0, "output": 1, "aliases": ["n"]},
                "n": {"input": 1, "cached_input": 0, "output": 1},
            }
        },
    ],
    ids=["negative", "missing-output", "duplicate-alias"],
)
def test_an_invalid_price_table_is_refused(tmp_path: Path, models: dict) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(yaml.safe_dump({"version": "t1", "models": models}))
    with pytest.raises(PolicyError, match="price table"):
        load_price_table(path)
