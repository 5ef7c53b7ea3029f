"""Read results into one tidy frame: the suite's results table and lmms-eval's own results folders.

Both become rows in the `evaluation.records` format plus report columns (`EXTRA_COLUMNS`):
- `source`: the file a number came from;
- `origin`: the run it belongs to (a suite results folder, or an lmms-eval model name);
- `row_label`: the config it belongs to, e.g. "tokenpacker (s=2)", with a sweep cell's extra axes in
  brackets ("[recipe.stage2.max_steps=400]"); when one config comes from two runs, each run's rows get
  "[origin]" appended, so numbers of different runs never share a row;
- `samples_file`: the per-sample jsonl, absolute, or missing;
- `higher_is_better`: lmms-eval's flag, or missing;
- `chance`: the metric's chance level (the results table's optional `chance` column, or lmms-eval's
  task config `metadata.chance`: a number, or {metric: number}), or missing.
Task names `local_<task>` (the suite's local copies of lmms-eval's benchmarks) are filed under <task>.
Numbers are copied, never recomputed. Conflicting numbers for one config of one run are refused.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from evaluation.records import (
    RESULT_COLUMNS,
    RESULTS_CSV,
    RESULTS_PARQUET,
    normalize_result_dtypes,
    read_results_table,
    resolve_results_file,
)
from reports.errors import ReportInputError
from reports.scores import METRIC_ALIASES, benchmark_task, reported

EXTRA_COLUMNS = ("source", "origin", "row_label", "samples_file", "higher_is_better", "chance")
CHANCE_COLUMN = "chance"
UNKNOWN = "unknown"

LMMS_RESULTS_SUFFIX = "_results.json"
# Keys lmms-eval 0.7 always writes into <date>_results.json (evaluator.evaluate + simple_evaluate).
LMMS_REQUIRED_KEYS = (
    "results",
    "configs",
    "versions",
    "n-shot",
    "higher_is_better",
    "n-samples",
    "config",
    "lmms_eval_version",
    "date",
)
LMMS_SUPPORTED_RELEASES = ("0.7",)
# lmms-eval 0.7 writes its version as "<branch>@<commit>"; a release number is only checked when present.
_RELEASE_VERSION = re.compile(r"^v?(\d+)\.(\d+)(\.\d+)?$")
_STDERR_SUFFIXES = ("_stderr_clt", "_stderr_clustered")

_PROJECTOR_KEYS = ("projector", "mm_projector_type", "projector_type")


def load_results(inputs: Sequence[Path]) -> pd.DataFrame:
    """Load every input (results table file or folder, lmms-eval results file or folder) into one frame.

    Raises ReportInputError for a missing or empty input, an unreadable file, or conflicting values.
    """
    if not inputs:
        raise ReportInputError(
            "no results given: pass a results folder, results.parquet/csv, or an lmms-eval output folder"
        )
    frames = [frame for path in inputs for frame in _load_input(Path(path))]
    combined = pd.concat(frames, ignore_index=True)
    combined = _disambiguate_seeds(combined)
    combined = _label_cell_axes(combined)
    combined = _disambiguate_origins(combined)
    _check_chance(combined)
    return drop_duplicate_values(combined)


def _load_input(path: Path) -> list[pd.DataFrame]:
    if not path.exists():
        raise ReportInputError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name.endswith(LMMS_RESULTS_SUFFIX):
            return [load_lmms_eval_results(path)]
        if path.suffix in (".parquet", ".csv"):
            return [load_results_table(path)]
        raise ReportInputError(
            f"{path}: not a results file; expected results.parquet, results.csv or lmms-eval's *{LMMS_RESULTS_SUFFIX}"
        )
    if (path / RESULTS_PARQUET).is_file() or (path / RESULTS_CSV).is_file():
        return [load_results_table(path)]
    lmms_files = sorted(path.rglob(f"*{LMMS_RESULTS_SUFFIX}"))
    if not lmms_files:
        raise ReportInputError(
            f"{path}: folder holds no {RESULTS_PARQUET}, {RESULTS_CSV} or lmms-eval *{LMMS_RESULTS_SUFFIX} files; "
            "pass the folder a sweep or `lmms-eval --output_path` wrote"
        )
    return [load_lmms_eval_results(file, root=path) for file in lmms_files]


# --- the suite's own results table --------------------------------------------------------------


def load_results_table(path: Path) -> pd.DataFrame:
    """The suite's results table (file or folder), with report columns added."""
    try:
        file = resolve_results_file(path)
        frame = read_results_table(file)
    except (ValueError, OSError) as exc:
        raise ReportInputError(str(exc)) from None
    if frame.empty:
        raise ReportInputError(f"{file}: results table has no records")
    frame["task"] = frame["task"].map(benchmark_task, na_action="ignore").astype("string")
    frame["source"] = str(file)
    frame["origin"] = file.resolve().parent.name
    frame["row_label"] = [
        config_label(p, sf, pn)
        for p, sf, pn in zip(frame["projector"], frame["scale_factor"], frame["patch_num"], strict=True)
    ]
    frame["samples_file"] = [
        None if pd.isna(rel) else str((file.parent / str(rel)).resolve()) for rel in frame["samples_path"]
    ]
    frame["higher_is_better"] = None
    frame[CHANCE_COLUMN] = _chance_column(frame, file)
    return frame


