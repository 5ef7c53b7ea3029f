"""Paper tables built from loaded results: main table, ablations, equal token budget, audit tables.

Every score cell is the value from a results file (or, in quoted rows, the text of the reference
CSV). The only derived numbers are the "Avg" and "Rel." columns, whose notes say how they are made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from reports.errors import ReportInputError
from reports.reference import QuotedRow
from reports.render import Cell, Table
from reports.scores import (
    EFFICIENCY_LABELS,
    PAPER_COLUMNS,
    TFLOPS_7B,
    TTFT_MS,
    VISUAL_TOKENS,
    ScoreColumn,
    pivot_values,
    resolve_baseline,
    row_info,
    value_at,
)
from reports.uncertainty import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    SampleScores,
    ScoresUnavailable,
    check_mean_matches,
    paired_test,
    read_sample_scores,
    score_interval,
)

FAILED_MARK = " †"
CONFIG_HEADER = "Method / config"


def _efficiency(wide: pd.DataFrame, label: str, metric: str) -> Cell:
    value = value_at(wide, label, EFFICIENCY_TASK, metric)
    if value is not None and metric == VISUAL_TOKENS and value.is_integer():
        return int(value)
    return value


def unit_interval_columns(wide: pd.DataFrame, columns: Sequence[ScoreColumn]) -> list[ScoreColumn]:
    """Score columns whose reported values all lie in [0, 1] (accuracy-type): the ones "Avg" averages."""
    chosen = []
    for column in columns:
        values = wide[(column.task, column.metric)].dropna() if (column.task, column.metric) in wide.columns else []
        if len(values) and values.between(0.0, 1.0).all():
            chosen.append(column)
    return chosen


def _quoted_cells(row: QuotedRow, columns: Sequence[ScoreColumn]) -> list[Cell]:
    by_score = {ScoreColumn(*target): name for name, target in PAPER_COLUMNS.items()}
    cells: list[Cell] = []
    for column in columns:
        name = by_score.get(column)
        text = row.values.get(name, "") if name else ""
        cells.append(text or None)
    return cells


def main_table(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    quoted: Sequence[QuotedRow] = (),
    *,
    baseline: str = "mlp2x_gelu",
    reference_name: str = "",
) -> Table:
    """A row per config: visual tokens, 7B TFLOPs, TTFT, one column per score, Avg, Rel. to baseline,
    then the quoted reference rows."""
    wide = pivot_values(results)
    info = row_info(results)
    base = resolve_baseline(info, baseline)
    averaged = unit_interval_columns(wide, columns)
    keys = [(c.task, c.metric) for c in columns]
    base_values = {key: value_at(wide, base, *key) for key in keys} if base else {}
    relative_keys = [key for key, value in base_values.items() if value not in (None, 0.0)]

    order = ([base] if base else []) + [label for label in info.index if label != base]
    rows: list[tuple[Cell, ...]] = []
    for label in order:
        scores = [value_at(wide, label, *key) for key in keys]
        avg_values = [value_at(wide, label, c.task, c.metric) for c in averaged]
        average = sum(avg_values) / len(avg_values) if len(averaged) >= 2 and None not in avg_values else None
        relative = None
        if relative_keys:
            ratios = [
                (value_at(wide, label, *key) or float("nan")) / base_values[key] for key in relative_keys
            ]
            if not any(pd.isna(r) for r in ratios):
                relative = 100.0 * sum(ratios) / len(ratios)
        name = label + (FAILED_MARK if info.at[label, "failed"] else "")
        rows.append(
            (
                name,
                _efficiency(wide, label, VISUAL_TOKENS),
                _efficiency(wide, label, TFLOPS_7B),
                _efficiency(wide, label, TTFT_MS),
                *scores,
                average,
                relative,
            )
        )
    first_quoted = len(rows)
    for row in quoted:
        visual = row.visual_tokens or None
        rows.append((row.label, visual, None, None, *_quoted_cells(row, columns), None, None))

    baseline_header = f"Rel. to {base or baseline} (%)"
    notes = [
        "Measured rows: every value exactly as in its results file, in the scorer's units "
        "(lmms-eval: accuracy, exact match and F1 as fractions 0-1; MMBench in %; MME as summed scores).",
        "TFLOPs: prefill cost at LLaMA-7B scale, counting 2 FLOPs per multiply-accumulate. TTFT: time to first token.",
        "Avg: mean of " + (", ".join(c.label for c in averaged) if len(averaged) >= 2 else "(fewer than two 0-1 metrics: not computed)")
        + "; a gap if any of them is missing.",
        (
            f"Rel.: 100 x mean over {', '.join(ScoreColumn(*k).label for k in relative_keys)} of score / score of {base}; "
            "a gap if any is missing."
            if relative_keys
            else f"Rel.: baseline {baseline!r} is not among the measured rows (or has no scores), so not computed."
        ),
        "— : not reported (never read as 0).",
    ]
    if any(info["failed"]):
        notes.append(f"{FAILED_MARK.strip()} : some cells of this config failed; see the failures table.")
    if quoted:
        sources = sorted({row.source for row in quoted if row.source})
        notes.append(
            f"Rows marked (quoted, paper) are copied from {reference_name or 'the reference CSV'} "
            f"(sources: {', '.join(sources)}), in the paper's units (percent; its MME is the perception score, "
            "its POPE is F1); not measured here."
        )
    return Table(
        name="main_table",
        title="Accuracy and efficiency per projector configuration",
        columns=(
            CONFIG_HEADER,
            EFFICIENCY_LABELS[VISUAL_TOKENS],
            EFFICIENCY_LABELS[TFLOPS_7B],
            EFFICIENCY_LABELS[TTFT_MS],
            *(c.label for c in columns),
            "Avg",
            baseline_header,
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        midrules=(first_quoted,) if quoted and rows[:first_quoted] else (),
    )


def reference_table(quoted: Sequence[QuotedRow], benchmarks: Sequence[str], reference_name: str) -> Table:
    """The reference CSV verbatim, every column, for the record."""
    rows = tuple(
        (row.label, row.visual_tokens or None, *[(row.values.get(b) or None) for b in benchmarks], row.source)
        for row in quoted
    )
    return Table(
        name="reference_quoted",
        title=f"Quoted reference results ({reference_name}), as printed in the papers",
        columns=("Method (quoted, paper)", "Visual tokens", *benchmarks, "source"),
        rows=rows,
        notes=("Quoted, not measured; units as in the papers (percent; mme = perception score).",),
    )


def _axis_label(value: object) -> str:
    return "n/a" if pd.isna(value) else str(int(value))


def _sorted_axis(values: pd.Series) -> list[object]:
    return sorted(values.unique(), key=lambda v: (pd.isna(v), 0 if pd.isna(v) else v))


def ablation_projectors(results: pd.DataFrame) -> list[str]:
    """Projectors with at least two (scale_factor, patch_num) configs: the ones an ablation grid is for."""
    info = row_info(results)
    counts = info.groupby("projector")[["scale_factor", "patch_num"]].apply(lambda g: len(g.drop_duplicates()))
    return sorted(str(p) for p in counts[counts >= 2].index)


def ablation_grid(results: pd.DataFrame, projector: str, column: ScoreColumn) -> pd.DataFrame:
    """Rows scale_factor, columns patch_num (labels "n/a" when unset), cells the reported value,
    NaN when not reported, or the text "<k> seeds" when several seeds share the cell."""
    wide = pivot_values(results)
    info = row_info(results)
    group = info[info["projector"] == projector]
    scales, patches = _sorted_axis(group["scale_factor"]), _sorted_axis(group["patch_num"])
    grid = pd.DataFrame(index=[_axis_label(s) for s in scales], columns=[_axis_label(p) for p in patches], dtype=object)
    cells: dict[tuple[str, str], list[str]] = {}
    for label in group.index:
        key = (_axis_label(group.at[label, "scale_factor"]), _axis_label(group.at[label, "patch_num"]))
        cells.setdefault(key, []).append(label)
    for (scale, patch), labels in cells.items():
        if len(labels) == 1:
            grid.at[scale, patch] = value_at(wide, labels[0], column.task, column.metric)
        else:
            grid.at[scale, patch] = f"{len(labels)} seeds"
    return grid


def ablation_tables(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> list[Table]:
    """scale_factor x patch_num grids, one per (projector with at least two such configs, score column)."""
    tables = []
    for projector in ablation_projectors(results):
        for column in columns:
            grid = ablation_grid(results, projector, column)
            rows = tuple(
                (f"s={scale}", *[None if not isinstance(v, str) and pd.isna(v) else v for v in grid.loc[scale]])
                for scale in grid.index
            )
            tables.append(
                Table(
                    name=f"ablation_{projector}_{column.slug}",
                    title=f"{projector}: {column.label} over scale_factor x patch_num",
                    columns=("scale_factor \\ patch_num", *(f"N={p}" for p in grid.columns)),
                    rows=rows,
                    notes=(
                        "Values as in the results files; — : not run or not reported; n/a: not set; "
                        "'k seeds': several seeds, see the main table.",
                    ),
                )
            )
    return tables


def equal_budget_table(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> Table | None:
    """Projectors side by side at equal visual-token budgets (budgets that at least two projectors share)."""
    wide = pivot_values(results)
    info = row_info(results)
    tokens = {label: _efficiency(wide, label, VISUAL_TOKENS) for label in info.index}
    measured = [label for label in info.index if tokens[label] is not None]
    known = info.loc[measured].assign(tokens=[tokens[label] for label in measured])
    rows = []
    for budget, group in known.groupby("tokens", sort=True):
        if group["projector"].nunique() < 2:
            continue
        for label in group.sort_values(["projector"]).index:
            rows.append(
                (budget, group.at[label, "projector"], label,
                 *[value_at(wide, label, c.task, c.metric) for c in columns])
            )
    if not rows:
        return None
    return Table(
        name="equal_budget",
        title="Projectors at equal visual-token budget",
        columns=(EFFICIENCY_LABELS[VISUAL_TOKENS], "Projector", CONFIG_HEADER, *(c.label for c in columns)),
        rows=tuple(rows),
        notes=("Only budgets reached by at least two projectors; values as in the results files; — : not reported.",),
    )


def failures_table(results: pd.DataFrame) -> Table | None:
    """Failed cells with their error messages (their values are never used)."""
    failed = results[results["status"] == "failed"]
    if failed.empty:
        return None
    unique = failed[["row_label", "cell_id", "task", "error"]].drop_duplicates()
    return Table(
        name="failures",
        title="Failed cells",
        columns=(CONFIG_HEADER, "cell_id", "task", "error"),
        rows=tuple(tuple(None if pd.isna(v) else str(v) for v in row) for row in unique.itertuples(index=False)),
    )


def all_scores_table(results: pd.DataFrame) -> Table:
    """Every record, one line each: the audit trail from table cell back to file."""
    rows = []
    for record in results.sort_values(["row_label", "task", "metric"], kind="stable").itertuples(index=False):
        rows.append(
            (
                record.row_label, record.task, record.metric, record.status,
                None if pd.isna(record.value) else float(record.value),
                None if pd.isna(record.stderr) else float(record.stderr),
                None if pd.isna(record.n_samples) else int(record.n_samples),
                None if pd.isna(record.git_commit) else str(record.git_commit),
                str(record.source),
            )
        )
    return Table(
        name="all_scores",
        title="All records",
        columns=(CONFIG_HEADER, "task", "metric", "status", "value", "stderr", "n", "git commit", "source file"),
        rows=tuple(rows),
        notes=("value and stderr as in the source file; stderr is the scorer's own.",),
    )


def _lmms_eval_version(package_versions: str) -> str | None:
    try:
        versions = json.loads(package_versions)
    except json.JSONDecodeError:
        return None
    if not isinstance(versions, dict):
        return None
    found = versions.get("lmms_eval") or versions.get("lmms-eval")
    return str(found) if found else None


def inputs_table(results: pd.DataFrame) -> Table:
    """Where the numbers came from: one line per source file."""
    rows = []
    for source, group in results.groupby("source", sort=True):
        versions = sorted({_lmms_eval_version(str(text)) for text in group["package_versions"].dropna()} - {None})
        suite = sorted(str(v) for v in group["suite_version"].dropna().unique())
        commits = sorted(str(v) for v in group["git_commit"].dropna().unique())
        kind = "lmms-eval results" if str(source).endswith("_results.json") else "suite results table"
        rows.append((Path(str(source)).name, kind, ", ".join(suite) or None, ", ".join(str(v) for v in versions) or None,
                     ", ".join(commits) or None, int(group["row_label"].nunique()), str(source)))
    return Table(
        name="inputs",
        title="Inputs",
        columns=("file", "kind", "suite version", "lmms-eval version", "git commit", "configs", "path"),
        rows=tuple(rows),
    )


def _sample_record(results: pd.DataFrame, label: str, column: ScoreColumn) -> tuple[float, float | None, str | None] | None:
    """(value, stderr, samples file) of a config's successful record for a column, or None."""
    match = results[
        (results["row_label"] == label) & (results["task"] == column.task) & (results["metric"] == column.metric)
        & (results["status"] == "ok") & results["value"].notna()
    ]
    if match.empty:
        return None
    record = match.iloc[0]
    stderr = None if pd.isna(record["stderr"]) else float(record["stderr"])
    samples = None if pd.isna(record["samples_file"]) else str(record["samples_file"])
    return float(record["value"]), stderr, samples


