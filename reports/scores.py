"""Score columns: which (task, metric) pairs a report shows, their readable labels, and the wide pivot.

A score column is one lmms-eval (task, metric) pair. Known real benchmarks get the names papers use,
the suite's synthetic counterparts (`syn_*`) the same names marked "Syn.", and any other task is
labelled generically as "task (metric)".
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from reports.errors import ReportInputError

# lmms-eval <= 0.3 spelled the MME perception metric "mme_percetion_score"; 0.7 spells it correctly.
# The loader renames the old key so both land in one column (the value is untouched).
METRIC_ALIASES: dict[tuple[str, str], str] = {("mme", "mme_percetion_score"): "mme_perception_score"}

# The suite runs the real benchmarks as `local_<task>`: lmms-eval's own task on a local copy of its
# data, same prompts and scoring (evaluation/tasks/README.md). The loader files them under <task>, so
# a suite run and an lmms-eval run made elsewhere share one column (the value is untouched).
LOCAL_TASK_PREFIX = "local_"

# The suite's synthetic tasks -> the benchmark whose format and scoring they take.
SYNTHETIC_BENCHMARKS: dict[str, str] = {
    "syn_mme": "mme",
    "syn_textvqa": "textvqa_val",
    "syn_gqa": "gqa",
    "syn_mmbench": "mmbench_en_dev",
    "syn_pope": "pope",
}

TASK_LABELS: dict[str, str] = {
    "gqa": "GQA",
    "mmbench_en_dev": "MMBench",
    "mme": "MME",
    "pope": "POPE",
    "scienceqa_img": "SQA-IMG",
    "textvqa_val": "TextVQA",
}

# Main-table columns for the known benchmarks, in paper order, with their labels. Other metrics of
# these tasks (e.g. POPE precision) stay in the all-scores table; unknown tasks show every metric.
PRIMARY_COLUMNS: dict[tuple[str, str], str] = {
    ("gqa", "exact_match"): "GQA",
    ("mmbench_en_dev", "gpt_eval_score"): "MMBench",
    ("mme", "mme_perception_score"): "MME-P (perception)",
    ("mme", "mme_cognition_score"): "MME-C (cognition)",
    ("pope", "pope_f1_score"): "POPE (F1)",
    ("pope", "pope_accuracy"): "POPE (acc)",
    ("scienceqa_img", "exact_match"): "SQA-IMG",
    ("textvqa_val", "exact_match"): "TextVQA",
}

# Column of shared/reference/paper_results.csv -> the (task, metric) it is quoted beside.
# The paper's MME is the perception score; its POPE is F1 (LLaVA-1.5 convention).
PAPER_COLUMNS: dict[str, tuple[str, str]] = {
    "gqa": ("gqa", "exact_match"),
    "mmbench": ("mmbench_en_dev", "gpt_eval_score"),
    "mme": ("mme", "mme_perception_score"),
    "pope": ("pope", "pope_f1_score"),
    "scienceqa_img": ("scienceqa_img", "exact_match"),
    "textvqa": ("textvqa_val", "exact_match"),
}

VISUAL_TOKENS = "visual_tokens"
TFLOPS_7B = "prefill_tflops_7b"
TTFT_MS = "ttft_ms"
EFFICIENCY_LABELS: dict[str, str] = {
    VISUAL_TOKENS: "Visual tokens",
    TFLOPS_7B: "TFLOPs (7B, 2 FLOPs/MAC)",
    TTFT_MS: "TTFT (ms)",
}


@dataclass(frozen=True, order=True)
class ScoreColumn:
    """One lmms-eval (task, metric) pair."""

    task: str
    metric: str

    @property
    def benchmark_key(self) -> tuple[str, str] | None:
        """The known (benchmark, metric) this column is, or is the synthetic counterpart of."""
        key = (SYNTHETIC_BENCHMARKS.get(self.task, self.task), self.metric)
        return key if key in PRIMARY_COLUMNS else None

    @property
    def is_synthetic(self) -> bool:
        return self.task in SYNTHETIC_BENCHMARKS

    @property
    def label(self) -> str:
        key = self.benchmark_key
        if key is not None:
            return f"Syn. {PRIMARY_COLUMNS[key]}" if self.is_synthetic else PRIMARY_COLUMNS[key]
        benchmark = SYNTHETIC_BENCHMARKS.get(self.task, self.task)
        name = (
            f"Syn. {TASK_LABELS[benchmark]}" if self.is_synthetic else TASK_LABELS.get(self.task, self.task)
        )
        return f"{name} ({self.metric})"

    @property
    def slug(self) -> str:
        """File-name-safe identifier."""
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{self.task}__{self.metric}")


def reported(results: pd.DataFrame) -> pd.DataFrame:
    """The records that carry a number: status ok and a value (failed or empty records never count)."""
    return results[(results["status"] == "ok") & results["value"].notna()]


def benchmark_task(task: str) -> str:
    """The task name a record is filed under: `local_<task>` of a known benchmark becomes <task>."""
    stripped = task.removeprefix(LOCAL_TASK_PREFIX)
    return stripped if stripped in TASK_LABELS else task


def score_columns(results: pd.DataFrame, *, primary_only: bool) -> list[ScoreColumn]:
    """The benchmark columns with at least one reported value: known benchmarks in paper order, then
    their synthetic counterparts in the same order, then the rest sorted. (A task that failed
    everywhere has no column; the failures table lists it.)

    With `primary_only`, known and synthetic benchmarks contribute only their `PRIMARY_COLUMNS` metrics.
    """
    scores = reported(results)
    scores = scores[scores["task"] != EFFICIENCY_TASK]
    present = {ScoreColumn(str(t), str(m)) for t, m in zip(scores["task"], scores["metric"], strict=True)}
    order = list(PRIMARY_COLUMNS)
    known = sorted(
        (c for c in present if c.benchmark_key is not None),
        key=lambda c: (c.is_synthetic, order.index(c.benchmark_key)),
    )
    others = sorted(
        c
        for c in present
        if c.benchmark_key is None
        and not (primary_only and SYNTHETIC_BENCHMARKS.get(c.task, c.task) in TASK_LABELS)
    )
    return known + others


def pivot_values(results: pd.DataFrame) -> pd.DataFrame:
    """Wide view: index `row_label`, columns (task, metric), cells the reported value (NaN = not reported).

    Only successful records count. The loader has already refused conflicting duplicates, so every
    cell holds exactly the one number from its source file.
    """
    wide = reported(results).pivot_table(
        index="row_label", columns=["task", "metric"], values="value", aggfunc="first"
    )
    labels = list(dict.fromkeys(results["row_label"]))
    return wide.reindex(labels)


def value_at(wide: pd.DataFrame, row_label: str, task: str, metric: str) -> float | None:
    """The reported value, or None when that row has no such (task, metric)."""
    if (task, metric) not in wide.columns or row_label not in wide.index:
        return None
    value = wide.at[row_label, (task, metric)]
    return None if pd.isna(value) else float(value)


def higher_is_better(results: pd.DataFrame, column: ScoreColumn) -> bool:
    """lmms-eval's higher_is_better flag for the metric when a file recorded it; otherwise True."""
    flags = results.loc[
        (results["task"] == column.task) & (results["metric"] == column.metric), "higher_is_better"
    ].dropna()
    return bool(flags.iloc[0]) if len(flags) else True


