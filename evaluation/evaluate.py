"""`evaluate()`: lmms-eval tasks on a suite checkpoint, written as lmms-eval's standard results files.

This is lmms-eval's own Python API (`simple_evaluate` + `EvaluationTracker`) with the suite's
defaults: the `tokenpacker` model, the suite's task folder, and early, one-line errors for a
bad checkpoint, task name or data root. The files are exactly what `lmms-eval --output_path
DIR --log_samples` writes: `DIR/<model>/<date>_results.json` and `<date>_samples_<task>.jsonl`.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from lmms_eval.evaluator import simple_evaluate
from lmms_eval.loggers import EvaluationTracker
from lmms_eval.tasks import TaskManager
from lmms_eval.utils import get_datetime_str

from evaluation.lmms_plugin import MODEL_NAME
from evaluation.model import parse_dtype
from evaluation.tasks import DATA_ROOT_ENV, TASKS_DIR
from tokenpacker.checkpoints import check_suite_checkpoint


def evaluate(
    model_path: Path,
    tasks: Sequence[str],
    output_dir: Path,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
    include_path: Path | None = None,
    data_root: Path | None = None,
    log_samples: bool = True,
) -> Path:
    """Run `tasks` (lmms-eval task or group names) and return the folder holding the results files.

    `limit` caps documents per task (smoke tests only: lmms-eval warns the scores are not real).
    `include_path` is a folder of extra task definitions (default: the suite's evaluation/tasks).
    `data_root` is where the suite's tasks find their data (exported as TOKENPACKER_DATA_ROOT
    for the duration of the call).
    """
    model_path = check_suite_checkpoint(model_path)
    parse_dtype(dtype)
    data_root = check_data_root(data_root) if data_root is not None else None
    if "," in str(model_path):
        raise ValueError(
            f"model path {str(model_path)!r} contains a comma, which lmms-eval's model_args cannot carry; rename it"
        )
    include_path = Path(include_path) if include_path is not None else TASKS_DIR
    if not include_path.is_dir():
        raise FileNotFoundError(
            f"task folder {str(include_path)!r} does not exist; pass a folder of lmms-eval task YAMLs"
        )
    task_manager = TaskManager("WARNING", include_path=str(include_path), model_name=MODEL_NAME)
    task_names = resolve_task_names(task_manager, tasks)
    tracker = EvaluationTracker(output_path=str(output_dir))
    datetime_str = get_datetime_str()
    with data_root_exported(data_root):
        results = simple_evaluate(
            model=MODEL_NAME,
            model_args=f"pretrained={model_path},dtype={dtype}",
            tasks=task_names,
            batch_size=batch_size,
            device=device,
            limit=limit,
            log_samples=log_samples,
            evaluation_tracker=tracker,
            task_manager=task_manager,
            datetime_str=datetime_str,
            verbosity="WARNING",
        )
    folder = Path(output_dir) / tracker.general_config_tracker.model_name_sanitized
    if results is not None:  # only the main process gets results under `accelerate launch`
        write_results_files(tracker, results, datetime_str, log_samples)
    return folder


def resolve_task_names(task_manager: TaskManager, tasks: Sequence[str]) -> list[str]:
    """The task names lmms-eval knows (wildcards allowed); an unknown one is an error naming close matches."""
    if not tasks:
        raise ValueError("no tasks given; name lmms-eval tasks or groups, e.g. mme,pope")
    matched = task_manager.match_tasks(list(tasks))
    for name in tasks:
        if name not in matched and "*" not in name:
            close = difflib.get_close_matches(name, task_manager.all_tasks, n=5, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "`lmms-eval --tasks list` lists them all"
            raise ValueError(f"unknown task {name!r}; {hint}")
    if not matched:
        raise ValueError(f"no task matches {', '.join(tasks)}; `lmms-eval --tasks list` lists them all")
    return matched


def check_data_root(data_root: Path) -> Path:
    data_root = Path(data_root).resolve()
    if not data_root.is_dir():
        raise FileNotFoundError(
            f"data root {str(data_root)!r} does not exist; create it with `tokenpacker synth` or point to local data copies"
        )
    return data_root


@contextmanager
def data_root_exported(data_root: Path | None) -> Iterator[None]:
    """Tell the suite's task utils where their data lives, for the duration of one evaluation."""
    if data_root is None:
        yield
        return
    previous = os.environ.get(DATA_ROOT_ENV)
    os.environ[DATA_ROOT_ENV] = str(data_root)
    try:
        yield
    finally:
        if previous is None:
            del os.environ[DATA_ROOT_ENV]
        else:
            os.environ[DATA_ROOT_ENV] = previous


def write_results_files(
    tracker: EvaluationTracker, results: dict, datetime_str: str, log_samples: bool
) -> None:
    """What lmms-eval's CLI writes after an evaluation: aggregate JSON, then one samples file per task."""
    samples = results.pop("samples") if log_samples else None
    tracker.save_results_aggregated(results=results, samples=samples, datetime_str=datetime_str)
    folder = Path(tracker.output_path) / tracker.general_config_tracker.model_name_sanitized
    results_file = folder / f"{datetime_str}_results.json"
    if not results_file.is_file():  # lmms-eval logs a failed write as a warning; make it an error here
        raise OSError(f"lmms-eval could not write {results_file}; check that the output folder is writable")
    if samples is not None:
        for task_name in results["configs"]:
            tracker.save_results_samples(task_name=task_name, samples=samples[task_name])
