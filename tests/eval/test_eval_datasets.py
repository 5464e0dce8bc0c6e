"""Reading routing records, RouterBench CSV and pickle; malformed input; splits."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from coe_gateway.eval import metrics
from coe_gateway.eval.datasets import (
    load_models_json,
    load_records,
    load_routerbench_csv,
    load_routerbench_pickle,
    split_indices,
)
from coe_gateway.records import RecordError

from .conftest import write_tiny_records

HEADER = ["", "sample_id", "prompt", "eval_name", "m1", "m2", "m1|model_response",
          "m2|model_response", "m1|total_cost", "m2|total_cost", "oracle_model_to_route_to"]


def write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_routerbench_csvs_load_with_oracle_and_best_single(shared_data: Path) -> None:
    files = sorted((shared_data / "routerbench").glob("*.csv"))
    records = load_records(files)
    assert len(records) == 3178
    assert len(records.models) == 11
    # independently, with the csv module: a missing score counts as 0
    csv.field_size_limit(sys.maxsize)
    rows = [r for f in files for r in csv.DictReader(f.open(newline="", encoding="utf-8"))]
    models = [c[: -len("|total_cost")] for c in rows[0] if c.endswith("|total_cost")]
    assert sorted(models) == sorted(records.models)
    best_row = [max(float(r[m]) for m in models if r[m] != "") for r in rows]
    oracle = sum(best_row) / len(rows)
    single = {m: sum(float(r[m]) if r[m] != "" else 0.0 for r in rows) / len(rows)
              for m in models}
    scores = np.nan_to_num(records.scores, nan=0.0)
    choice = metrics.oracle_choice(scores, records.costs)
    assert metrics.accuracy(scores, choice) == pytest.approx(oracle)
    acc = scores.mean(axis=0)
    assert records.models[int(np.argmax(acc))] == max(single, key=single.get)
    assert acc.max() == pytest.approx(max(single.values()))
    # the files' own train/test split is kept
    _, test, how = split_indices(records, 0.3, 0)
    assert how == "source split"
    assert len(test) == sum(1 for f in files if "_test" in f.name
                            for _ in csv.DictReader(f.open(newline="", encoding="utf-8")))


def test_routerbench_csv_fields(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "x_train.csv", [
        ["7", "s.1", "['What is 2+2?']", "math", "1.0", "0.0", "['4']", "['five']", "0.5",
         "0.25", "m1"],
        ["8", "s.2", "['Hi', 'again']", "chat", "", "1.0", "", "['hello']", "0.5", "0.25", "m2"],
    ])
    rs = load_routerbench_csv(path)
    assert rs.models == ["m1", "m2"]
    assert rs.ids == ["routerbench/7", "routerbench/8"]
    assert rs.prompts == ["What is 2+2?", "Hi\nagain"]
    assert rs.categories == ["math", "chat"]
    assert rs.splits == ["train", "train"]
    assert np.isnan(rs.scores[1, 0]) and rs.scores[1, 1] == 1.0
    assert rs.costs.tolist() == [[0.5, 0.25], [0.5, 0.25]]
    assert rs.output_chars[0].tolist() == [1.0, 4.0]
    assert rs.meta[0]["oracle_model_to_route_to"] == "m1"


@pytest.mark.parametrize(("row", "field", "line"), [
    (["1", "s", "p", "e", "yes", "0", "a", "b", "0.1", "0.1", "m1"], "m1", 2),
    (["1", "s", "p", "e", "1.5", "0", "a", "b", "0.1", "0.1", "m1"], "m1", 2),
    (["1", "s", "p", "e", "1", "0", "a", "b", "-3", "0.1", "m1"], "m1|total_cost", 2),
    (["1", "s", "", "e", "1", "0", "a", "b", "0.1", "0.1", "m1"], "prompt", 2),
    (["1", "s", "p", "e", "", "", "a", "b", "0.1", "0.1", "m1"], "scores", 2),
])
def test_malformed_routerbench_csv_names_file_line_field(
    tmp_path: Path, row: list[str], field: str, line: int
) -> None:
    good = ["0", "s0", "p", "e", "1", "0", "a", "b", "0.1", "0.1", "m1"]
    path = write_csv(tmp_path / "bad.csv", [good, row])
    with pytest.raises(RecordError) as err:
        load_routerbench_csv(path)
    assert (err.value.path, err.value.line, err.value.field) == (str(path), line + 1, field)
    assert f"bad.csv:{line + 1}: {field}:" in str(err.value)


def test_csv_without_a_model_score_column(tmp_path: Path) -> None:
    header = [h for h in HEADER if h != "m2"]
    path = write_csv(tmp_path / "h.csv", [["0", "s", "p", "e", "1", "a", "b", "0.1", "0.1",
                                          "m1"]], header)
    with pytest.raises(RecordError, match="h.csv:1: m2: score column missing"):
        load_routerbench_csv(path)


def test_routerbench_pickle_round_trip(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({
        "sample_id": ["a.1", "a.2"], "prompt": ["['Q1']", "['Q2']"], "eval_name": ["arc", "arc"],
        "m1": [1.0, 0.0], "m2": [0.0, float("nan")], "m1|model_response": ["['A']", "['B']"],
        "m2|model_response": ["['C']", "['D']"], "m1|total_cost": [0.1, 0.1],
        "m2|total_cost": [0.2, 0.2], "oracle_model_to_route_to": ["m1", "m2"],
    })
    path = tmp_path / "routerbench_0shot.pkl"
    frame.to_pickle(path)
    rs = load_records([path])
    assert rs.models == ["m1", "m2"] and len(rs) == 2
    assert rs.prompts == ["Q1", "Q2"]
    assert np.isnan(rs.scores[1, 1])
    frame["m1"] = frame["m1"].astype(object)
    frame.loc[1, "m1"] = "bad"
    frame.to_pickle(path)
    with pytest.raises(RecordError, match=r"routerbench_0shot.pkl:2: m1: not a number"):
        load_routerbench_pickle(path)


def test_jsonl_gz_and_concat(tmp_path: Path) -> None:
    a = write_tiny_records(tmp_path / "a.jsonl")
    b = tmp_path / "b.jsonl.gz"
    with gzip.open(b, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "other/1", "prompt": "x", "scores": {"new": 1.0}}) + "\n")
    rs = load_records([a, b])
    assert len(rs) == 9 and rs.models == ["cheap", "mid", "big", "new"]
    assert np.isnan(rs.scores[0, 3]) and np.isnan(rs.scores[8, 0])
    with pytest.raises(RecordError, match="duplicate id"):
        load_records([a, a])


@pytest.mark.parametrize(("line", "field"), [
    ('{"id": "1", "prompt": "p", "scores": {"m": 2}}', "scores.m"),
    ('{"id": "1", "prompt": 3, "scores": {"m": 1}}', "prompt"),
    ('{"id": "1", "prompt": "p", "scores": {"m": "x"}}', "scores.m"),
    ('{"id": "1", "prompt": "p"', "<json>"),
])
def test_malformed_jsonl_names_file_line_field(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "0", "prompt": "ok", "scores": {"m": 1}}\n' + line + "\n")
    with pytest.raises(RecordError) as err:
        load_records([path])
    assert (err.value.line, err.value.field) == (2, field)


def test_unknown_extension_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(RecordError, match="unknown format"):
        load_records([tmp_path / "x.txt"])
    with pytest.raises(RecordError, match="no such file"):
        load_records([tmp_path / "none.jsonl"])


def test_models_json_validation(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text('{"a": {"active_params_b": 7, "price_usd_per_mtok": null}}')
    assert load_models_json(path)["a"]["active_params_b"] == 7
    path.write_text('{"a": {"price_usd_per_mtok": [1]}}')
    with pytest.raises(RecordError, match="a.price_usd_per_mtok"):
        load_models_json(path)


def test_random_split_is_seeded_and_grouped(tmp_path: Path) -> None:
    rs = load_records([write_tiny_records(tmp_path / "t.jsonl")])
    tr1, te1, how = split_indices(rs, 0.25, seed=3)
    tr2, te2, _ = split_indices(rs, 0.25, seed=3)
    assert "random split" in how and len(te1) == 2 and len(tr1) == 6
    assert np.array_equal(te1, te2) and np.array_equal(tr1, tr2)
    assert not set(tr1) & set(te1)
    # group by the id's prefix: queries 0-3 and 4-7 form two groups
    rs.ids = [f"g{i // 4}/{i}" for i in range(8)]
    _, te, _ = split_indices(rs, 0.5, seed=0, group_pattern=r"^(g\d)/")
    assert sorted(te.tolist()) in ([0, 1, 2, 3], [4, 5, 6, 7])


def test_relative_image_paths_resolve_against_the_data_file(tmp_path: Path) -> None:
    path = tmp_path / "mm.jsonl"
    path.write_text(json.dumps({"id": "1", "prompt": "p", "scores": {"m": 1.0},
                                "image": "images/1.jpg"}) + "\n"
                    + json.dumps({"id": "2", "prompt": "p", "scores": {"m": 1.0},
                                  "image": "https://x/2.png"}) + "\n")
    rs = load_records([path])
    assert rs.images == [str(tmp_path / "images" / "1.jpg"), "https://x/2.png"]
