"""The sweep runner with fake stages: tidy records, reuse, failures, resume after SIGKILL, atomic files, launchers."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from evaluation.records import RESULT_COLUMNS, atomic_write, read_results_table
from evaluation.sweep.launchers import LocalLauncher, SubmititLauncher, plan_workers, resolve_jobs
from evaluation.sweep.runner import cell_statuses, run_sweep, sweep_lock
from evaluation.sweep.spec import SweepSpecError, load_spec
from evaluation.sweep.state import CELLS_FOLDER, read_cell_state, write_json

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TASKS = ["syn_a", "syn_b"]
GROUPS = [
    {"projector": "mlp2x_gelu"},
    {"projector": "tokenpacker", "scale_factor": [2, 4]},
    {"projector": "avgpool", "scale_factor": 3, "patch_num": 9},
]


@pytest.fixture
def fakes(monkeypatch):
    """The fake stages module, importable here and in every subprocess this test starts."""
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    return importlib.import_module("sweep_fakes")


def write_spec(folder: Path, **fields) -> Path:
    spec = {
        "name": "t",
        "recipe": "tiny",
        "world": {"preset": "smoke"},
        "tasks": TASKS,
        "groups": GROUPS,
        **fields,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_a_sweep_writes_one_tidy_record_per_cell_task_and_metric(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    outcome = run_sweep(load_spec(write_spec(tmp_path)), out, stages=fakes.make_stages(log), progress=False)

    table = read_results_table(out)
    assert list(table.columns) == [*RESULT_COLUMNS, "chance"]
    assert not table.duplicated(["cell_id", "task", "metric"]).any()
    cells = ["mlp2x_gelu-seed0", "tokenpacker-s2-seed0", "tokenpacker-s4-seed0", "avgpool-s3-hd9-seed0"]
    assert sorted(set(table["cell_id"])) == sorted(cells)
    assert len(table) == len(cells) * (len(TASKS) + 3)  # exact_match per task + 3 efficiency metrics
    row = table[(table["cell_id"] == "tokenpacker-s4-seed0") & (table["task"] == "syn_b")].iloc[0]
    config = json.loads(row["config_json"])
    assert (row["projector"], row["scale_factor"], row["seed"], row["metric"]) == (
        "tokenpacker",
        4,
        0,
        "exact_match",
    )
    assert row["value"] == fakes.fake_score(
        load_spec(write_spec(tmp_path)).cell("tokenpacker-s4-seed0"), "syn_b"
    )
    assert (row["stderr"], row["n_samples"], row["status"]) == (0.01, 10, "ok")
    assert config["recipe"] == "tiny" and config["world"] == {"preset": "smoke", "seed": 0}
    assert (out / row["samples_path"]).is_file()
    assert row["suite_version"] and row["git_commit"] and "torch" in json.loads(row["package_versions"])
    timings = json.loads(row["timings_json"])
    assert {
        "generation_s",
        "pretraining_s",
        "training_s",
        "evaluation_s",
        "efficiency_s",
        "cell_s",
        "report_s",
    } <= set(timings)
    assert timings["pretraining_s"] == 0.25  # the shared stage-0 LLM, trained once before the cells
    hd = table[(table["cell_id"] == "avgpool-s3-hd9-seed0") & (table["metric"] == "visual_tokens")].iloc[0]
    assert (hd["patch_num"], hd["value"]) == (9, 64)
    ttft = table[table["metric"] == "ttft_ms"]["value"]
    assert ttft.isna().all()  # a NaN from the probe is recorded as missing, never 0
    assert outcome.report_page == out / "report" / "index.html" and outcome.failed == ()
    assert Counter(c.split()[0] for c in fakes.calls(log)) == {
        "world": 1,
        "pretrain": 1,
        "train": 4,
        "evaluate": 4,
        "efficiency": 4,
        "report": 1,
    }


def test_a_rerun_reuses_every_finished_cell_and_the_report(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path))
    first = run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    calls = fakes.calls(log)
    second = run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    assert fakes.calls(log) == calls
    assert second.runs == () and sum(second.this_run.values()) == 0
    assert second.results.equals(first.results)


def test_a_failing_cell_is_recorded_the_sweep_goes_on_and_a_rerun_retries_it(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path))
    outcome = run_sweep(spec, out, stages=fakes.make_stages(log, fail="tokenpacker-s2-*"), progress=False)

    assert outcome.failed == ("tokenpacker-s2-seed0",)
    failed = outcome.results[outcome.results["cell_id"] == "tokenpacker-s2-seed0"]
    assert set(failed["status"]) == {"failed"} and failed["value"].isna().all()
    assert set(zip(failed["task"], failed["metric"], strict=True)) == {
        ("syn_a", "exact_match"),
        ("syn_b", "exact_match"),
        ("efficiency", "visual_tokens"),
        ("efficiency", "prefill_tflops_7b"),
        ("efficiency", "ttft_ms"),
    }
    assert failed["error"].iloc[0] == "RuntimeError: loss is nan at step 3 (tokenpacker-s2-seed0)"
    assert "Traceback" in (out / CELLS_FOLDER / "tokenpacker-s2-seed0" / "error.log").read_text()
    assert set(outcome.results.loc[outcome.results["cell_id"] != "tokenpacker-s2-seed0", "status"]) == {"ok"}

    statuses = {cell.cell_id: status for cell, status in cell_statuses(spec, out)}
    assert statuses["tokenpacker-s2-seed0"].startswith("failed in train: RuntimeError: loss is nan")
    before = len(fakes.calls(log))
    retried = run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    assert retried.failed == () and [r.cell_id for r in retried.runs] == ["tokenpacker-s2-seed0"]
    assert fakes.calls(log)[before:] == [
        "train tokenpacker-s2-seed0",
        "evaluate tokenpacker-s2-seed0",
        "efficiency tokenpacker-s2-seed0",
        "report mlp2x_gelu",
    ]
    assert not retried.results.duplicated(["cell_id", "task", "metric"]).any()


def test_a_changed_spec_reruns_only_the_stages_it_changes(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    run_sweep(load_spec(write_spec(tmp_path)), out, stages=fakes.make_stages(log), progress=False)
    before = len(fakes.calls(log))
    spec = load_spec(write_spec(tmp_path, tasks=[*TASKS, "syn_c"]))
    assert {status for _, status in cell_statuses(spec, out)} == {
        "changed (config differs from the finished run; reruns evaluate; reuses train, efficiency)"
    }
    outcome = run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    assert {c.split()[0] for c in fakes.calls(log)[before:]} == {"evaluate", "report"}
    assert set(outcome.results["task"]) == {"syn_a", "syn_b", "syn_c", "efficiency"}


def test_an_edited_recipe_file_retrains_every_cell(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    recipe = tmp_path / "mine.yaml"
    recipe.write_text((REPO / "training" / "recipes" / "tiny.yaml").read_text(), encoding="utf-8")
    run_sweep(
        load_spec(write_spec(tmp_path, recipe=str(recipe))),
        out,
        stages=fakes.make_stages(log),
        progress=False,
    )
    settings = yaml.safe_load(recipe.read_text())
    settings["stage2"]["max_steps"] += 1
    recipe.write_text(yaml.safe_dump(settings), encoding="utf-8")
    spec = load_spec(write_spec(tmp_path, recipe=str(recipe)))
    assert {status for _, status in cell_statuses(spec, out)} == {
        "changed (config differs from the finished run; reruns train, evaluate, efficiency)"
    }
    before = len(fakes.calls(log))
    run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    assert Counter(c.split()[0] for c in fakes.calls(log)[before:])["train"] == len(spec.cells)


def test_a_comment_edited_in_the_recipe_file_keeps_every_cell(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    recipe = tmp_path / "mine.yaml"
    recipe.write_text((REPO / "training" / "recipes" / "tiny.yaml").read_text(), encoding="utf-8")
    spec = load_spec(write_spec(tmp_path, recipe=str(recipe)))
    run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    recipe.write_text("# a note for the reader\n" + recipe.read_text(), encoding="utf-8")
    assert {status for _, status in cell_statuses(spec, out)} == {"done"}


def test_a_checkpoint_cell_is_evaluated_without_training(tmp_path, fakes):
    checkpoint = tmp_path / "given"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"projector_type": "mlp2x_gelu", "scale_factor": 2}))
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path, recipe=None, world=None, groups=[{"checkpoint": str(checkpoint)}]))
    outcome = run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    assert fakes.calls(log) == [
        "evaluate mlp2x_gelu-seed0-from-given",
        "efficiency mlp2x_gelu-seed0-from-given",
        "report mlp2x_gelu",
    ]
    assert outcome.results["scale_factor"].isna().all()


def test_cells_are_checked_before_any_runs(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path, efficiency={"bad_option": 1}))
    with pytest.raises(SweepSpecError, match="cell mlp2x_gelu-seed0: efficiency options"):
        run_sweep(spec, out, stages=fakes.make_stages(log), progress=False)
    assert fakes.calls(log) == [] and not out.exists()


def test_only_runs_the_selected_cells_and_the_table_keeps_earlier_ones(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path))
    run_sweep(spec, out, stages=fakes.make_stages(log), only=["mlp*"], progress=False)
    outcome = run_sweep(
        spec, out, stages=fakes.make_stages(log), only=["tokenpacker-s4-seed0"], progress=False
    )
    assert [c for c in fakes.calls(log) if c.startswith("train")] == [
        "train mlp2x_gelu-seed0",
        "train tokenpacker-s4-seed0",
    ]
    assert set(outcome.results["cell_id"]) == {"mlp2x_gelu-seed0", "tokenpacker-s4-seed0"}


def test_a_second_sweep_in_the_same_folder_is_refused(tmp_path, fakes):
    out = tmp_path / "out"
    with sweep_lock(out), pytest.raises(BlockingIOError, match="another sweep is running in this folder"):
        run_sweep(
            load_spec(write_spec(tmp_path)), out, stages=fakes.make_stages(tmp_path / "log"), progress=False
        )


def test_an_atomic_write_interrupted_midway_leaves_the_old_file_whole(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"status": "ok"})

    def write_half_then_die(temp: Path) -> None:
        temp.write_text('{"status": "runn')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, write_half_then_die)
    assert json.loads(target.read_text()) == {"status": "ok"}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def start_sweep(spec: Path, out: Path, log: Path, *options: str) -> subprocess.Popen:
    code = "import sweep_fakes; sweep_fakes.main()"
    return subprocess.Popen([sys.executable, "-c", code, str(spec), str(out), str(log), *options], cwd=REPO)


def wait_for(condition, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the sweep subprocess"
        time.sleep(0.05)


def finished_cells(out: Path) -> set[str]:
    states = (
        [read_cell_state(folder) for folder in (out / CELLS_FOLDER).glob("*")]
        if (out / CELLS_FOLDER).is_dir()
        else []
    )
    return {state.cell_id for state in states if state is not None and state.status == "ok"}


def all_json_parses(out: Path) -> None:
    """Every JSON file a sweep reads parses. Two kinds are never read, so a SIGKILL may leave them half
    written: what is in a hidden staging folder (a world or report is staged there and renamed into
    place; the next run stages afresh), and the output of a cell stage its state does not record as
    finished (lmms-eval writes its files in place; the next run redoes the stage)."""
    for path in out.rglob("*.json"):
        parts = path.relative_to(out).parts
        if not any(part.startswith(".") for part in parts[:-1]) and not unfinished_stage_output(out, parts):
            json.loads(path.read_text())


def unfinished_stage_output(out: Path, parts: tuple[str, ...]) -> bool:
    """OUT/cells/CELL/STAGE/... where CELL's state does not list STAGE as done."""
    if len(parts) < 4 or parts[0] != CELLS_FOLDER:
        return False
    state = read_cell_state(out / CELLS_FOLDER / parts[1])
    return state is None or parts[2] not in state.stages


