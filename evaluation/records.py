"""The results record: one tidy row per (sweep cell, task, metric).

The sweep runner writes these; `reports/` reads them. This module is the single definition of the
format, so it imports only the standard library and pandas (no torch).

Conventions:
- `task` is the lmms-eval task name, or "efficiency" for the efficiency probes, whose `metric` is one
  of `EFFICIENCY_METRICS` (units in the name: ms, mb, tflops at 2 FLOPs per MAC).
- `value` is the number exactly as the scorer reported it; `None` when the cell failed or the metric
  was not produced. It is never filled with 0.
- `samples_path` is relative to the folder holding the results table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"

EFFICIENCY_TASK = "efficiency"
EFFICIENCY_METRICS = (
    "visual_tokens",
    "projector_params",
    "prefill_tflops_7b",
    "prefill_tflops_13b",
    "prefill_tflops_model",
    "ttft_ms",
    "tpot_ms",
    "throughput_samples_per_s",
    "peak_memory_mb",
    "kv_cache_mb_per_1k_tokens",
)
STATUSES = ("ok", "failed")
# A per-sample log field: the question's type, logged by the suite's GQA tasks beside exact_match
# (lmms-eval aggregates only the task's metric_list) and read by the report's per-type split.
QUESTION_TYPE_FIELD = "question_type"


@dataclass(frozen=True)
class ResultRecord:
    """One (cell, task, metric) result. JSON fields hold JSON text, not Python objects."""

    cell_id: str
    status: str  # "ok" | "failed"
    error: str | None
    projector: str
    scale_factor: int | None
    patch_num: int | None
    seed: int
    config_json: str  # the full cell config as JSON
    task: str  # lmms-eval task name, or "efficiency"
    metric: str
    value: float | None
    stderr: float | None
    n_samples: int | None
    samples_path: str | None  # per-sample jsonl, relative to the results table's folder
    suite_version: str
    git_commit: str
    package_versions: str  # JSON object: package -> version
    timings_json: str  # JSON object
    created_at: str  # ISO 8601

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"ResultRecord {self.cell_id!r}: status {self.status!r} is not one of {STATUSES}"
            )
        if self.status == "failed" and not self.error:
            raise ValueError(f"ResultRecord {self.cell_id!r}: a failed record needs an error message")
        if self.task == EFFICIENCY_TASK and self.metric not in EFFICIENCY_METRICS:
            raise ValueError(
                f"ResultRecord {self.cell_id!r}: efficiency metric {self.metric!r} is not one of {EFFICIENCY_METRICS}"
            )
        for name in ("config_json", "package_versions", "timings_json"):
            try:
                json.loads(getattr(self, name))
            except (TypeError, json.JSONDecodeError) as exc:
                raise ValueError(f"ResultRecord {self.cell_id!r}: {name} is not valid JSON ({exc})") from None


RESULT_COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(ResultRecord))

# Nullable dtypes so that a missing value stays missing (never 0) through parquet and CSV.
_INT_COLUMNS = ("scale_factor", "patch_num", "seed", "n_samples")
_FLOAT_COLUMNS = ("value", "stderr")
_STRING_COLUMNS = tuple(c for c in RESULT_COLUMNS if c not in _INT_COLUMNS + _FLOAT_COLUMNS)


def normalize_result_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with the record columns in `RESULT_COLUMNS` order and their canonical dtypes.

    Extra columns are kept after the record columns. Raises ValueError if a record column is missing.
    """
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"results frame is missing columns: {', '.join(missing)}")
    out = frame.copy()
    for column in _INT_COLUMNS:
        out[column] = pd.to_numeric(out[column]).astype("Int64")
    for column in _FLOAT_COLUMNS:
        out[column] = pd.to_numeric(out[column]).astype("float64")
    for column in _STRING_COLUMNS:
        out[column] = out[column].astype("string")
    extra = [c for c in out.columns if c not in RESULT_COLUMNS]
    return out[list(RESULT_COLUMNS) + extra]


def records_to_frame(records: Iterable[ResultRecord]) -> pd.DataFrame:
    """One row per record, columns `RESULT_COLUMNS`, nullable dtypes (an empty iterable gives an empty frame)."""
    rows = [dataclasses.asdict(record) for record in records]
    return normalize_result_dtypes(pd.DataFrame(rows, columns=list(RESULT_COLUMNS)))


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the target's folder, then os.replace: readers never see half a file."""
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        with open(temp, "rb") as stream:
            os.fsync(stream.fileno())
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_results_table(frame: pd.DataFrame, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write `results.parquet` and `results.csv` into `directory` (created if needed), each atomically.

    Returns (parquet_path, csv_path).
    """
    table = normalize_result_dtypes(frame)
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    parquet_path, csv_path = folder / RESULTS_PARQUET, folder / RESULTS_CSV
    atomic_write(parquet_path, lambda path: table.to_parquet(path, index=False))
    atomic_write(csv_path, lambda path: table.to_csv(path, index=False))
    return parquet_path, csv_path


def resolve_results_file(path: str | os.PathLike[str]) -> Path:
    """The table file for `path`: the file itself, or a folder's results.parquet (else results.csv)."""
    given = Path(path)
    if given.is_dir():
        for name in (RESULTS_PARQUET, RESULTS_CSV):
            if (given / name).is_file():
                return given / name
        raise FileNotFoundError(f"{given}: no {RESULTS_PARQUET} or {RESULTS_CSV} in this folder")
    if not given.is_file():
        raise FileNotFoundError(f"{given}: no such results file or folder")
    return given


def read_results_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a results table (a .parquet or .csv file, or a folder holding one) with canonical dtypes.

    Raises FileNotFoundError if there is no table, and ValueError naming the file and the missing
    columns (or bad status values) if it is not a results table.
    """
    file = resolve_results_file(path)
    if file.suffix == ".parquet":
        frame = pd.read_parquet(file)
    elif file.suffix == ".csv":
        frame = pd.read_csv(
            file, dtype={c: "string" for c in _STRING_COLUMNS}, keep_default_na=False, na_values=[""]
        )
    else:
        raise ValueError(
            f"{file}: a results table must be .parquet or .csv, not {file.suffix or 'no suffix'!r}"
        )
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{file}: not a results table, missing columns: {', '.join(missing)}")
    frame = normalize_result_dtypes(frame)
    bad = sorted(set(frame["status"].dropna()) - set(STATUSES)) + (
        ["<empty>"] if frame["status"].isna().any() else []
    )
    if bad:
        raise ValueError(f"{file}: column status has values {bad}; allowed: {list(STATUSES)}")
    return frame