def _chance_column(frame: pd.DataFrame, file: Path) -> pd.Series:
    """The table's optional `chance` column as floats (missing where not given)."""
    if CHANCE_COLUMN not in frame.columns:
        return pd.Series([None] * len(frame), index=frame.index, dtype="float64")
    chance = pd.to_numeric(frame[CHANCE_COLUMN], errors="coerce")
    bad = frame[CHANCE_COLUMN].notna() & chance.isna()
    if bad.any():
        raise ReportInputError(
            f"{file}: column chance has non-numeric values {sorted(set(map(str, frame.loc[bad, CHANCE_COLUMN])))}; "
            "leave it empty where a task has no chance level"
        )
    return chance.astype("float64")


def config_label(projector: Any, scale_factor: Any, patch_num: Any) -> str:
    """Readable config name, e.g. "tokenpacker (s=2, N=9)"; parts that are not set are left out."""
    parts = []
    if not pd.isna(scale_factor):
        parts.append(f"s={int(scale_factor)}")
    if not pd.isna(patch_num):
        parts.append(f"N={int(patch_num)}")
    name = UNKNOWN if pd.isna(projector) or not str(projector) else str(projector)
    return f"{name} ({', '.join(parts)})" if parts else name


# --- lmms-eval results folders --------------------------------------------------------------------


