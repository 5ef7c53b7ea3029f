"""A whole sweep: check every cell, build the world once, run what is left, collect the table, write the report."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from evaluation.records import write_results_table
from evaluation.sweep.cells import CellRun, stage_fingerprints
from evaluation.sweep.launchers import Launcher, LocalLauncher
from evaluation.sweep.results import STAGE_TIMING_KEYS, collect_results
from evaluation.sweep.spec import CellConfig, SweepSpec, SweepSpecError, WorldSpec, fingerprint, select_cells
from evaluation.sweep.stages import REAL_STAGES, Stages, WorldPaths
from evaluation.sweep.state import (
    cell_dir,
    describe_status,
    is_done,
    now_iso,
    read_cell_state,
    read_json,
    write_json,
    write_text,
)
from evaluation.synthetic.world import world_key

WORLD_FOLDER = "world"
LANGUAGE_STATE = "language-state.json"  # in WORLD_FOLDER: seconds each shared stage-0 LLM took
REPORT_FOLDER = "report"
REPORT_STATE = "report_state.json"
LOCK_FILE = ".sweep.lock"
SPEC_COPY = "spec.yaml"
STAGE_TIMINGS = ("generation_s", "pretraining_s", "training_s", "evaluation_s", "efficiency_s", "report_s")


@dataclass(frozen=True)
class SweepOutcome:
    """What a sweep run produced; `this_run` holds the seconds spent now, per stage (reused work counts 0)."""

    out_dir: Path
    results: pd.DataFrame
    runs: tuple[CellRun, ...]
    failed: tuple[str, ...]  # ids of cells whose latest attempt failed
    report_page: Path | None
    report_error: str | None
    this_run: dict[str, float]


def cell_statuses(spec: SweepSpec, out_dir: Path) -> list[tuple[CellConfig, str]]:
    """Each cell with what is already done (for `--dry-run`)."""
    return [
        (
            cell,
            describe_status(
                read_cell_state(cell_dir(out_dir, cell.cell_id)), cell.fingerprint(), stage_fingerprints(cell)
            ),
        )
        for cell in spec.cells
    ]


def pending_cells(cells: Sequence[CellConfig], out_dir: Path) -> list[CellConfig]:
    return [c for c in cells if not is_done(read_cell_state(cell_dir(out_dir, c.cell_id)), c.fingerprint())]


def run_sweep(
    spec: SweepSpec,
    out_dir: Path,
    *,
    stages: Stages = REAL_STAGES,
    only: Sequence[str] | None = None,
    launcher: Launcher | None = None,
    progress: bool = True,
) -> SweepOutcome:
    """Run every selected cell not yet done, then collect `results.parquet`/`.csv` and write the report.

    Every cell is checked (`stages.check_cell`) before any runs; a failing cell is recorded and the
    sweep goes on. Raises SweepSpecError for a bad spec or `--only`, BlockingIOError if another
    sweep holds the folder.
    """
    out_dir = Path(out_dir)
    selected = select_cells(spec, only)
    check_cells(spec, stages)
    with sweep_lock(out_dir):
        _save_spec_copy(spec, out_dir)
        pending = pending_cells(selected, out_dir)
        this_run = dict.fromkeys(STAGE_TIMINGS, 0.0)
        world = None
        if spec.world is not None and pending:
            world, this_run["generation_s"] = prepare_world(out_dir / WORLD_FOLDER, spec.world, stages)
            this_run["pretraining_s"] = prepare_language_models(pending, world, stages)
        runs = tuple((launcher or LocalLauncher()).run(pending, out_dir, world, stages, progress))
        for run in runs:
            for stage, seconds in run.seconds.items():
                this_run[STAGE_TIMING_KEYS[stage]] += seconds
        results, page, report_error, this_run["report_s"] = collect_and_report(spec, out_dir, stages)
    failed = sorted(set(results.loc[results["status"] == "failed", "cell_id"])) if not results.empty else []
    return SweepOutcome(out_dir, results, runs, tuple(failed), page, report_error, this_run)


def check_cells(spec: SweepSpec, stages: Stages) -> None:
    """Every cell against the stages' own checks, before any cell runs; the error names the cell."""
    for cell in spec.cells:
        try:
            stages.check_cell(cell)
        except ValueError as exc:
            raise SweepSpecError(f"sweep spec {spec.source}: cell {cell.cell_id}: {exc}") from None