def row_info(results: pd.DataFrame) -> pd.DataFrame:
    """One row per config label: origin, projector, scale_factor, patch_num, seed, and `failed` (any
    failed record). Ordered by projector, scale_factor, patch_num, seed (unset values last).
    """
    grouped = results.groupby("row_label", sort=False)
    info = grouped[["origin", "projector", "scale_factor", "patch_num", "seed"]].first()
    info["failed"] = grouped["status"].agg(lambda s: bool((s == "failed").any()))
    return info.sort_values(
        ["projector", "scale_factor", "patch_num", "seed"], na_position="last", kind="stable"
    )


def resolve_baseline(info: pd.DataFrame, baseline: str) -> str | None:
    """The row label of the baseline: a label equal to `baseline`, else the one row of that projector.

    None when no row matches; ReportInputError when several do.
    """
    if baseline in info.index:
        return baseline
    matches = list(info.index[info["projector"] == baseline])
    if len(matches) > 1:
        raise ReportInputError(
            f"baseline {baseline!r} matches {len(matches)} rows ({'; '.join(matches)}); pass one row label as the baseline"
        )
    return matches[0] if matches else None


def chance_levels(results: pd.DataFrame) -> dict[ScoreColumn, float]:
    """Chance level per score column, where the inputs give one (the loader has refused conflicts)."""
    given = results.dropna(subset=["chance"])
    return {
        ScoreColumn(str(task), str(metric)): float(chance)
        for task, metric, chance in given[["task", "metric", "chance"]]
        .drop_duplicates()
        .itertuples(index=False)
    }


FAILED_CELL = "failed"


def failed_tasks(results: pd.DataFrame) -> set[tuple[str, str]]:
    """(row_label, task) pairs with a failed record: their gaps are printed as "failed", not as missing."""
    failed = results[results["status"] == "failed"]
    return set(zip(failed["row_label"].astype(str), failed["task"].astype(str), strict=True))