def _mean_type_scores(
    samples_file: str | None, column: ScoreColumn, reported: float, cache: dict[tuple[str, str], SampleScores | str]
) -> SampleScores | str:
    """Per-sample scores that average to the reported value, or the reason there are none."""
    if samples_file is None:
        return "no per-sample log"
    key = (samples_file, column.metric)
    if key not in cache:
        try:
            scores = read_sample_scores(Path(samples_file), column.metric)
            check_mean_matches(scores, reported)
            cache[key] = scores
        except ScoresUnavailable as exc:
            cache[key] = str(exc)
    return cache[key]


def interval_table(
    results: pd.DataFrame, columns: Sequence[ScoreColumn], *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Table:
    """95% percentile-bootstrap CI of each mean-type score from its per-sample log; n/a with the reason otherwise."""
    cache: dict[tuple[str, str], SampleScores | str] = {}
    rows = []
    for label in row_info(results).index:
        for column in columns:
            record = _sample_record(results, label, column)
            if record is None:
                continue
            value, stderr, samples_file = record
            scores = _mean_type_scores(samples_file, column, value, cache)
            if isinstance(scores, str):
                rows.append((label, column.label, value, stderr, None, "n/a", "n/a", scores))
                continue
            interval = score_interval(scores, value, resamples=resamples, seed=seed)
            rows.append((label, column.label, value, stderr, interval.n, interval.low, interval.high, ""))
    return Table(
        name="uncertainty",
        title="Bootstrap 95% confidence intervals from per-sample logs",
        columns=(CONFIG_HEADER, "benchmark", "value", "stderr (scorer)", "n", "CI low", "CI high", "note"),
        rows=tuple(rows),
        notes=(
            f"Percentile bootstrap of the mean over samples, {resamples} resamples, seed {seed}. Only metrics whose "
            "reported value is the mean of the per-sample scores; the value column is the reported one.",
        ),
    )


def paired_table(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    *,
    baseline: str,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Table | None:
    """Each config against the baseline on the docs both scored (mean-type metrics only); None without a baseline."""
    info = row_info(results)
    base = resolve_baseline(info, baseline)
    if base is None:
        return None
    cache: dict[tuple[str, str], SampleScores | str] = {}
    rows = []
    for label in info.index:
        if label == base:
            continue
        for column in columns:
            record, base_record = _sample_record(results, label, column), _sample_record(results, base, column)
            if record is None or base_record is None:
                continue
            scores = _mean_type_scores(record[2], column, record[0], cache)
            base_scores = _mean_type_scores(base_record[2], column, base_record[0], cache)
            reason = scores if isinstance(scores, str) else base_scores if isinstance(base_scores, str) else None
            if reason is None:
                try:
                    test = paired_test(scores, base_scores, resamples=resamples, seed=seed)
                except ReportInputError:
                    reason = "no shared doc_ids"
            if reason is not None:
                rows.append((label, column.label, None, "n/a", "n/a", "n/a", "n/a", reason))
                continue
            p_text = "< 0.0001" if test.p_value < 1e-4 else f"{test.p_value:.4f}"
            rows.append((label, column.label, test.n, test.difference, test.low, test.high, p_text, test.method))
    return Table(
        name="paired_tests",
        title=f"Paired comparison against {base} on shared samples",
        columns=(CONFIG_HEADER, "benchmark", "n pairs", "difference", "CI low", "CI high", "p", "method / note"),
        rows=tuple(rows),
        notes=(
            f"difference = mean over doc_ids scored by both of (config - {base}); 95% paired-bootstrap CI; "
            "two-sided sign-flip permutation p-value.",
        ),
    )
