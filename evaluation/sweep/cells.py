"""Running one cell: train (unless it evaluates a given checkpoint), evaluate, measure, then save its records.

Each stage's completion is saved atomically before the next begins, so an interrupted cell resumes at
the first unfinished stage, and a stage is redone only when its fingerprint changed. The records are
written before the state says "ok": a cell counts as finished only once its records are on disk.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from evaluation.sweep.results import (
    cell_records,
    efficiency_rows,
    find_lmms_results,
    lmms_metric_rows,
    provenance,
    stage_timings,
    write_cell_records,
)
from evaluation.sweep.spec import CellConfig
from evaluation.sweep.stages import Stages, WorldPaths
from evaluation.sweep.state import (
    CellState,
    StageState,
    cell_dir,
    is_done,
    now_iso,
    read_cell_state,
    read_json,
    reusable_stages,
    write_cell_state,
    write_json,
)

EFFICIENCY_FILE = "efficiency.json"
STAGE_MARK = ".sweep_fingerprint"  # in each stage folder: the settings it was started with
RESUMABLE_STAGES = frozenset({"train"})
ERROR_LOG = "error.log"


@dataclass(frozen=True)
class CellRun:
    """What one call of `run_cell` did: the outcome and the seconds each stage took in this call."""

    cell_id: str
    status: str  # "ok" | "failed"
    error: str | None
    seconds: Mapping[str, float]  # stages run in this call only; reused stages are absent


def stage_fingerprints(cell: CellConfig) -> dict[str, str]:
    """The stages this cell runs, in order, each with the key that decides whether it is reused."""
    plan = {"train": cell.train_fingerprint()} if cell.trains else {}
    plan["evaluate"] = cell.evaluation_fingerprint()
    if cell.efficiency is not None:
        plan["efficiency"] = cell.efficiency_fingerprint()
    return plan


def run_cell(
    cell: CellConfig,
    out_dir: Path,
    world: WorldPaths | None,
    stages: Stages,
    gpus: int = 0,
    progress: bool = True,
) -> CellRun:
    """Run what is left of `cell` under OUT/cells/CELL; a stage's exception marks the cell failed (not raised)."""
    folder = cell_dir(out_dir, cell.cell_id)
    previous = read_cell_state(folder)
    if is_done(previous, cell.fingerprint()):
        return CellRun(cell.cell_id, "ok", None, {})
    plan = stage_fingerprints(cell)
    reusable = reusable_stages(previous, plan)
    state = CellState(
        cell_id=cell.cell_id,
        fingerprint=cell.fingerprint(),
        status="running",
        stages=reusable,
        attempts=(previous.attempts if previous else 0) + 1,
        started_at=now_iso(),
        provenance=provenance(),
    )
    write_cell_state(folder, state)
    (folder / ERROR_LOG).unlink(missing_ok=True)
    seconds: dict[str, float] = {}
    bar = tqdm(total=len(plan), desc=cell.cell_id, unit="stage", leave=False, disable=not progress)
    try:
        for name, stage_fingerprint in plan.items():
            bar.set_postfix_str(name)
            if name not in state.stages:
                start = time.perf_counter()
                _prepare_stage_folder(folder / name, name, stage_fingerprint)
                output = _run_stage(name, cell, state, folder, world, stages, gpus)
                seconds[name] = time.perf_counter() - start
                stage = StageState(stage_fingerprint, seconds[name], _relative(output, folder), now_iso())
                state = dataclasses.replace(state, stages={**state.stages, name: stage})
                write_cell_state(folder, state)
            bar.update()
        state = _finish(cell, state, folder, out_dir)
    except Exception as exc:  # a failing cell is recorded and the sweep goes on
        failed_stage = next((name for name in plan if name not in state.stages), "records")
        state = _fail(state, folder, failed_stage, exc)
    finally:
        bar.close()
    return CellRun(cell.cell_id, state.status, state.error, seconds)


def _prepare_stage_folder(stage_folder: Path, name: str, stage_fingerprint: str) -> None:
    """A fresh folder for the stage, except an interrupted training of the same settings, which resumes
    from its own Trainer checkpoints."""
    mark = stage_folder / STAGE_MARK
    if name in RESUMABLE_STAGES and mark.is_file() and mark.read_text(encoding="utf-8") == stage_fingerprint:
        return
    shutil.rmtree(stage_folder, ignore_errors=True)
    stage_folder.mkdir(parents=True)
    mark.write_text(stage_fingerprint, encoding="utf-8")


def _run_stage(
    name: str,
    cell: CellConfig,
    state: CellState,
    folder: Path,
    world: WorldPaths | None,
    stages: Stages,
    gpus: int,
) -> Path:
    stage_folder = folder / name
    if name == "train":
        return stages.train(cell, world, stage_folder, gpus)
    checkpoint = _checkpoint(cell, state, folder)
    if name == "evaluate":
        return stages.evaluate(checkpoint, cell, world, stage_folder)
    measured = dict(stages.measure(checkpoint, cell))
    write_json(stage_folder / EFFICIENCY_FILE, measured)
    return stage_folder / EFFICIENCY_FILE


def _checkpoint(cell: CellConfig, state: CellState, folder: Path) -> Path:
    """The model a stage after training reads: the given checkpoint, or what the train stage returned."""
    return Path(str(cell.checkpoint)) if not cell.trains else folder / state.stages["train"].output


def _relative(path: Path, folder: Path) -> str:
    """A stage output as stored: relative to the cell folder when inside it, so the sweep folder can move."""
    path, folder = Path(path).resolve(), folder.resolve()
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def _finish(cell: CellConfig, state: CellState, folder: Path, out_dir: Path) -> CellState:
    """Build and save the records, then mark the cell ok (in that order)."""
    rows = lmms_metric_rows(find_lmms_results(folder / state.stages["evaluate"].output), Path(out_dir))
    if "efficiency" in state.stages:
        rows += efficiency_rows(read_json(folder / state.stages["efficiency"].output))
    done = dataclasses.replace(state, status="ok", finished_at=now_iso())
    timings = stage_timings(done) | {"cell_s": round(sum(s.seconds for s in done.stages.values()), 3)}
    write_cell_records(folder, cell_records(cell, rows, done, timings))
    write_cell_state(folder, done)
    return done


def _fail(state: CellState, folder: Path, stage: str, exc: Exception) -> CellState:
    """Save the cell as failed with a one-line error; the full traceback goes to error.log beside it."""
    (folder / ERROR_LOG).write_text("".join(traceback.format_exception(exc)), encoding="utf-8")
    message = " ".join(f"{type(exc).__name__}: {exc}".split())
    failed = dataclasses.replace(
        state, status="failed", error=message, failed_stage=stage, finished_at=now_iso()
    )
    write_cell_state(folder, failed)
    return failed
