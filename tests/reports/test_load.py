"""Reading results: the suite's table and lmms-eval 0.7.3's real results-file layout, and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from evaluation.records import read_results_table
from reports.errors import ReportInputError
from reports.load import load_lmms_eval_results, load_results
from reports.scores import chance_levels

LMMS_RUN = Path("lmms_eval") / "checkpoints__llava-tokenpacker-s3"
RESULTS_JSON = LMMS_RUN / "20250301_101500_results.json"


def _record(frame: pd.DataFrame, label: str, task: str, metric: str) -> pd.Series:
    match = frame[(frame["row_label"] == label) & (frame["task"] == task) & (frame["metric"] == metric)]
    assert len(match) == 1, (label, task, metric, len(match))
    return match.iloc[0]


def _copy_lmms_run(fixtures: Path, tmp_path: Path) -> Path:
    """A writable copy of the s=3 lmms-eval run; returns the copied results file."""
    shutil.copytree(fixtures / LMMS_RUN, tmp_path / LMMS_RUN)
    return tmp_path / RESULTS_JSON


def _edit_json(path: Path, edit) -> None:
    payload = json.loads(path.read_text(encoding="utf-8"))
    edit(payload)
    path.write_text(json.dumps(payload), encoding="utf-8")


def test_fixture_is_in_lmms_eval_layout(fixtures: Path) -> None:
    """<output>/<model_name_sanitized>/<date>_results.json with <date>_samples_<task>.jsonl beside it."""
    payload = json.loads((fixtures / RESULTS_JSON).read_text(encoding="utf-8"))
    assert (fixtures / RESULTS_JSON).parent.name == payload["model_name_sanitized"]
    for task in payload["results"]:
        assert (fixtures / LMMS_RUN / f"{payload['date']}_samples_{task}.jsonl").is_file()
    first = json.loads(
        (fixtures / LMMS_RUN / "20250301_101500_samples_gqa.jsonl").read_text().splitlines()[0]
    )
    assert {"doc_id", "doc_hash", "target", "filtered_resps", "input", "exact_match"} <= set(first)


def test_lmms_eval_values_are_copied(fixtures: Path) -> None:
    frame = load_lmms_eval_results(fixtures / RESULTS_JSON, root=fixtures / "lmms_eval")
    payload = json.loads((fixtures / RESULTS_JSON).read_text(encoding="utf-8"))
    gqa = _record(frame, "tokenpacker (s=3)", "gqa", "exact_match")
    assert gqa["value"] == payload["results"]["gqa"]["exact_match,none"]
    assert gqa["stderr"] == payload["results"]["gqa"]["exact_match_stderr,none"]
    assert gqa["n_samples"] == 200
    assert bool(gqa["higher_is_better"]) is True
    assert Path(gqa["samples_file"]).name == "20250301_101500_samples_gqa.jsonl"
    assert gqa["origin"] == "checkpoints/llava-tokenpacker-s3"
    f1 = _record(frame, "tokenpacker (s=3)", "pope", "pope_f1_score")
    assert f1["value"] == payload["results"]["pope"]["pope_f1_score,none"]
    assert pd.isna(f1["stderr"])  # "N/A" in the file: missing, never 0
    assert set(frame["metric"]) == {
        "exact_match",
        "pope_accuracy",
        "pope_precision",
        "pope_recall",
        "pope_f1_score",
        "pope_yes_ratio",
    }


def test_hub_model_without_projector_is_labelled_unknown(fixtures: Path) -> None:
    frame = load_results([fixtures / "lmms_eval" / "liuhaotian__llava-v1.5-7b"])
    assert set(frame["row_label"]) == {"unknown (liuhaotian/llava-v1.5-7b)"}
    assert frame["samples_file"].isna().all()


def test_suite_table_csv_and_parquet_agree(fixtures: Path) -> None:
    from_folder = load_results([fixtures / "suite"])
    from_csv = load_results([fixtures / "suite" / "results.csv"])
    columns = ["row_label", "task", "metric", "value"]
    pd.testing.assert_frame_equal(from_folder[columns], from_csv[columns])


def test_same_table_given_twice_is_read_once(fixtures: Path) -> None:
    once = load_results([fixtures / "suite"])
    twice = load_results([fixtures / "suite", fixtures / "suite" / "results.csv"])
    assert len(twice) == len(once)


def test_failed_cell_is_kept_as_failed(fixtures: Path) -> None:
    frame = load_results([fixtures / "suite"])
    failed = _record(frame, "tokenpacker (s=3)", "gqa", "exact_match")
    assert failed["status"] == "failed" and pd.isna(failed["value"])


def test_same_config_from_two_runs_gets_two_rows(fixtures: Path) -> None:
    frame = load_results([fixtures / "suite", fixtures / "lmms_eval"])
    labels = set(frame["row_label"])
    assert {"tokenpacker (s=3) [suite]", "tokenpacker (s=3) [checkpoints/llava-tokenpacker-s3]"} <= labels
    assert "tokenpacker (s=3)" not in labels
    assert (
        _record(frame, "tokenpacker (s=3) [checkpoints/llava-tokenpacker-s3]", "gqa", "exact_match")["value"]
        == 0.605
    )


def test_cells_of_one_config_that_differ_in_another_axis_get_their_own_rows(
    fixtures: Path, tmp_path: Path
) -> None:
    """An ablation sweep: one projector at two learning rates is two rows, named by the extra axis."""
    frame = read_results_table(fixtures / "suite")
    mlp = frame[frame["cell_id"] == "mlp"]
    low, high = mlp.copy(), mlp.copy()
    low["cell_id"], high["cell_id"] = "mlp2x_gelu-seed0-recipe.lr=_1e-4_", "mlp2x_gelu-seed0-recipe.lr=_1e-3_"
    high["value"] = high["value"] + 0.01
    (tmp_path / "suite").mkdir()
    pd.concat([low, high]).to_csv(tmp_path / "suite" / "results.csv", index=False)
    labels = set(load_results([tmp_path / "suite"])["row_label"])
    assert labels == {"mlp2x_gelu [recipe.lr=_1e-4_]", "mlp2x_gelu [recipe.lr=_1e-3_]"}


def test_a_cell_with_an_extra_axis_names_it_even_alone(fixtures: Path, tmp_path: Path) -> None:
    """The default sweep's HD cell trains stage 2 longer: its row says so though no other cell shares its config."""
    frame = read_results_table(fixtures / "suite")
    frame.loc[frame["cell_id"] == "mlp", "cell_id"] = "mlp2x_gelu-seed0-recipe.stage2.max_steps=400"
    (tmp_path / "suite").mkdir()
    frame.to_csv(tmp_path / "suite" / "results.csv", index=False)
    labels = set(load_results([tmp_path / "suite"])["row_label"])
    assert "mlp2x_gelu [recipe.stage2.max_steps=400]" in labels and "mlp2x_gelu" not in labels


