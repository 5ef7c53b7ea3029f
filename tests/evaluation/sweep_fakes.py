"""Fake sweep stages for the sweep tests: instant, deterministic, and logging every call to a file.

Importable by name (the tests put this folder on sys.path and PYTHONPATH), so submitit's job
subprocesses and the killed sweep subprocess can load the same fakes. Run as a sweep:
`python -c "import sweep_fakes; sweep_fakes.main()" SPEC OUT LOG [FAIL_PATTERN] [SLEEP_S] [HOLD_CELL]`.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import sys
import time
from pathlib import Path

from evaluation.records import atomic_write, read_results_table
from evaluation.sweep.runner import run_sweep
from evaluation.sweep.spec import CellConfig, ReportOptions, WorldSpec, load_spec
from evaluation.sweep.stages import Stages, WorldPaths

DATE_ID = "20250101_000000"
HOLD_FILE = "release"  # a held cell's training waits until this file appears in the sweep folder


def log_call(log: Path, stage: str, name: str) -> None:
    with open(log, "a", encoding="utf-8") as stream:
        stream.write(f"{stage} {name}\n")


def calls(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.is_file() else []


def fake_score(cell: CellConfig, task: str) -> float:
    """Accuracy falls with compression, differently per task (so tables have something to show)."""
    tokens = 576 // (cell.scale_factor or 1) ** 2
    return round(0.5 + 0.4 * tokens / 576 - 0.01 * (len(task) % 3), 4)


def build_world(log: Path, root: Path, spec: WorldSpec) -> WorldPaths:
    """Like the real one: a subfolder per (preset, seed), reused when already there, its files whole
    whenever the process is killed (the real world is staged and renamed into place)."""
    log_call(log, "world", spec.preset)
    world = root / f"{spec.preset}-seed{spec.seed}"
    for folder in ("images", "eval"):
        (world / folder).mkdir(parents=True, exist_ok=True)
    for name in ("stage1.json", "stage2.json", "language.json", "language_anneal.json"):
        atomic_write(world / name, lambda temp: temp.write_text("[]", encoding="utf-8"))
    return WorldPaths(
        root,
        world / "stage1.json",
        world / "stage2.json",
        world / "language.json",
        world / "language_anneal.json",
        world / "images",
        world / "eval",
    )


def pretrain_language(log: Path, cell: CellConfig, world: WorldPaths) -> tuple[str | None, float]:
    """Like the real one: one shared LLM per world, trained once."""
    done = world.root / "fake-language-model"
    if done.exists():
        return "lm", 0.0
    log_call(log, "pretrain", cell.cell_id)
    done.write_text("trained", encoding="utf-8")
    return "lm", 0.25


def check_cell(cell: CellConfig) -> None:
    if "bad_option" in (cell.efficiency or {}):
        raise ValueError("efficiency options ['bad_option'] are not taken by measure")


def train(
    log: Path,
    fail: str,
    sleep_s: float,
    hold: str,
    cell: CellConfig,
    world: WorldPaths | None,
    folder: Path,
    gpus: int,
) -> Path:
    log_call(log, "train", cell.cell_id)
    if fail and fnmatch.fnmatchcase(cell.cell_id, fail):
        raise RuntimeError(f"loss is nan at step 3 ({cell.cell_id})")
    while hold == cell.cell_id and not (folder.parents[2] / HOLD_FILE).exists():
        time.sleep(0.05)
    time.sleep(sleep_s)
    checkpoint = folder / "final"
    checkpoint.mkdir(exist_ok=True)  # a killed training resumes in its own folder, as the real one does
    config = {
        "projector_type": cell.projector,
        "scale_factor": cell.scale_factor,
        "patch_num": cell.patch_num,
    }
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return checkpoint


def evaluate(
    log: Path, sleep_s: float, checkpoint: Path, cell: CellConfig, world: WorldPaths | None, folder: Path
) -> Path:
    """lmms-eval 0.7's layout: OUT/<model>/<date>_results.json and <date>_samples_<task>.jsonl."""
    log_call(log, "evaluate", cell.cell_id)
    assert (checkpoint / "config.json").is_file()
    time.sleep(sleep_s)
    model_folder = folder / "tokenpacker"
    model_folder.mkdir()
    results, counts = {}, {}
    for task in cell.tasks:
        score = fake_score(cell, task)
        results[task] = {
            "alias": task,
            "exact_match,none": score,
            "exact_match_stderr,none": 0.01,
            "submission,none": "n/a",
        }
        counts[task] = {"original": 10, "effective": 10}
        samples = [{"doc_id": i, "exact_match": float(i < 10 * score)} for i in range(10)]
        lines = "".join(json.dumps(sample) + "\n" for sample in samples)
        (model_folder / f"{DATE_ID}_samples_{task}.jsonl").write_text(lines, encoding="utf-8")
    payload = {
        "results": results,
        "n-samples": counts,
        "configs": {},
        "versions": {},
        "config": {"model": "tokenpacker", "model_args": f"pretrained={checkpoint}"},
        "lmms_eval_version": "0.7.3",
    }
    (model_folder / f"{DATE_ID}_results.json").write_text(json.dumps(payload), encoding="utf-8")
    return folder


def measure(log: Path, checkpoint: Path, cell: CellConfig) -> dict[str, float]:
    log_call(log, "efficiency", cell.cell_id)
    tokens = 576 // (cell.scale_factor or 1) ** 2
    return {"visual_tokens": tokens, "prefill_tflops_7b": 1.0 + tokens / 100, "ttft_ms": float("nan")}


def report(log: Path, results_folder: Path, report_folder: Path, options: ReportOptions) -> Path:
    log_call(log, "report", options.baseline)
    table = read_results_table(results_folder)
    report_folder.mkdir(parents=True, exist_ok=True)
    page = report_folder / "index.html"
    page.write_text(f"<p>{len(table)} records</p>", encoding="utf-8")
    return page


def exit_process(*args: object) -> None:
    """A stage whose process dies on the spot, as on an out-of-memory kill."""
    os._exit(3)


def make_stages(log: Path, fail: str = "", sleep_s: float = 0.0, hold: str = "") -> Stages:
    """Fake stages; cells matching `fail` fail in training, the cell named `hold` waits for OUT/release."""
    return Stages(
        build_world=functools.partial(build_world, log),
        check_cell=check_cell,
        train=functools.partial(train, log, fail, sleep_s, hold),
        evaluate=functools.partial(evaluate, log, sleep_s),
        measure=functools.partial(measure, log),
        report=functools.partial(report, log),
        pretrain_language=functools.partial(pretrain_language, log),
    )


def main() -> None:
    spec, out, log, *rest = sys.argv[1:]
    fail, sleep_s, hold = (rest + ["", "0", ""][len(rest) :])[:3]
    stages = make_stages(Path(log), fail, float(sleep_s), hold)
    run_sweep(load_spec(spec), Path(out), stages=stages, progress=False)