def load_lmms_eval_results(file: Path, root: Path | None = None) -> pd.DataFrame:
    """One lmms-eval `<date>_results.json` (0.7 layout) as result rows; samples files found beside it."""
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportInputError(f"{file}: cannot read as JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise ReportInputError(f"{file}: not an lmms-eval results file (top level is not a JSON object)")
    version = _check_lmms_layout(file, payload)
    run_config = payload["config"]
    args = parse_model_args(run_config["model_args"], file)
    projector, scale_factor, patch_num = config_from_model_args(args, file)
    model_name = (
        payload.get("model_name") or args.get("pretrained") or run_config.get("model") or file.parent.name
    )
    label = (
        config_label(projector, scale_factor, patch_num)
        if projector != UNKNOWN
        else f"{UNKNOWN} ({model_name})"
    )
    date_id = file.name[: -len(LMMS_RESULTS_SUFFIX)]
    config_json = json.dumps(
        {key: run_config.get(key) for key in ("model", "model_args", "limit", "gen_kwargs")}
        | {"model_name": model_name},
        default=str,
    )
    higher = payload["higher_is_better"] if isinstance(payload["higher_is_better"], dict) else {}
    rows = []
    for task, entry in payload["results"].items():
        if not isinstance(entry, dict):
            raise ReportInputError(f"{file}: results[{task!r}] is not an object")
        samples = file.parent / f"{date_id}_samples_{task}.jsonl"
        common = {
            "cell_id": str(file.relative_to(root)) if root is not None else file.name,
            "status": "ok",
            "error": None,
            "projector": projector,
            "scale_factor": scale_factor,
            "patch_num": patch_num,
            "seed": None,
            "config_json": config_json,
            "task": benchmark_task(task),
            "n_samples": _n_samples(payload, task),
            "samples_path": samples.name if samples.is_file() else None,
            "suite_version": None,
            "git_commit": payload.get("git_hash"),
            "package_versions": json.dumps({"lmms_eval": version}),
            "timings_json": json.dumps(
                {"total_evaluation_time_seconds": payload.get("total_evaluation_time_seconds")}
            ),
            "created_at": payload.get("date"),
            "source": str(file),
            "origin": str(model_name),
            "row_label": label,
            "samples_file": str(samples.resolve()) if samples.is_file() else None,
        }
        for metric, (value, stderr) in _metric_values(entry).items():
            flag = (higher.get(task) or {}).get(metric.split(",")[0])
            rows.append(
                common
                | {
                    "metric": METRIC_ALIASES.get((benchmark_task(task), metric), metric),
                    "value": value,
                    "stderr": stderr,
                    "higher_is_better": flag if isinstance(flag, bool) else None,
                    CHANCE_COLUMN: _task_chance(payload, task, metric, file),
                }
            )
    if not rows:
        raise ReportInputError(f"{file}: lmms-eval results file holds no numeric metrics")
    return normalize_result_dtypes(pd.DataFrame(rows, columns=list(RESULT_COLUMNS) + list(EXTRA_COLUMNS)))


def _check_lmms_layout(file: Path, payload: dict[str, Any]) -> str:
    """Refuse files whose layout or version this reader does not know; return the version string."""
    missing = [key for key in LMMS_REQUIRED_KEYS if key not in payload]
    if "lmms_eval_version" in missing:
        raise ReportInputError(
            f"{file}: unknown lmms-eval version (no 'lmms_eval_version' key; lmms-eval 0.7 writes one); "
            "re-run the evaluation with lmms-eval 0.7.x"
        )
    if missing:
        raise ReportInputError(
            f"{file}: not an lmms-eval 0.7 results file, missing keys: {', '.join(missing)}"
        )
    version = payload["lmms_eval_version"]
    if not isinstance(version, str) or not version:
        raise ReportInputError(f"{file}: lmms_eval_version is {version!r}, not a version string")
    release = _RELEASE_VERSION.match(version)
    if release and f"{release.group(1)}.{release.group(2)}" not in LMMS_SUPPORTED_RELEASES:
        raise ReportInputError(
            f"{file}: written by lmms-eval {version}; this reader knows the layout of lmms-eval "
            f"{', '.join(v + '.x' for v in LMMS_SUPPORTED_RELEASES)}; re-run the evaluation with one of those"
        )
    if not isinstance(payload["config"], dict) or "model_args" not in payload["config"]:
        raise ReportInputError(f"{file}: config.model_args is missing, so the run's config cannot be known")
    for key in ("results", "configs", "n-samples"):
        if not isinstance(payload[key], dict):
            raise ReportInputError(f"{file}: '{key}' is {type(payload[key]).__name__}, expected an object")
    return version


def _metric_values(entry: dict[str, Any]) -> dict[str, tuple[float, float | None]]:
    """metric -> (value, stderr) from one task's results entry. Keys are "metric,filter"; the filter
    is kept in the metric name unless it is "none". Non-numeric values (e.g. "N/A") are skipped."""
    values: dict[str, float] = {}
    stderrs: dict[str, float] = {}
    for key, raw in entry.items():
        if "," not in key or not _is_number(raw):
            continue
        metric, filter_key = key.rsplit(",", 1)
        suffix = "" if filter_key == "none" else f",{filter_key}"
        if metric.endswith(_STDERR_SUFFIXES):
            continue
        if metric.endswith("_stderr"):
            stderrs[metric.removesuffix("_stderr") + suffix] = float(raw)
        else:
            values[metric + suffix] = float(raw)
    return {metric: (value, stderrs.get(metric)) for metric, value in values.items()}


def _is_number(raw: Any) -> bool:
    return isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw)