def test_chance_from_results_table(fixtures: Path) -> None:
    chance = chance_levels(load_results([fixtures / "suite"]))
    assert {(c.task, c.metric): v for c, v in chance.items()} == {("syn_count", "exact_match"): 0.25}


def test_chance_from_lmms_eval_task_metadata(fixtures: Path, tmp_path: Path) -> None:
    results = _copy_lmms_run(fixtures, tmp_path)
    _edit_json(results, lambda p: p["configs"]["gqa"].update(metadata={"version": 0.0, "chance": 0.5}))
    chance = chance_levels(load_results([results]))
    assert {(c.task, c.metric): v for c, v in chance.items()} == {("gqa", "exact_match"): 0.5}


def test_chance_per_metric_from_lmms_eval_task_metadata(fixtures: Path, tmp_path: Path) -> None:
    """The suite's synthetic tasks declare {metric: chance} (evaluation/tasks/syn_*/*.yaml)."""
    results = _copy_lmms_run(fixtures, tmp_path)
    chance = {"pope_accuracy": 0.5, "pope_f1_score": 0.5}
    _edit_json(results, lambda p: p["configs"]["pope"].update(metadata={"version": 1.0, "chance": chance}))
    levels = chance_levels(load_results([results]))
    assert {(c.task, c.metric): v for c, v in levels.items()} == {("pope", m): v for m, v in chance.items()}


