"""Where cells run: one after another in this process (default), or one Slurm job each through submitit.

Both launchers call the same `run_cell`, which keeps its state in the cell's folder, so the resume
rules are the same everywhere: a cell finished on the cluster is never redone locally, and back.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm.auto import tqdm

from evaluation.sweep.cells import CellRun, run_cell, stage_fingerprints
from evaluation.sweep.results import provenance
from evaluation.sweep.spec import CellConfig, SlurmOptions
from evaluation.sweep.stages import Stages, WorldPaths
from evaluation.sweep.state import CellState, cell_dir, now_iso, read_cell_state, write_cell_state

LAUNCHERS = ("local", "slurm")
SUBMITIT_FOLDER = "submitit"


class Launcher(Protocol):
    def run(
        self,
        cells: Sequence[CellConfig],
        out_dir: Path,
        world: WorldPaths | None,
        stages: Stages,
        progress: bool,
    ) -> list[CellRun]: ...


def resolve_jobs(jobs: int | None) -> int:
    """`None` means one job per CPU core: tiny CPU cells use cores better side by side, one thread
    each, than one cell using every core."""
    if jobs is None:
        jobs = os.cpu_count() or 1
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {jobs}")
    return jobs


def plan_workers(jobs: int, cells: int) -> tuple[int, int]:
    """(worker processes, torch threads each) for `cells` cells: never more workers than cells,
    and the CPU cores shared out between the workers."""
    workers = max(1, min(jobs, cells))
    return workers, max(1, (os.cpu_count() or 1) // workers)


def limit_threads(threads: int) -> None:
    """Worker start-up: share the cores between the workers instead of each taking all of them."""
    import torch

    torch.set_num_threads(threads)


@contextmanager
def quiet_children() -> Iterator[None]:
    """Worker processes started inside inherit TQDM_DISABLE: the cells' own progress bars (Trainer,
    lmms-eval) side by side would garble the terminal, where the sweep's bar counts finished cells.
    tqdm reads it when imported, so it must be in the environment the workers start with."""
    previous = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TQDM_DISABLE"]
        else:
            os.environ["TQDM_DISABLE"] = previous


@dataclass(frozen=True)
class LocalLauncher:
    """Cells on this machine: one after another in this process (jobs=1), or `jobs` at a time in
    worker processes that split the CPU cores between them."""

    jobs: int = 1

    def run(
        self,
        cells: Sequence[CellConfig],
        out_dir: Path,
        world: WorldPaths | None,
        stages: Stages,
        progress: bool,
    ) -> list[CellRun]:
        workers, threads = plan_workers(self.jobs, len(cells))
        if workers == 1:
            return [
                run_cell(cell, out_dir, world, stages, gpus=0, progress=progress)
                for cell in tqdm(cells, desc="cells", unit="cell", disable=not progress)
            ]
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=limit_threads,
            initargs=(threads,),
        ) as pool:
            with quiet_children():  # the pool starts its workers on submit
                futures = [pool.submit(run_cell, cell, out_dir, world, stages, 0, False) for cell in cells]
            for _ in tqdm(
                as_completed(futures), total=len(futures), desc="cells", unit="cell", disable=not progress
            ):
                pass
        return [worker_result(future, cell, out_dir) for future, cell in zip(futures, cells, strict=True)]


@dataclass(frozen=True)
class SubmititLauncher:
    """Each cell as its own submitit job (a Slurm job array); waits for all of them.

    The sweep folder must be on a file system the nodes share: jobs write their cells' state there.
    `cluster` is submitit's: "slurm" on a cluster; "local" (all jobs at once, a subprocess each) or
    "debug" (in this process) run the very same jobs on this machine, which is how it is tested offline.
    """

    slurm: SlurmOptions
    cluster: str = "slurm"
    poll_s: float = 10.0  # seconds between looks at the jobs' states

    def run(
        self,
        cells: Sequence[CellConfig],
        out_dir: Path,
        world: WorldPaths | None,
        stages: Stages,
        progress: bool,
    ) -> list[CellRun]:
        import submitit  # an optional dependency (the `eval` extra), needed only here

        if not cells:
            return []
        executor = submitit.AutoExecutor(folder=Path(out_dir) / SUBMITIT_FOLDER / "%j", cluster=self.cluster)
        executor.update_parameters(**executor_parameters(self.slurm))
        gpus = self.slurm.gpus_per_node
        with executor.batch():
            jobs = [
                executor.submit(run_cell, cell, Path(out_dir), world, stages, gpus, False) for cell in cells
            ]
        cell_of_job = {job.job_id: cell for job, cell in zip(jobs, cells, strict=True)}
        runs = []
        for job in tqdm(
            submitit.helpers.as_completed(jobs, poll_frequency=self.poll_s),
            total=len(jobs),
            desc="cells",
            unit="cell",
            disable=not progress,
        ):
            try:
                runs.append(job.result())
            except Exception as exc:  # the job itself died (timeout, out of memory, cancelled)
                runs.append(record_lost_job(cell_of_job[job.job_id], Path(out_dir), job.job_id, exc))
        return runs


def worker_result(future: Future, cell: CellConfig, out_dir: Path) -> CellRun:
    """A cell's run, or the cell marked failed when its worker process died under it."""
    try:
        return future.result()
    except BrokenProcessPool as exc:
        return record_lost_job(cell, out_dir, "local worker", exc)


