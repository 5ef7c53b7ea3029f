"""The CI gate: `--check BASELINE` fails when a metric falls below its baseline by more than its tolerance.

A baseline is YAML; tolerances are absolute, in the metric's own units:

    tolerance: 0.05                     # default for every entry
    metrics:
      - {cell: tokenpacker-s2-seed0, task: syn_pope, metric: exact_match, value: 0.82}
      - {cell: mlp2x_gelu-seed0, task: syn_textvqa, metric: exact_match, value: 0.40, tolerance: 0.1}
      - {cell: tokenpacker-s4-seed0, task: efficiency, metric: visual_tokens, value: 36,
         tolerance: 0, higher_is_better: false}

A metric missing from the results (its cell failed or did not run) fails the gate too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from evaluation.records import EFFICIENCY_TASK
from evaluation.sweep.state import write_text

DEFAULT_TOLERANCE = 0.05
ENTRY_KEYS = ("cell", "task", "metric", "value", "tolerance", "higher_is_better")


class BaselineError(ValueError):
    """A baseline file that cannot be read; the message names the file and the entry."""


@dataclass(frozen=True)
class BaselineEntry:
    cell: str
    task: str
    metric: str
    value: float
    tolerance: float
    higher_is_better: bool = True


@dataclass(frozen=True)
class Regression:
    """A baseline entry the results do not meet; `value` is None when the metric is missing."""

    entry: BaselineEntry
    value: float | None
    reason: str

    def describe(self) -> str:
        e = self.entry
        return f"cell {e.cell}: {e.task}/{e.metric}: {self.reason}"


def read_baseline(path: Path) -> list[BaselineEntry]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--check {path}: no such baseline file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BaselineError(f"baseline {path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("metrics"), list) or not raw["metrics"]:
        raise BaselineError(f"baseline {path}: expected a mapping with a non-empty 'metrics' list")
    default = raw.get("tolerance", DEFAULT_TOLERANCE)
    return [
        _entry(item, default, f"baseline {path}: metrics[{index}]")
        for index, item in enumerate(raw["metrics"])
    ]


def _entry(item: Any, default_tolerance: Any, where: str) -> BaselineEntry:
    if not isinstance(item, dict):
        raise BaselineError(f"{where}: expected a mapping with keys {', '.join(ENTRY_KEYS)}")
    unknown = sorted(set(item) - set(ENTRY_KEYS))
    missing = [key for key in ("cell", "task", "metric", "value") if key not in item]
    if unknown or missing:
        raise BaselineError(
            f"{where}: unknown keys {unknown}, missing keys {missing}; allowed: {', '.join(ENTRY_KEYS)}"
        )
    tolerance = item.get("tolerance", default_tolerance)
    for name, number in (("value", item["value"]), ("tolerance", tolerance)):
        if not isinstance(number, int | float) or isinstance(number, bool) or not math.isfinite(number):
            raise BaselineError(f"{where}: {name}={number!r} must be a finite number")
    if tolerance < 0:
        raise BaselineError(f"{where}: tolerance={tolerance!r} must be >= 0")
    return BaselineEntry(
        cell=str(item["cell"]),
        task=str(item["task"]),
        metric=str(item["metric"]),
        value=float(item["value"]),
        tolerance=float(tolerance),
        higher_is_better=bool(item.get("higher_is_better", True)),
    )


def check_results(results: pd.DataFrame, baseline: Iterable[BaselineEntry]) -> list[Regression]:
    """Every baseline entry the results fall short of (empty: the gate passes)."""
    ok = results[(results["status"] == "ok") & results["value"].notna()]
    values = {
        (c, t, m): float(v)
        for c, t, m, v in zip(ok["cell_id"], ok["task"], ok["metric"], ok["value"], strict=True)
    }
    errors = {c: e for c, e in zip(results["cell_id"], results["error"], strict=True) if not pd.isna(e)}
    regressions = []
    for entry in baseline:
        value = values.get((entry.cell, entry.task, entry.metric))
        if value is None:
            why = f"cell failed ({errors[entry.cell]})" if entry.cell in errors else "not in the results"
            regressions.append(Regression(entry, None, f"missing: {why}; baseline {entry.value:g}"))
            continue
        limit = entry.value - entry.tolerance if entry.higher_is_better else entry.value + entry.tolerance
        if (value < limit) if entry.higher_is_better else (value > limit):
            side = "below" if entry.higher_is_better else "above"
            regressions.append(
                Regression(
                    entry,
                    value,
                    f"{value:g} is {side} baseline {entry.value:g} by more than the tolerance {entry.tolerance:g}",
                )
            )
    return regressions


# Metrics that describe answers rather than score them: no direction is "better", so none is gated.
DESCRIPTIVE_METRICS = ("pope_yes_ratio",)


def write_baseline(results: pd.DataFrame, path: Path, tolerance: float) -> int:
    """A baseline from a run's results: every successful score (not efficiency). Returns the count.

    Each entry's tolerance is `tolerance` for scores up to 1 (accuracies) and `tolerance` times the
    score above 1 (e.g. MME's summed scores), so one number fits metrics of every scale.
    """
    ok = results[
        (results["status"] == "ok")
        & results["value"].notna()
        & (results["task"] != EFFICIENCY_TASK)
        & ~results["metric"].isin(DESCRIPTIVE_METRICS)
    ]
    if ok.empty:
        raise BaselineError(
            f"--write-baseline {path}: the results hold no successful scores to take as a baseline"
        )
    metrics = [
        {
            "cell": str(cell),
            "task": str(task),
            "metric": str(metric),
            "value": round(float(value), 4),
            "tolerance": round(tolerance * max(1.0, abs(float(value))), 4),
        }
        for cell, task, metric, value in ok[["cell_id", "task", "metric", "value"]].itertuples(index=False)
    ]
    header = (
        "# Written by `tokenpacker sweep --write-baseline`; a run fails `--check` when a score falls below\n"
        "# its value by more than its tolerance (absolute, in the metric's units).\n"
    )
    write_text(Path(path), header + yaml.safe_dump({"metrics": metrics}, sort_keys=False))
    return len(metrics)
