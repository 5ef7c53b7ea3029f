"""Score columns: which (task, metric) pairs a report shows, their readable labels, and the wide pivot.

A score column is one lmms-eval (task, metric) pair. Known real benchmarks get the names papers use;
any other task (the synthetic `syn_*` tasks included) is labelled generically as "task (metric)".
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from reports.errors import ReportInputError

# lmms-eval <= 0.3 spelled the MME perception metric "mme_percetion_score"; 0.7 spells it correctly.
# The loader renames the old key so both land in one column (the value is untouched).
METRIC_ALIASES: dict[tuple[str, str], str] = {("mme", "mme_percetion_score"): "mme_perception_score"}

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
    def label(self) -> str:
        known = PRIMARY_COLUMNS.get((self.task, self.metric))
        if known:
            return known
        return f"{TASK_LABELS.get(self.task, self.task)} ({self.metric})"

    @property
    def slug(self) -> str:
        """File-name-safe identifier."""
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{self.task}__{self.metric}")


def score_columns(results: pd.DataFrame, *, primary_only: bool) -> list[ScoreColumn]:
    """The benchmark columns present in `results`: known benchmarks first in paper order, then the rest sorted.

    With `primary_only`, known tasks contribute only their `PRIMARY_COLUMNS` metrics.
    """
    scores = results[results["task"] != EFFICIENCY_TASK]
    present = {ScoreColumn(str(t), str(m)) for t, m in zip(scores["task"], scores["metric"], strict=True)}
    known = [ScoreColumn(*key) for key in PRIMARY_COLUMNS if ScoreColumn(*key) in present]
    others = sorted(c for c in present if c not in known and not (primary_only and c.task in TASK_LABELS))
    return known + others


def pivot_values(results: pd.DataFrame) -> pd.DataFrame:
    """Wide view: index `row_label`, columns (task, metric), cells the reported value (NaN = not reported).

    Only successful records count. The loader has already refused conflicting duplicates, so every
    cell holds exactly the one number from its source file.
    """
    ok = results[(results["status"] == "ok") & results["value"].notna()]
    wide = ok.pivot_table(index="row_label", columns=["task", "metric"], values="value", aggfunc="first")
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