def test_old_mme_metric_spelling_lands_in_the_perception_column(fixtures: Path, tmp_path: Path) -> None:
    results = _copy_lmms_run(fixtures, tmp_path)
    _edit_json(
        results, lambda p: p["results"].update(mme={"alias": "mme", "mme_percetion_score,none": 1400.5})
    )
    frame = load_results([results])
    assert _record(frame, "tokenpacker (s=3)", "mme", "mme_perception_score")["value"] == 1400.5


# --- bad input -------------------------------------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="no such file or folder"):
        load_results([tmp_path / "nowhere"])


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="holds no results.parquet"):
        load_results([tmp_path])


def test_no_inputs() -> None:
    with pytest.raises(ReportInputError, match="no results given"):
        load_results([])


def test_empty_results_table(fixtures: Path, tmp_path: Path) -> None:
    read_results_table(fixtures / "suite").head(0).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ReportInputError, match="has no records"):
        load_results([tmp_path])


def test_table_missing_columns(tmp_path: Path) -> None:
    pd.DataFrame({"cell_id": ["a"], "value": [0.5]}).to_csv(tmp_path / "results.csv", index=False)
    with pytest.raises(ReportInputError, match="missing columns"):
        load_results([tmp_path])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p.pop("lmms_eval_version"), "unknown lmms-eval version"),
        (
            lambda p: p.update(lmms_eval_version="0.3.0"),
            r"written by lmms-eval 0.3.0; this reader knows .* 0.7.x",
        ),
        (lambda p: p.pop("n-samples"), "missing keys: n-samples"),
        (lambda p: p["config"].pop("model_args"), "config.model_args is missing"),
        (
            lambda p: p.update(results={"gqa": {"alias": "gqa", "exact_match,none": "N/A"}}),
            "no numeric metrics",
        ),
        (lambda p: p["config"].update(model_args="pretrained=x,scale_factor=two"), "scale_factor='two'"),
    ],
)
def test_bad_lmms_eval_files(fixtures: Path, tmp_path: Path, edit, message: str) -> None:
    results = _copy_lmms_run(fixtures, tmp_path)
    _edit_json(results, edit)
    with pytest.raises(ReportInputError, match=message):
        load_results([tmp_path / "lmms_eval"])


def test_results_json_that_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "20250101_000000_results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportInputError, match="cannot read as JSON"):
        load_results([tmp_path])


def test_conflicting_values_of_one_run_are_refused(fixtures: Path, tmp_path: Path) -> None:
    """Two copies of one sweep (same folder name) that disagree on a number: no number is picked."""
    for name, value in (("a", 0.62), ("b", 0.7)):
        frame = read_results_table(fixtures / "suite")
        frame.loc[(frame["cell_id"] == "mlp") & (frame["task"] == "local_gqa"), "value"] = value
        (tmp_path / name / "suite").mkdir(parents=True)
        frame.to_csv(tmp_path / name / "suite" / "results.csv", index=False)
    with pytest.raises(
        ReportInputError, match=r"conflicting results for mlp2x_gelu gqa/exact_match: 0\.62 .*0\.7"
    ):
        load_results([tmp_path / "a" / "suite", tmp_path / "b" / "suite"])


def test_conflicting_chance_levels_are_refused(fixtures: Path, tmp_path: Path) -> None:
    frame = read_results_table(fixtures / "suite")
    frame["chance"] = [0.5 if task == "syn_count" else None for task in frame["task"]]
    (tmp_path / "other").mkdir()
    frame.to_csv(tmp_path / "other" / "results.csv", index=False)
    with pytest.raises(ReportInputError, match="conflicting chance levels for syn_count/exact_match"):
        load_results([fixtures / "suite", tmp_path / "other"])
