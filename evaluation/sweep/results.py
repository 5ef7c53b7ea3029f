"""Cell results as `ResultRecord`s: lmms-eval's results files and the efficiency probes in, one table out.

A finished cell's records are built once, when it finishes, and saved in its folder; the sweep's
table is collected afresh from those files, so a cell contributes exactly one set of records however
often the sweep was interrupted. A failed cell contributes one failed record per (task, metric) the
other cells report, value missing, with its error.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import math
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.records import EFFICIENCY_METRICS, EFFICIENCY_TASK, ResultRecord, records_to_frame
from evaluation.sweep.spec import CellConfig
from evaluation.sweep.state import (
    RECORDS_FILE,
    CellState,
    cell_dir,
    is_done,
    read_cell_state,
    read_json,
    write_json,
)
from evaluation.synthetic.baselines import chance_levels

SUITE_DISTRIBUTION = "tokenpacker-suite"
RECORDED_PACKAGES = (
    "torch",
    "transformers",
    "lmms-eval",
    "datasets",
    "accelerate",
    "deepspeed",
    "peft",
    "numpy",
    "pandas",
    "submitit",
)
LMMS_RESULTS_SUFFIX = "_results.json"
STAGE_TIMING_KEYS = {"train": "training_s", "evaluate": "evaluation_s", "efficiency": "efficiency_s"}
FAILED_METRIC = "error"  # metric name of a failed cell's record when no other cell names the task's metrics


def provenance() -> dict[str, Any]:
    """Where the numbers came from: suite version, git commit of the suite's checkout, package versions."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name.replace("-", "_")] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        suite_version = importlib.metadata.version(SUITE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        suite_version = "unknown"
    return {"suite_version": suite_version, "git_commit": git_commit(), "package_versions": versions}


