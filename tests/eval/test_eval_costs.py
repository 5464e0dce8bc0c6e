"""Cost model: price resolution, tiers, estimated and realised costs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coe_gateway.errors import ConfigError
from coe_gateway.eval.costs import CostModel, mean_output_tokens, resolve_prices, tier_price
from coe_gateway.eval.suite import DEFAULT_TIERS, CostSpec, Tier
from coe_gateway.records import from_rows

TIERS = [Tier(up_to_b=b, usd_per_mtok=p) for b, p in DEFAULT_TIERS]


@pytest.mark.parametrize(("params", "price"), [
    (0.135, 0.10), (4, 0.10), (7.2, 0.20), (8.6, 0.20), (12.9, 0.30), (21, 0.30), (34, 0.80),
    (70, 0.90), (80, 0.90), (111, 1.80),
])
def test_default_tiers(params: float, price: float) -> None:
    assert tier_price(params, TIERS) == price


def test_price_precedence_and_missing_price() -> None:
    spec = CostSpec(prices={"a": (1.0, 2.0)}, active_params_b={"b": 70})
    models_json = {"a": {"price_usd_per_mtok": [9, 9]}, "b": {"active_params_b": 7},
                   "c": {"price_usd_per_mtok": [0.5, 1.5]}, "d": {"active_params_b": 3}}
    prices = resolve_prices(["a", "b", "c", "d"], spec, models_json)
    assert (prices["a"].input_per_mtok, prices["a"].output_per_mtok) == (1.0, 2.0)
    assert prices["b"].input_per_mtok == 0.90 and "70B" in prices["b"].source  # suite wins
    assert prices["c"].source == "models.json list price"
    assert prices["d"].output_per_mtok == 0.10
    with pytest.raises(ConfigError, match=r"costs.prices.e: no price"):
        resolve_prices(["e"], spec, models_json, "s.yaml")


def test_gateway_config_prices(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("experts:\n  - name: small\n    backend: openai\n    model: x\n"
                   "    urls: [http://localhost:1]\n"
                   "    price: {input_per_mtok: 0.2, output_per_mtok: 0.4}\n")
    prices = resolve_prices(["small"], CostSpec(gateway_config=str(cfg)), {})
    assert prices["small"].output_per_mtok == 0.4 and prices["small"].source == "gateway config"


def _records(output_chars: dict[str, list[int]] | None, costs: dict[str, list[float]] | None):  # type: ignore[no-untyped-def]
    rows = []
    for i in range(2):
        row = {"id": str(i), "prompt": "x" * 400, "scores": {"a": 1.0, "b": 0.0}}
        if output_chars:
            row["output_chars"] = {m: v[i] for m, v in output_chars.items()}
        if costs:
            row["costs_usd"] = {m: v[i] for m, v in costs.items()}
        rows.append(row)
    return from_rows(rows)


def test_estimated_and_realised_costs() -> None:
    records = _records({"a": [400, 800], "b": [0, 0]}, {"a": [float("nan"), 0.5]})
    spec = CostSpec(prices={"a": (1.0, 2.0), "b": (10.0, 10.0)})
    prices = resolve_prices(["a", "b"], spec, {})
    cm = CostModel.fit(spec, prices, records)
    # mean output tokens: a (100 + 200) / 2 = 150; b unknown -> the other models' median
    assert cm.mean_output_tokens.tolist() == [150.0, 150.0]
    est = cm.estimate(records)  # prompt 100 tokens
    assert est[0].tolist() == pytest.approx([(100 * 1 + 150 * 2) / 1e6, 250 * 10 / 1e6])
    real = cm.realised(records)
    assert real[0, 0] == pytest.approx((100 * 1 + 100 * 2) / 1e6)  # own output, no record
    assert real[1, 0] == 0.5  # the recorded cost
    assert real[0, 1] == pytest.approx(250 * 10 / 1e6)  # 0 chars = unknown -> mean
    tokens_only = CostModel.fit(CostSpec(model="tokens-times-price", prices=spec.prices),
                                prices, records)
    assert tokens_only.realised(records)[1, 0] == pytest.approx((100 + 400) / 1e6)


def test_output_tokens_without_any_lengths() -> None:
    records = _records(None, None)
    assert mean_output_tokens(records, 4.0, None).tolist() == [256.0, 256.0]
    assert mean_output_tokens(records, 4.0, 32.0).tolist() == [32.0, 32.0]


def test_image_tokens_count_for_queries_with_an_image() -> None:
    records = from_rows([
        {"id": "1", "prompt": "abcd", "scores": {"a": 1.0}, "image": "1.jpg",
         "image_caption": "cap"},
        {"id": "2", "prompt": "abcd", "scores": {"a": 1.0}},
    ])
    spec = CostSpec(image_tokens=100, prices={"a": (1.0, 0.0)})
    cm = CostModel.fit(spec, resolve_prices(["a"], spec, {}), records)
    # "abcd\ncap" = 8 chars = 2 tokens, plus the image
    assert cm.prompt_tokens(records).tolist() == [102.0, 1.0]
    assert np.all(cm.estimate(records) > 0)
