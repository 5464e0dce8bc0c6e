from __future__ import annotations

import json

import numpy as np
import pytest

from coe_gateway.profiles.profile import build_profile, read_profile


def _profile():
    scores = np.array([1.0, 0.0, 1.0, np.nan, 1.0, 1.0])
    return build_profile(
        "m", "frame-x", scores, [f"q{i}" for i in range(6)],
        ["math", "math", "law", "law", None, "law"], cluster=np.array([0, 0, 1, 1, 1, 0]),
        band=np.array([0, 1, 1, 0, 0, 1]), band_edges=[0.0, 0.5, 1.0], n_clusters=2,
        costs=np.array([1e-4] * 6), source={"fraction": 1.0})


def test_groups_count_and_average_the_known_results() -> None:
    p = _profile()
    assert (p.overall.quality, p.overall.n) == (0.8, 5)
    assert (p.categories["math"].quality, p.categories["math"].n) == (0.5, 2)
    assert (p.categories["law"].quality, p.categories["law"].n) == (1.0, 2)  # q3 has no result
    assert p.categories["law"].query_ids == ["q2", "q5"]
    assert [(g.quality, g.n) for g in p.clusters] == [(0.6667, 3), (1.0, 2)]  # 4 digits
    assert p.clusters[1].top_category == "law"
    assert [(g.low, g.high) for g in p.difficulty_bands] == [(0.0, 0.5), (0.5, 1.0)]
    assert p.overall.cost_usd == pytest.approx(1e-4)


def test_write_read_round_trip(tmp_path) -> None:
    p = _profile()
    again = read_profile(p.write(tmp_path / "m.json"))
    assert again.to_dict() == p.to_dict()


@pytest.mark.parametrize("edit, field", [
    (lambda d: d.update(schema="v0"), "schema"),
    (lambda d: d["categories"]["math"].update(quality=1.5), r"categories\.math\.quality"),
    (lambda d: d["clusters"][1].update(n=-1), r"clusters\[1\]\.n"),
])
def test_bad_profiles_name_the_field(tmp_path, edit, field) -> None:
    data = _profile().to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueError, match=field):
        read_profile(path)


def test_invalid_json_names_the_line(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n "model": "m",\n oops\n}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken.json: line 3"):
        read_profile(path)