def test_a_sweep_killed_mid_cell_resumes_without_losing_or_repeating_a_cell(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = write_spec(tmp_path)
    process = start_sweep(spec, out, log, "", "0", "tokenpacker-s4-seed0")  # cell 3 holds in training
    wait_for(lambda: "train tokenpacker-s4-seed0" in fakes.calls(log))
    process.send_signal(signal.SIGKILL)
    process.wait()

    assert finished_cells(out) == {"mlp2x_gelu-seed0", "tokenpacker-s2-seed0"}
    assert read_cell_state(out / CELLS_FOLDER / "tokenpacker-s4-seed0").status == "running"
    all_json_parses(out)
    before = Counter(fakes.calls(log))
    outcome = run_sweep(load_spec(spec), out, stages=fakes.make_stages(log), progress=False)
    rerun = Counter(fakes.calls(log)) - before

    assert [r.cell_id for r in outcome.runs] == ["tokenpacker-s4-seed0", "avgpool-s3-hd9-seed0"]
    assert rerun["train mlp2x_gelu-seed0"] == rerun["train tokenpacker-s2-seed0"] == 0
    assert rerun["world smoke"] == 0  # the world survived the kill and is reused
    assert outcome.failed == () and not outcome.results.duplicated(["cell_id", "task", "metric"]).any()
    assert len(set(outcome.results["cell_id"])) == 4


@pytest.mark.slow
def test_sweeps_killed_at_random_moments_never_lose_a_finished_cell(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = write_spec(tmp_path)
    rng = random.Random(0)
    for _ in range(3):
        finished = finished_cells(out)
        before = Counter(fakes.calls(log))
        process = start_sweep(spec, out, log, "", "0.05")
        wait_for(
            lambda before=before, process=process: (
                Counter(fakes.calls(log)) != before or process.poll() is not None
            )
        )
        time.sleep(rng.uniform(0.0, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        all_json_parses(out)
        redone = {
            call.split()[1] for call in (Counter(fakes.calls(log)) - before) if call.startswith("train")
        }
        assert not redone & finished
    outcome = run_sweep(load_spec(spec), out, stages=fakes.make_stages(log), progress=False)
    trained = Counter(c for c in fakes.calls(log) if c.startswith("train"))
    assert outcome.failed == () and len(set(outcome.results["cell_id"])) == 4
    assert not outcome.results.duplicated(["cell_id", "task", "metric"]).any()
    assert all(count >= 1 for count in trained.values()) and len(trained) == 4


def test_the_slurm_launcher_runs_each_cell_as_a_submitit_job(tmp_path, fakes):
    """submitit's local executor: the same job files Slurm would get, run as subprocesses here."""
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path, slurm={"gpus_per_node": 0, "time_min": 5, "partition": "gpu"}))
    launcher = SubmititLauncher(spec.slurm, cluster="local", poll_s=0.2)
    outcome = run_sweep(
        spec, out, stages=fakes.make_stages(log), only=["tokenpacker-*"], launcher=launcher, progress=False
    )

    assert sorted(r.cell_id for r in outcome.runs) == ["tokenpacker-s2-seed0", "tokenpacker-s4-seed0"]
    assert all(r.status == "ok" for r in outcome.runs) and outcome.failed == ()
    assert set(outcome.results["cell_id"]) == {"tokenpacker-s2-seed0", "tokenpacker-s4-seed0"}
    assert any((out / "submitit").rglob("*_submitted.pkl"))
    before = len(fakes.calls(log))
    local = run_sweep(
        spec, out, stages=fakes.make_stages(log), progress=False
    )  # same resume rules across launchers
    assert [r.cell_id for r in local.runs] == ["mlp2x_gelu-seed0", "avgpool-s3-hd9-seed0"]
    assert not any("tokenpacker" in call for call in fakes.calls(log)[before:])


def test_local_jobs_run_cells_side_by_side_in_worker_processes(tmp_path, fakes):
    """Two workers: each cell runs once, in a process other than this one, and results equal a serial run."""
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path))
    outcome = run_sweep(
        spec, out, stages=fakes.make_stages(log, fail="avgpool-*"), launcher=LocalLauncher(2), progress=False
    )

    assert [r.cell_id for r in outcome.runs] == [c.cell_id for c in spec.cells]  # in spec order
    assert outcome.failed == ("avgpool-s3-hd9-seed0",)
    trained = Counter(c.split()[1] for c in fakes.calls(log) if c.startswith("train"))
    assert sorted(trained) == sorted(c.cell_id for c in spec.cells) and set(trained.values()) == {1}
    serial = run_sweep(
        spec, tmp_path / "serial", stages=fakes.make_stages(log, fail="avgpool-*"), progress=False
    )
    columns = ["cell_id", "task", "metric", "value"]
    assert (
        outcome.results[columns]
        .sort_values(columns)
        .reset_index(drop=True)
        .equals(serial.results[columns].sort_values(columns).reset_index(drop=True))
    )


