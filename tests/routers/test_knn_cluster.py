from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.routers.base import Query
from coe_gateway.routers.cluster import ClusterRouter, cluster_stats, soft_assign
from coe_gateway.routers.knn import KNNRouter
from coe_gateway.routers.registry import load_router


def test_knn_with_k1_returns_the_identical_training_query(train_test, encoder) -> None:
    train, _ = train_test
    router = KNNRouter.fit(train, encoder=encoder, k=1)
    pred = router.predict([Query(train.prompts[7])])
    expected = np.nan_to_num(train.scores[7], nan=0.0)
    assert np.allclose(pred.quality[0], expected)


def test_knn_predicts_in_range_and_round_trips(train_test, encoder, tmp_path) -> None:
    train, test = train_test
    router = KNNRouter.fit(train, encoder=encoder, k=8, weighting="softmax")
    pred = router.predict(test.queries())
    assert pred.quality.shape == (len(test), len(train.models))
    assert (pred.quality >= 0).all() and (pred.quality <= 1).all()
    assert (pred.confidence >= 0).all() and (pred.confidence <= 1).all()
    loaded = load_router(router.save(tmp_path / "knn"))
    assert loaded.experts == router.experts
    assert np.allclose(loaded.predict(test.queries()).quality, pred.quality, atol=1e-3)


def test_knn_rejects_bad_options(train_test, encoder) -> None:
    with pytest.raises(ValueError, match="weighting"):
        KNNRouter.fit(train_test[0], encoder=encoder, weighting="cosine")


def test_cluster_stats_shrink_towards_the_mean() -> None:
    labels = np.array([0, 0, 1, 1])
    scores = np.array([[1.0], [1.0], [0.0], [np.nan]])
    quality, counts = cluster_stats(labels, scores, 2, kappa=2.0)
    mean = 2 / 3
    assert counts[:, 0].tolist() == [2, 1]
    assert quality[0, 0] == pytest.approx((2 + 2 * mean) / 4)
    assert quality[1, 0] == pytest.approx((0 + 2 * mean) / 3)


def test_soft_assign_hard_and_soft() -> None:
    c = np.eye(2, dtype=np.float32)
    x = np.array([[0.9, 0.1]], dtype=np.float32)
    assert soft_assign(x, c, 0.0).tolist() == [[1.0, 0.0]]
    w = soft_assign(x, c, 1.0)
    assert w.sum() == pytest.approx(1.0) and 0.5 < w[0, 0] < 1.0


def test_cluster_router_round_trip(train_test, encoder, tmp_path) -> None:
    train, test = train_test
    router = ClusterRouter.fit(train, encoder=encoder, clusters=4, temperature=0.05)
    pred = router.predict(test.queries())
    assert router.centroids.shape[0] == 4
    assert np.allclose(load_router(router.save(tmp_path / "c")).predict(test.queries()).quality,
                       pred.quality, atol=1e-5)