def _n_samples(payload: dict[str, Any], task: str) -> int | None:
    counts = payload["n-samples"].get(task)
    return (
        counts["effective"] if isinstance(counts, dict) and isinstance(counts.get("effective"), int) else None
    )


def _task_chance(payload: dict[str, Any], task: str, metric: str, file: Path) -> float | None:
    """The chance level a task declares in configs[task].metadata.chance: one number for all its
    metrics, or {metric: number} (the suite's synthetic tasks); None when it declares none."""
    config = payload["configs"].get(task)
    metadata = config.get("metadata") if isinstance(config, dict) else None
    raw = metadata.get("chance") if isinstance(metadata, dict) else None
    if isinstance(raw, dict):
        raw = raw.get(metric.split(",")[0])
    if raw is None:
        return None
    if not _is_number(raw):
        raise ReportInputError(
            f"{file}: configs[{task!r}].metadata.chance for {metric} is {raw!r}; expected a number, "
            "or a mapping from metric to number"
        )
    return float(raw)


def parse_model_args(model_args: str | dict[str, Any] | None, file: Path) -> dict[str, str]:
    """lmms-eval's `model_args` ("k=v,k=v" or a dict) as a dict of strings."""
    if model_args is None or model_args == "":
        return {}
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items()}
    if not isinstance(model_args, str):
        raise ReportInputError(
            f"{file}: config.model_args is {type(model_args).__name__}, expected 'k=v,...' text"
        )
    parsed = {}
    for part in filter(None, (p.strip() for p in model_args.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise ReportInputError(f"{file}: config.model_args part {part!r} is not key=value")
        parsed[key.strip()] = value.strip()
    return parsed


def config_from_model_args(args: dict[str, str], file: Path) -> tuple[str, int | None, int | None]:
    """(projector, scale_factor, patch_num): model_args first, then config.json of `pretrained=PATH`.

    What neither says is unknown: projector "unknown", scale_factor/patch_num None.
    """
    checkpoint: dict[str, Any] = {}
    pretrained = args.get("pretrained")
    if pretrained and (Path(pretrained) / "config.json").is_file():
        try:
            checkpoint = json.loads((Path(pretrained) / "config.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ReportInputError(
                f"{Path(pretrained) / 'config.json'}: cannot read checkpoint config ({exc})"
            ) from None

    def first(keys: Sequence[str]) -> Any:
        for source in (args, checkpoint):
            for key in keys:
                if source.get(key) not in (None, ""):
                    return source[key]
        return None

    projector = first(_PROJECTOR_KEYS)
    return (
        str(projector) if projector is not None else UNKNOWN,
        _as_int(first(("scale_factor",)), "scale_factor", file),
        _as_int(first(("patch_num",)), "patch_num", file),
    )


def _as_int(raw: Any, name: str, file: Path) -> int | None:
    if raw is None:
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number != int(number):
        raise ReportInputError(f"{file}: {name}={raw!r} in model_args/config.json is not an integer")
    return int(number)


# --- combining inputs -----------------------------------------------------------------------------


def _disambiguate_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Append "seed k" to a config's label when its run holds more than one seed of it."""
    seeds = frame.groupby(["origin", "row_label"])["seed"].nunique(dropna=True)
    multi = set(seeds[seeds > 1].index)
    frame = frame.copy()
    frame["row_label"] = [
        f"{label} seed {int(seed)}" if (origin, label) in multi and not pd.isna(seed) else label
        for origin, label, seed in zip(frame["origin"], frame["row_label"], frame["seed"], strict=True)
    ]
    return frame


def _label_cell_axes(frame: pd.DataFrame) -> pd.DataFrame:
    """Append what else defines a sweep cell (its extra axes, e.g. a learning rate) to its label, so a
    row never hides a setting its cell changed: `tokenpacker (s=4) [recipe.stage2.learning_rate=_1e-3_]`.
    Cells of one config and seed without such axes are told apart by their whole id."""
    cells = frame.groupby(["origin", "row_label"])["cell_id"].nunique(dropna=True)
    multi = set(cells[cells > 1].index)
    frame = frame.copy()
    frame["row_label"] = [
        f"{label} [{suffix}]"
        if (suffix := _cell_suffix(str(cell), seed, (origin, label) in multi))
        else label
        for origin, label, cell, seed in zip(
            frame["origin"], frame["row_label"], frame["cell_id"], frame["seed"], strict=True
        )
    ]
    return frame


def _cell_suffix(cell_id: str, seed: Any, ambiguous: bool) -> str | None:
    """The part of a sweep cell id after its seed (the extra axes); else the whole id where the label
    alone is ambiguous, or None."""
    marker = f"-seed{int(seed)}-" if not pd.isna(seed) else None
    if marker and marker in cell_id:
        return cell_id.split(marker, 1)[1]
    return cell_id if ambiguous else None


def _disambiguate_origins(frame: pd.DataFrame) -> pd.DataFrame:
    """Append "[origin]" to a config's label when more than one run holds it: different runs never share a row."""
    origins = frame.groupby("row_label")["origin"].nunique(dropna=False)
    shared = set(origins[origins > 1].index)
    frame = frame.copy()
    frame["row_label"] = [
        f"{label} [{origin}]" if label in shared else label
        for label, origin in zip(frame["row_label"], frame["origin"], strict=True)
    ]
    return frame


def _check_chance(frame: pd.DataFrame) -> None:
    """One chance level per (task, metric): two inputs that disagree cannot both be printed beside it."""
    given = frame.dropna(subset=[CHANCE_COLUMN])
    for (task, metric), group in given.groupby(["task", "metric"], sort=True):
        if group[CHANCE_COLUMN].nunique() > 1:
            shown = ", ".join(
                f"{v!r} ({s})"
                for v, s in group[[CHANCE_COLUMN, "source"]].drop_duplicates().itertuples(index=False)
            )
            raise ReportInputError(
                f"conflicting chance levels for {task}/{metric}: {shown}; give one chance level per task"
            )


def drop_duplicate_values(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep one record per (config, task, metric); raise if two successful records disagree.

    The same number read twice (a table given as folder and file, a copied results file) is kept once;
    a failed record is dropped where a successful one exists (a cell that failed and was re-run).
    """
    key = ["row_label", "task", "metric"]
    ok = reported(frame)
    succeeded = frame.index.isin(ok.index)
    for (label, task, metric), group in ok.groupby(key, sort=True):
        if group["value"].nunique() > 1:
            shown = "; ".join(
                f"{value!r} (git {commit if not pd.isna(commit) else '?'}, {source})"
                for value, commit, source in group[["value", "git_commit", "source"]]
                .drop_duplicates()
                .itertuples(index=False)
            )
            raise ReportInputError(
                f"conflicting results for {label} {task}/{metric}: {shown}; pass only one run of each config "
                "(e.g. the one results file you mean)"
            )
    has_ok = pd.MultiIndex.from_frame(frame[key]).isin(pd.MultiIndex.from_frame(ok[key]))
    kept_ok = ok.drop_duplicates(subset=key)
    rest = frame[~succeeded & ~has_ok].drop_duplicates(subset=[*key, "status", "error"])
    return pd.concat([kept_ok, rest]).sort_index().reset_index(drop=True)
