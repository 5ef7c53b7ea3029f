"""Per-cell state on disk: what finished, with which fingerprint, how long it took, and why it failed.

Layout of a sweep folder:

    OUT/spec.yaml                 the spec as run
    OUT/world/                    the synthetic world, built once (world/state.json)
    OUT/cells/CELL/state.json     the cell's CellState
    OUT/cells/CELL/train/ ...     one folder per stage (train, evaluate, efficiency), emptied before the
                                  stage starts again (an interrupted training of the same settings resumes)
    OUT/cells/CELL/records.json   the cell's ResultRecords, written before the state says "ok"
    OUT/results.parquet|csv       the table collected from every finished cell

Every JSON file is written to a temporary file and moved into place with os.replace, so a run killed
at any moment (SIGKILL included) leaves each file either old or new, never half-written.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.records import atomic_write

STATE_FILE = "state.json"
RECORDS_FILE = "records.json"
CELLS_FOLDER = "cells"
CELL_STATUSES = ("running", "ok", "failed")
STAGES = ("train", "evaluate", "efficiency")


@dataclass(frozen=True)
class StageState:
    """A finished stage: reused while `fingerprint` matches the cell's key for that stage."""

    fingerprint: str
    seconds: float
    output: str  # what the stage made: a path relative to the cell folder (absolute when outside it)
    finished_at: str


@dataclass(frozen=True)
class CellState:
    cell_id: str
    fingerprint: str
    status: str  # "running" | "ok" | "failed"
    stages: Mapping[str, StageState] = field(default_factory=dict)
    error: str | None = None
    failed_stage: str | None = None
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    provenance: Mapping[str, Any] = field(default_factory=dict)  # suite version, git commit, packages


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_text(path: Path, text: str) -> None:
    """Atomic write (temp file + fsync + os.replace): readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda temp: temp.write_text(text, encoding="utf-8"))


def write_json(path: Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2, default=str))


def read_json(path: Path) -> Any:
    """The JSON at `path`; a file that is not JSON was not written by the sweep, so say how to recover."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc}); delete it to redo that part of the sweep"
        ) from None


def cell_dir(out_dir: Path, cell_id: str) -> Path:
    return Path(out_dir) / CELLS_FOLDER / cell_id


def read_cell_state(folder: Path) -> CellState | None:
    """The saved state of a cell folder, or None when the cell never started."""
    path = folder / STATE_FILE
    if not path.is_file():
        return None
    raw = read_json(path)
    try:
        stages = {name: StageState(**stage) for name, stage in raw.pop("stages").items()}
        state = CellState(stages=stages, **raw)
    except (TypeError, KeyError, AttributeError) as exc:
        raise ValueError(f"{path}: not a sweep cell state ({exc}); delete it to redo the cell") from None
    if state.status not in CELL_STATUSES:
        raise ValueError(
            f"{path}: status {state.status!r} is not one of {CELL_STATUSES}; delete it to redo the cell"
        )
    return state


def write_cell_state(folder: Path, state: CellState) -> None:
    write_json(folder / STATE_FILE, dataclasses.asdict(state))


def is_done(state: CellState | None, cell_fingerprint: str) -> bool:
    """A cell is done when it finished and its config has not changed since."""
    return state is not None and state.status == "ok" and state.fingerprint == cell_fingerprint


def reusable_stages(state: CellState | None, plan: Mapping[str, str]) -> dict[str, StageState]:
    """The finished stages of `state` whose key is still the one in `plan`: a rerun keeps them."""
    previous = state.stages if state else {}
    return {name: stage for name, stage in previous.items() if plan.get(name) == stage.fingerprint}


def describe_status(state: CellState | None, cell_fingerprint: str, plan: Mapping[str, str]) -> str:
    """One word (and the error) for `--dry-run`: done, failed, partial, changed, interrupted or pending.
    `plan` is each stage's key now, which says which stages a changed cell redoes."""
    if state is None:
        return "pending"
    if state.fingerprint != cell_fingerprint:
        kept = reusable_stages(state, plan)
        redone = [name for name in plan if name not in kept]
        reused = f"; reuses {', '.join(kept)}" if kept else ""
        return f"changed (config differs from the finished run; reruns {', '.join(redone) or 'its records'}{reused})"
    if state.status == "ok":
        return "done"
    if state.status == "failed":
        return f"failed in {state.failed_stage}: {state.error} (will retry)"
    finished = [name for name in STAGES if name in state.stages]
    return f"interrupted (finished: {', '.join(finished) or 'nothing'}; will resume)"