def git_commit() -> str:
    """The commit of the checkout this code runs from, "-dirty" when it has local changes; "unknown" outside git."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=40"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def find_lmms_results(folder: Path) -> Path:
    """The one lmms-eval `<date>_results.json` under an evaluation output folder."""
    files = sorted(Path(folder).rglob(f"*{LMMS_RESULTS_SUFFIX}"))
    if len(files) != 1:
        found = ", ".join(str(f) for f in files) or "none"
        raise FileNotFoundError(f"{folder}: expected one lmms-eval *{LMMS_RESULTS_SUFFIX}, found {found}")
    return files[0]


def lmms_metric_rows(results_file: Path, out_dir: Path) -> list[dict[str, Any]]:
    """task, metric, value, stderr, n_samples, samples_path for each numeric metric of an lmms-eval results file.

    Keys are lmms-eval's "metric,filter"; the filter is dropped when it is "none". `samples_path` is
    relative to `out_dir` (the folder of the sweep's table).
    """
    payload = read_json(results_file)
    if not isinstance(payload, dict) or not isinstance(payload.get("results"), dict):
        raise ValueError(f"{results_file}: not an lmms-eval results file (no 'results' object)")
    date_id = results_file.name[: -len(LMMS_RESULTS_SUFFIX)]
    counts = payload.get("n-samples") or {}
    rows = []
    for task, entry in payload["results"].items():
        samples = results_file.parent / f"{date_id}_samples_{task}.jsonl"
        n_samples = (counts.get(task) or {}).get("effective")
        for key, value in entry.items():
            metric, _, filter_key = key.partition(",")
            if not filter_key or "_stderr" in metric or not _is_number(value):
                continue
            name = metric if filter_key == "none" else f"{metric},{filter_key}"
            stderr = entry.get(f"{metric}_stderr,{filter_key}")
            rows.append(
                {
                    "task": task,
                    "metric": name,
                    "value": float(value),
                    "stderr": float(stderr) if _is_number(stderr) else None,
                    "n_samples": n_samples if isinstance(n_samples, int) else None,
                    "samples_path": _relative_to(samples, out_dir) if samples.is_file() else None,
                }
            )
    if not rows:
        raise ValueError(
            f"{results_file}: lmms-eval reported no numeric metric for tasks {list(payload['results'])}"
        )
    return rows


def _relative_to(path: Path, folder: Path) -> str:
    return path.resolve().relative_to(Path(folder).resolve()).as_posix()


def efficiency_rows(measured: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per efficiency metric the probe returned (non-finite values are recorded as missing)."""
    unknown = sorted(set(measured) - set(EFFICIENCY_METRICS))
    if unknown:
        raise ValueError(
            f"efficiency probe returned unknown metrics {unknown}; allowed: {', '.join(EFFICIENCY_METRICS)}"
        )
    return [
        {
            "task": EFFICIENCY_TASK,
            "metric": metric,
            "value": float(measured[metric]) if _is_number(measured[metric]) else None,
            "stderr": None,
            "n_samples": None,
            "samples_path": None,
        }
        for metric in EFFICIENCY_METRICS
        if metric in measured
    ]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def cell_records(
    cell: CellConfig, rows: Iterable[Mapping[str, Any]], state: CellState, timings: Mapping[str, float]
) -> list[ResultRecord]:
    """The records of one cell: the shared cell fields plus each metric row."""
    meta = state.provenance
    return [
        ResultRecord(
            cell_id=cell.cell_id,
            status=state.status if state.status == "failed" else "ok",
            error=state.error,
            projector=cell.projector,
            scale_factor=cell.scale_factor,
            patch_num=cell.patch_num,
            seed=cell.seed,
            config_json=json.dumps(cell.to_dict(), sort_keys=True),
            suite_version=meta["suite_version"],
            git_commit=meta["git_commit"],
            package_versions=json.dumps(meta["package_versions"], sort_keys=True),
            timings_json=json.dumps(dict(timings), sort_keys=True),
            created_at=state.finished_at or state.started_at or "",
            **row,
        )
        for row in rows
    ]


def write_cell_records(folder: Path, records: Iterable[ResultRecord]) -> None:
    write_json(folder / RECORDS_FILE, [dataclasses.asdict(record) for record in records])


def read_cell_records(folder: Path) -> list[ResultRecord]:
    return [ResultRecord(**raw) for raw in read_json(folder / RECORDS_FILE)]


def stage_timings(state: CellState) -> dict[str, float]:
    """Seconds per stage as recorded when each stage ran (so a reused stage keeps its original time)."""
    return {STAGE_TIMING_KEYS[stage]: round(record.seconds, 3) for stage, record in state.stages.items()}


def collect_results(
    out_dir: Path, cells: Iterable[CellConfig], sweep_timings: Mapping[str, float] | None = None
) -> pd.DataFrame:
    """The sweep's table: every finished cell's saved records, then failed records for failed cells.

    Cells not run yet, interrupted, or whose config changed since they finished contribute nothing.
    `sweep_timings` (generation_s, pretraining_s, report_s) are added to every record's timings.
    """
    finished: list[ResultRecord] = []
    failed: list[tuple[CellConfig, CellState]] = []
    for cell in cells:
        folder = cell_dir(out_dir, cell.cell_id)
        state = read_cell_state(folder)
        if is_done(state, cell.fingerprint()):
            finished.extend(read_cell_records(folder))
        elif state is not None and state.status == "failed" and state.fingerprint == cell.fingerprint():
            failed.append((cell, state))
    metrics = _metrics_by_task(finished)
    for cell, state in failed:
        rows = [
            {
                "task": task,
                "metric": metric,
                "value": None,
                "stderr": None,
                "n_samples": None,
                "samples_path": None,
            }
            for task in _failed_tasks(cell, metrics)
            for metric in metrics.get(task, [FAILED_METRIC])
        ]
        finished.extend(cell_records(cell, rows, state, stage_timings(state)))
    if sweep_timings:
        finished = [_with_timings(record, sweep_timings) for record in finished]
    return with_chance_levels(records_to_frame(finished))


def with_chance_levels(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the optional `chance` column (a uniform guess's score, synthetic tasks only) that reports
    print beside each score; other tasks get a missing value, never 0."""
    levels = chance_levels()
    chance = [
        levels.get(task, {}).get(metric) for task, metric in zip(frame["task"], frame["metric"], strict=True)
    ]
    return frame.assign(chance=pd.Series(chance, index=frame.index, dtype="float64"))


def _metrics_by_task(records: Iterable[ResultRecord]) -> dict[str, list[str]]:
    metrics: dict[str, list[str]] = {}
    for record in records:
        names = metrics.setdefault(record.task, [])
        if record.metric not in names:
            names.append(record.metric)
    return metrics


def _failed_tasks(cell: CellConfig, metrics: Mapping[str, list[str]]) -> list[str]:
    """The tasks a failed cell would have reported: those finished cells report, else the spec's tasks."""
    tasks = [task for task in metrics if task != EFFICIENCY_TASK] or list(cell.tasks)
    return tasks + ([EFFICIENCY_TASK] if cell.efficiency is not None and EFFICIENCY_TASK in metrics else [])


def _with_timings(record: ResultRecord, extra: Mapping[str, float]) -> ResultRecord:
    timings = {**json.loads(record.timings_json), **extra}
    return dataclasses.replace(record, timings_json=json.dumps(timings, sort_keys=True))
