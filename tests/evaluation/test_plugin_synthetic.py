"""A tiny checkpoint runs every synthetic task (evaluation/tasks/syn_*) end to end on a smoke world."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.evaluate import evaluate
from evaluation.synthetic.world import build_world
from evaluation.tasks import DATA_ROOT_ENV, SYNTHETIC_GROUP, SYNTHETIC_TASKS, TASKS_DIR
from tokenpacker.tiny import save_tiny_checkpoint, tiny_config


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), tiny_config("tokenpacker", 3), seed=0)


@pytest.fixture(scope="module")
def eval_root(tmp_path_factory) -> Path:
    return build_world(tmp_path_factory.mktemp("worlds"), "smoke", seed=0).eval_root


@pytest.mark.slow
def test_stock_lmms_eval_runs_each_synthetic_task(checkpoint, eval_root, tmp_path):
    command = [str(Path(sys.executable).parent / "lmms-eval"), "--model", "tokenpacker"]
    command += ["--model_args", f"pretrained={checkpoint}", "--tasks", ",".join(SYNTHETIC_TASKS)]
    command += ["--include_path", str(TASKS_DIR), "--limit", "2", "--batch_size", "2"]
    command += ["--output_path", str(tmp_path), "--log_samples"]
    env = {**os.environ, DATA_ROOT_ENV: str(eval_root), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=400)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    (results_file,) = tmp_path.glob("*/*_results.json")
    assert set(json.loads(results_file.read_text())["results"]) >= set(SYNTHETIC_TASKS)
    for task in SYNTHETIC_TASKS:
        (samples,) = tmp_path.glob(f"*/*_samples_{task}.jsonl")
        assert len(samples.read_text().splitlines()) == 2, task


@pytest.mark.slow
def test_evaluate_runs_the_synthetic_group_from_a_data_root(checkpoint, eval_root, tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    # limit 2, not 1: lmms-eval's MME scoring needs both questions of an image's pair
    folder = evaluate(checkpoint, [SYNTHETIC_GROUP], tmp_path, limit=2, batch_size=4, data_root=eval_root)
    (results_file,) = folder.glob("*_results.json")
    assert set(json.loads(results_file.read_text())["results"]) >= set(SYNTHETIC_TASKS)
    assert DATA_ROOT_ENV not in os.environ
