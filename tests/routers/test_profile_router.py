from __future__ import annotations

import numpy as np
import pytest

from coe_gateway.profiles.profile import read_profile
from coe_gateway.routers.profile import ProfileRouter
from coe_gateway.routers.registry import load_router

HELD_OUT = "gemini-1.5-flash-002"


@pytest.fixture(scope="module")
def base(train_test, static_dir) -> ProfileRouter:
    train, _ = train_test
    others = [m for m in train.models if m != HELD_OUT]
    return ProfileRouter.fit(train, others, encoder={"kind": "static", "path": str(static_dir)},
                             clusters=4, bands=3)


def test_profile_of_a_new_model_is_routable(base, train_test, tmp_path) -> None:
    train, test = train_test
    assert HELD_OUT not in base.experts
    prof = base.profile_of(HELD_OUT, train.subset(np.arange(60)), {"fraction": 0.33})
    assert prof.overall.n == 60 and len(prof.clusters) == 4 and len(prof.difficulty_bands) == 3
    assert sum(g.n for g in prof.clusters) == 60 == sum(g.n for g in prof.difficulty_bands)
    path = prof.write(tmp_path / "flash.json")
    routed = base.with_profile(read_profile(path))
    assert routed.experts[-1] == HELD_OUT
    pred = routed.predict(test.queries())
    assert pred.quality.shape == (len(test), len(base.experts) + 1)
    # the old experts' predictions do not change when a profile is added
    assert np.allclose(pred.quality[:, :-1], base.predict(test.queries()).quality)
    loaded = load_router(routed.save(tmp_path / "router"))
    assert np.allclose(loaded.predict(test.queries()).quality, pred.quality, atol=1e-6)


def test_a_stronger_profile_scores_higher(base, train_test) -> None:
    train, test = train_test
    good = base.profile_of(HELD_OUT, train, {})
    bad = base.profile_of(HELD_OUT, train, {})
    for g in [bad.overall, *bad.categories.values(), *bad.clusters, *bad.difficulty_bands]:
        g.quality = g.quality / 4
    q_good = base.with_profile(good).predict(test.queries()).quality[:, -1]
    q_bad = base.with_profile(bad).predict(test.queries()).quality[:, -1]
    assert (q_good > q_bad).all()


def test_profile_from_another_frame_is_refused(base, train_test) -> None:
    prof = base.profile_of(HELD_OUT, train_test[0], {})
    prof.frame = "profile-frame-000000000000"
    with pytest.raises(ValueError, match="frame"):
        base.with_profile(prof)
