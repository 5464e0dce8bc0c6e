from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.routers.irt import IRTRouter
from coe_gateway.routers.mf import MFRouter
from coe_gateway.routers.mlp import MLPRouter
from coe_gateway.routers.neural import expected_calibration_error, fit_temperature, sigmoid
from coe_gateway.routers.registry import load_router


def test_ece_closed_form() -> None:
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(p, np.array([0.0, 0.0, 1.0, 1.0]), bins=10) == \
        pytest.approx(0.1)
    # one bin at 0.9 where half are right: |0.9 - 0.5| over half the mass
    assert expected_calibration_error(p, np.array([0.0, 0.0, 1.0, 0.0]), bins=10) == \
        pytest.approx(0.5 * 0.1 + 0.5 * 0.4)
    assert expected_calibration_error(p, np.array([np.nan] * 4)) != 0.0  # NaN: nothing known


def test_fit_temperature_recovers_overconfidence() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 1.5, 20000)
    y = (rng.random(20000) < sigmoid(true_logit)).astype(float)
    t = fit_temperature((true_logit * 2.0)[:, None], y[:, None])
    assert t == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("cls, options", [(MLPRouter, {"hidden": 16, "epochs": 5}),
                                          (MFRouter, {"rank": 4, "epochs": 5})])
def test_learned_predictors_round_trip(cls, options, train_test, encoder, tmp_path) -> None:
    train, test = train_test
    router = cls.fit(train, encoder=encoder, **options)
    assert {"ece_val", "ece_val_raw", "temperature"} <= set(router.calibration) | {"temperature"}
    pred = router.predict(test.queries())
    assert pred.quality.shape == (len(test), len(train.models))
    assert (pred.quality > 0).all() and (pred.quality < 1).all()
    loaded = load_router(router.save(tmp_path / cls.kind))
    assert np.allclose(loaded.predict(test.queries()).quality, pred.quality, atol=1e-6)


def test_irt_ranks_strong_above_weak_and_round_trips(train_test, encoder, tmp_path) -> None:
    train, test = train_test
    router = IRTRouter.fit(train, encoder=encoder)
    pred = router.predict(test.queries())
    strong, weak = pred.experts.index("gemini-1.5-pro-002"), pred.experts.index("Llama-2-7b-hf")
    assert (pred.quality[:, strong] > pred.quality[:, weak]).mean() > 0.9
    loaded = load_router(router.save(tmp_path / "irt"))
    assert np.allclose(loaded.predict(test.queries()).quality, pred.quality, atol=1e-6)
    with pytest.raises(ValueError, match="unknown option"):
        IRTRouter.fit(train, encoder=encoder, banana=1)