def test_jobs_default_to_one_per_core_and_never_exceed_the_cells(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert (resolve_jobs(None), resolve_jobs(1), resolve_jobs(4)) == (2, 1, 4)
    workers = [plan_workers(jobs, cells)[0] for jobs, cells in ((2, 8), (2, 1), (4, 3), (1, 8))]
    assert workers == [2, 1, 3, 1]
    assert plan_workers(2, 8)[1] == 1 and plan_workers(2, 1)[1] == 2  # the cores shared out
    with pytest.raises(ValueError, match="--jobs must be at least 1"):
        resolve_jobs(0)


@pytest.mark.slow  # submitit waits 15 s for the result file of a job that died
def test_a_job_that_dies_marks_its_cell_failed(tmp_path, fakes):
    log, out = tmp_path / "calls.log", tmp_path / "out"
    spec = load_spec(write_spec(tmp_path, slurm={"gpus_per_node": 0, "time_min": 5}))
    stages = fakes.make_stages(log)
    dying = dataclasses.replace(stages, evaluate=fakes.exit_process)  # the job's process dies mid-cell
    launcher = SubmititLauncher(spec.slurm, cluster="local", poll_s=0.2)
    outcome = run_sweep(spec, out, stages=dying, only=["mlp*"], launcher=launcher, progress=False)
    assert outcome.failed == ("mlp2x_gelu-seed0",)
    state = read_cell_state(out / CELLS_FOLDER / "mlp2x_gelu-seed0")
    assert (state.status, state.failed_stage) == ("failed", "evaluate") and state.error.startswith("job ")
