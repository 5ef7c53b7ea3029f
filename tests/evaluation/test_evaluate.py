"""`evaluate()` and `tokenpacker eval`: lmms-eval's standard results files, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lmms_eval.tasks import TaskManager

from evaluation.command import add_arguments
from evaluation.evaluate import DATA_ROOT_ENV, data_root_exported, evaluate, resolve_task_names
from tokenpacker.cli import main as tokenpacker_main
from tokenpacker.tiny import save_tiny_checkpoint, tiny_config

FIXTURE_TASKS = Path(__file__).parent / "fixtures" / "plugin_tasks"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), tiny_config("tokenpacker", 2), seed=0)


@pytest.fixture(scope="module")
def hd_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(
        tmp_path_factory.mktemp("tiny_hd"), tiny_config("tokenpacker", 3, patch_num=9), seed=2
    )


@pytest.fixture(scope="module")
def fixture_task_manager() -> TaskManager:
    return TaskManager("WARNING", include_path=str(FIXTURE_TASKS), include_defaults=False)


def samples_of(folder: Path, task: str) -> list[dict]:
    (path,) = folder.glob(f"*_samples_{task}.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_unknown_task_names_close_matches(fixture_task_manager):
    with pytest.raises(ValueError, match=r"unknown task 'plugin_colour'; did you mean plugin_colours"):
        resolve_task_names(fixture_task_manager, ["plugin_colours", "plugin_colour"])
    with pytest.raises(ValueError, match="unknown task 'zzz'; `lmms-eval --tasks list`"):
        resolve_task_names(fixture_task_manager, ["zzz"])
    with pytest.raises(ValueError, match="no tasks given"):
        resolve_task_names(fixture_task_manager, [])
    assert sorted(resolve_task_names(fixture_task_manager, ["plugin_*"])) == [
        "plugin_broken",
        "plugin_colours",
        "plugin_missing",
    ]


def test_bad_inputs_fail_before_any_work(tmp_path, checkpoint):
    with pytest.raises(ValueError, match="is not a suite checkpoint"):
        evaluate(tmp_path, ["plugin_colours"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="data root .*nowhere.* does not exist"):
        evaluate(checkpoint, ["plugin_colours"], tmp_path / "out", data_root=tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="task folder"):
        evaluate(checkpoint, ["plugin_colours"], tmp_path / "out", include_path=tmp_path / "no_tasks")
    with pytest.raises(ValueError, match="allowed: float32, bfloat16, float16"):
        evaluate(checkpoint, ["plugin_colours"], tmp_path / "out", dtype="half")
    assert not (tmp_path / "out").exists()


def test_data_root_is_exported_only_during_the_call(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, "/previous")
    with data_root_exported(tmp_path):
        assert os.environ[DATA_ROOT_ENV] == str(tmp_path)
    assert os.environ[DATA_ROOT_ENV] == "/previous"
    monkeypatch.delenv(DATA_ROOT_ENV)
    with data_root_exported(tmp_path):
        pass
    assert DATA_ROOT_ENV not in os.environ


def test_command_line_maps_onto_evaluate():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--tasks", "a, b", "--output", "o", "--batch-size", "2"])
    assert (args.model, args.tasks, args.output, args.batch_size, args.device, args.dtype) == (
        Path("m"),
        "a, b",
        Path("o"),
        2,
        "cpu",
        "float32",
    )


def test_command_reports_a_bad_checkpoint_in_one_line(tmp_path, capsys):
    code = tokenpacker_main(
        ["eval", "--model", str(tmp_path), "--tasks", "mme", "--output", str(tmp_path / "o")]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith("tokenpacker eval: error: ") and "is not a suite checkpoint" in error
    assert error.count("\n") == 1


@pytest.mark.slow
def test_evaluate_writes_lmms_eval_results_files(hd_checkpoint, tmp_path):
    folder = evaluate(
        hd_checkpoint,
        ["plugin_colours", "plugin_broken"],
        tmp_path,
        limit=3,
        batch_size=2,
        include_path=FIXTURE_TASKS,
        data_root=tmp_path,
    )
    assert folder.parent == tmp_path
    (results_file,) = folder.glob("*_results.json")
    results = json.loads(results_file.read_text())
    assert set(results["results"]) == {"plugin_colours", "plugin_broken"}
    assert 0.0 <= results["results"]["plugin_colours"]["exact_match,none"] <= 1.0
    assert results["config"]["model"] == "tokenpacker"
    assert [s["doc_id"] for s in samples_of(folder, "plugin_colours")] == [0, 1, 2]
    broken = {s["doc_id"]: s for s in samples_of(folder, "plugin_broken")}
    assert broken[1]["filtered_resps"] == "" and broken[1]["exact_match"] == 0.0


@pytest.mark.slow
def test_tokenpacker_eval_command_runs_end_to_end(checkpoint, tmp_path, capsys):
    argv = ["eval", "--model", str(checkpoint), "--tasks", "plugin_colours", "--output", str(tmp_path)]
    argv += ["--limit", "2", "--batch-size", "2", "--include-path", str(FIXTURE_TASKS)]
    assert tokenpacker_main(argv) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1].removeprefix("results written to "))
    assert len(samples_of(folder, "plugin_colours")) == 2
    assert len(list(folder.glob("*_results.json"))) == 1
