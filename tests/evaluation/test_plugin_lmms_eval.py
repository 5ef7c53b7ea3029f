"""The stock `lmms-eval` command runs a tiny suite checkpoint end to end, in one process and in two."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tokenpacker.tiny import save_tiny_checkpoint, tiny_config

BIN = Path(sys.executable).parent
FIXTURE_TASKS = Path(__file__).parent / "fixtures" / "plugin_tasks"
LMMS_EVAL_ARGS = [
    "--tasks",
    "plugin_colours,plugin_broken",
    "--include_path",
    str(FIXTURE_TASKS),
    "--limit",
    "5",
]


def run_lmms_eval(checkpoint: Path, output: Path, launcher: list[str], extra_env: dict[str, str]) -> str:
    command = [
        *launcher,
        "--model",
        "tokenpacker",
        "--model_args",
        f"pretrained={checkpoint}",
        *LMMS_EVAL_ARGS,
        "--batch_size",
        "2",
        "--output_path",
        str(output),
        "--log_samples",
    ]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **extra_env,
    }
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout + completed.stderr


def read_samples(folder: Path, task: str) -> dict[int, dict]:
    (path,) = folder.glob(f"*/*_samples_{task}.jsonl")
    return {sample["doc_id"]: sample for sample in map(json.loads, path.read_text().splitlines())}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), tiny_config("tokenpacker", 2), seed=0)


@pytest.fixture(scope="module")
def single_process_run(checkpoint, tmp_path_factory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("one_process")
    log = run_lmms_eval(checkpoint, output, [str(BIN / "lmms-eval")], {})
    return output, log


@pytest.mark.slow
def test_stock_lmms_eval_writes_scored_results(single_process_run):
    output, log = single_process_run
    (results_file,) = output.glob("*/*_results.json")
    results = json.loads(results_file.read_text())["results"]
    assert 0.0 <= results["plugin_colours"]["exact_match,none"] <= 1.0
    assert sorted(read_samples(output, "plugin_colours")) == [0, 1, 2, 3, 4]
    broken = read_samples(output, "plugin_broken")
    assert sorted(broken) == [0, 1, 2]  # the corrupt image's sample is kept ...
    assert broken[1]["filtered_resps"] == "" and broken[1]["exact_match"] == 0.0  # ... and scored wrong
    assert "task 'plugin_broken' doc 1: unreadable image" in log


@pytest.mark.slow
def test_two_processes_under_accelerate_answer_like_one(checkpoint, single_process_run, tmp_path):
    """lmms-eval gives each process every other document; the merged answers equal a one-process run."""
    launcher = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
    ]
    launcher += [
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "29517",
        "-m",
        "lmms_eval",
    ]
    log = run_lmms_eval(checkpoint, tmp_path, launcher, {"ACCELERATE_USE_CPU": "true"})
    assert "process 1/2" in log
    one_process = read_samples(single_process_run[0], "plugin_colours")
    two_processes = read_samples(tmp_path, "plugin_colours")
    assert {i: s["filtered_resps"] for i, s in two_processes.items()} == {
        i: s["filtered_resps"] for i, s in one_process.items()
    }