def executor_parameters(slurm: SlurmOptions) -> dict[str, Any]:
    """submitit's parameters for one cell job: one node, one task; Slurm-only options prefixed `slurm_`."""
    parameters: dict[str, Any] = {
        "name": "tokenpacker-sweep",
        "nodes": 1,
        "tasks_per_node": 1,
        "gpus_per_node": slurm.gpus_per_node,
        "timeout_min": slurm.time_min,
    }
    if slurm.cpus_per_task is not None:
        parameters["cpus_per_task"] = slurm.cpus_per_task
    if slurm.mem_gb is not None:
        parameters["mem_gb"] = slurm.mem_gb
    if slurm.partition is not None:
        parameters["slurm_partition"] = slurm.partition
    if slurm.additional:
        parameters["slurm_additional_parameters"] = dict(slurm.additional)
    return parameters


def record_lost_job(cell: CellConfig, out_dir: Path, job_id: str, exc: Exception) -> CellRun:
    """Mark a cell failed when its job died before it could say so itself (unless it had finished)."""
    folder = cell_dir(out_dir, cell.cell_id)
    state = read_cell_state(folder)
    if state is not None and state.status == "ok" and state.fingerprint == cell.fingerprint():
        return CellRun(cell.cell_id, "ok", None, {})
    message = f"job {job_id} died: {' '.join(f'{type(exc).__name__}: {exc}'.splitlines()[:1])}"
    finished = state.stages if state is not None else {}
    stage = next((name for name in stage_fingerprints(cell) if name not in finished), "records")
    base = state or CellState(cell.cell_id, cell.fingerprint(), "failed", provenance=provenance())
    write_cell_state(
        folder,
        dataclasses.replace(base, status="failed", error=message, failed_stage=stage, finished_at=now_iso()),
    )
    return CellRun(cell.cell_id, "failed", message, {})


def make_launcher(name: str, slurm: SlurmOptions, jobs: int = 1) -> Launcher:
    if name == "local":
        return LocalLauncher(jobs)
    if name == "slurm":
        if shutil.which("sbatch") is None:
            raise FileNotFoundError(
                "--launcher slurm: no sbatch on PATH; run the sweep on a Slurm login node, or use --launcher local"
            )
        return SubmititLauncher(slurm)
    raise ValueError(f"--launcher {name!r} is unknown; allowed: {', '.join(LAUNCHERS)}")