def collect_and_report(
    spec: SweepSpec, out_dir: Path, stages: Stages
) -> tuple[pd.DataFrame, Path | None, str | None, float]:
    """Write the results table, then the report from it, then the table again with the report's time.

    Returns (results, report page, report error, seconds spent on the report now).
    """
    timings = {
        "generation_s": _recorded_world_seconds(out_dir / WORLD_FOLDER),
        "pretraining_s": _recorded_language_seconds(out_dir / WORLD_FOLDER),
    }
    results = collect_results(out_dir, spec.cells, timings)
    if results.empty:
        return results, None, None, 0.0
    write_results_table(results, out_dir)
    if spec.report is None:
        return results, None, None, 0.0
    report = _report(results, out_dir, spec, stages)
    if report.seconds is not None:
        results = collect_results(out_dir, spec.cells, timings | {"report_s": round(report.seconds, 3)})
        write_results_table(results, out_dir)
    return results, report.page, report.error, report.seconds if report.built_now else 0.0


@contextmanager
def sweep_lock(out_dir: Path) -> Iterator[None]:
    """One sweep process per folder at a time; the OS drops the lock when the process dies, even by SIGKILL."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BlockingIOError(
                f"{out_dir}: another sweep is running in this folder; wait for it or use --out"
            ) from None
        yield


def _save_spec_copy(spec: SweepSpec, out_dir: Path) -> None:
    """The spec as run, next to its results."""
    write_text(out_dir / SPEC_COPY, spec.source.read_text(encoding="utf-8"))


def prepare_world(folder: Path, spec: WorldSpec, stages: Stages) -> tuple[WorldPaths, float]:
    """The world under `folder`, built once per world spec; returns (paths, seconds spent now).

    `stages.build_world` writes each world into its own subfolder of `folder` and reuses one that is
    already complete, so a changed spec never deletes a world another cell was trained on.
    """
    state_file = folder / "state.json"
    key = fingerprint([asdict(spec), world_key(spec.preset, spec.seed)])  # an edited generator: a new world
    if state_file.is_file():
        state = read_json(state_file)
        if state.get("fingerprint") == key:
            return WorldPaths.from_dict(folder, state["paths"]), 0.0
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    world = stages.build_world(folder, spec)
    seconds = time.perf_counter() - start
    write_json(
        state_file,
        {"fingerprint": key, "seconds": round(seconds, 3), "paths": world.to_dict(), "built_at": now_iso()},
    )
    return world, seconds


def prepare_language_models(cells: Sequence[CellConfig], world: WorldPaths, stages: Stages) -> float:
    """Train the stage-0 LLMs the pending cells share, before the cells start (so parallel workers
    never wait on one another); returns the seconds spent now and records them beside the world."""
    state_file = world.root / LANGUAGE_STATE
    recorded = read_json(state_file) if state_file.is_file() else {}
    spent = 0.0
    for cell in cells:
        key, seconds = stages.pretrain_language(cell, world)
        if key is not None and seconds > 0:
            recorded[key] = round(seconds, 3)
            write_json(state_file, recorded)
            spent += seconds
    return spent


def _recorded_language_seconds(folder: Path) -> float:
    state_file = folder / LANGUAGE_STATE
    return float(sum(read_json(state_file).values())) if state_file.is_file() else 0.0


def _recorded_world_seconds(folder: Path) -> float:
    state_file = folder / "state.json"
    return float(read_json(state_file)["seconds"]) if state_file.is_file() else 0.0


@dataclass(frozen=True)
class ReportRun:
    page: Path | None
    error: str | None
    seconds: float | None  # time the page took when it was built (None: no page)
    built_now: bool


def _report(results: pd.DataFrame, out_dir: Path, spec: SweepSpec, stages: Stages) -> ReportRun:
    """The report page, rebuilt only when the table (or the report options) changed since the last one."""
    key = fingerprint([results.to_csv(index=False), asdict(spec.report)])
    state_file = out_dir / REPORT_STATE
    if state_file.is_file():
        state = read_json(state_file)
        if state["fingerprint"] == key and Path(state["page"]).is_file():
            return ReportRun(Path(state["page"]), None, float(state["seconds"]), built_now=False)
    start = time.perf_counter()
    try:
        page = Path(stages.report(out_dir, out_dir / REPORT_FOLDER, spec.report))
    except Exception as exc:  # the results stay valid without a report; say why it is missing
        return ReportRun(None, " ".join(f"{type(exc).__name__}: {exc}".split()), None, built_now=False)
    seconds = time.perf_counter() - start
    state = {
        "fingerprint": key,
        "seconds": round(seconds, 3),
        "page": str(page.resolve()),
        "built_at": now_iso(),
    }
    write_json(state_file, state)
    return ReportRun(page, None, seconds, built_now=True)
