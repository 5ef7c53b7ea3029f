"""Paper tables built from loaded results: main table, ablations, equal token budget, audit tables.

Every score cell is the value from a results file (or, in quoted rows, the text of the reference
CSV; in the chance row, the chance level the task declares). The only derived numbers are the "Avg"
and "Rel." columns and the uncertainty tables, whose notes say how they are made.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from reports.reference import QuotedRow
from reports.render import GAP, MAX_DECIMALS, PRECISION_NOTE, Cell, Table
from reports.scores import (
    EFFICIENCY_LABELS,
    FAILED_CELL,
    PAPER_COLUMNS,
    TFLOPS_7B,
    TTFT_MS,
    VISUAL_TOKENS,
    ScoreColumn,
    chance_levels,
    failed_tasks,
    pivot_values,
    reported,
    resolve_baseline,
    row_info,
    value_at,
)
from reports.uncertainty import (
    DEFAULT_PERMUTATIONS,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    SampleScores,
    ScoresUnavailable,
    check_reported_matches,
    paired_test,
    read_sample_scores,
    score_interval,
)

FAILED_MARK = " †"
MIXED_MARK = " ‡"
CONFIG_HEADER = "Method / config"
CHANCE_LABEL = "Chance level (uniform guess)"
AVG_HEADER = "Avg"


def _score_cell(wide: pd.DataFrame, failed: set[tuple[str, str]], label: str, task: str, metric: str) -> Cell:
    """The reported value; "failed" where the cell failed; None (a gap) where nothing was reported."""
    value = value_at(wide, label, task, metric)
    return FAILED_CELL if value is None and (label, task) in failed else value


def _efficiency(wide: pd.DataFrame, label: str, metric: str) -> Cell:
    value = value_at(wide, label, EFFICIENCY_TASK, metric)
    if value is not None and metric == VISUAL_TOKENS and value.is_integer():
        return int(value)
    return value


def unit_interval_columns(wide: pd.DataFrame, columns: Sequence[ScoreColumn]) -> list[ScoreColumn]:
    """Score columns whose reported values all lie in [0, 1] (accuracy-type): the ones "Avg" averages."""
    chosen = []
    for column in columns:
        values = (
            wide[(column.task, column.metric)].dropna()
            if (column.task, column.metric) in wide.columns
            else []
        )
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


def sample_count_notes(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> dict[ScoreColumn, str]:
    """Columns whose rows were not scored on the same samples: differing sample counts, or a run
    limited to a subset (lmms-eval --limit). Their numbers are printed, but flagged as not one-to-one
    comparable."""
    ok = reported(results)
    notes = {}
    for column in columns:
        records = ok[(ok["task"] == column.task) & (ok["metric"] == column.metric)]
        counts = sorted({int(n) for n in records["n_samples"].dropna()})
        limited = sorted(
            {
                label
                for label, text in zip(records["row_label"], records["config_json"], strict=True)
                if _config_limit(str(text)) is not None
            }
        )
        reasons = []
        if len(counts) > 1:
            reasons.append(f"rows scored on different sample counts (n = {', '.join(map(str, counts))})")
        if limited:
            reasons.append(f"limited to a subset of the eval set (lmms-eval limit): {'; '.join(limited)}")
        if reasons:
            notes[column] = f"{column.label}: " + " and ".join(reasons) + "; not comparable one to one."
    return notes


def _config_limit(config_json: str) -> object:
    try:
        config = json.loads(config_json)
    except json.JSONDecodeError:
        return None
    return config.get("limit") if isinstance(config, dict) else None


def _average(values: Sequence[float | None]) -> float | None:
    return None if len(values) < 2 or None in values else sum(values) / len(values)


def _relative(values: Sequence[float | None], base: Sequence[float]) -> float | None:
    if not base or None in values:
        return None
    return 100.0 * sum(v / b for v, b in zip(values, base, strict=True)) / len(base)


def main_table(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    quoted: Sequence[QuotedRow] = (),
    *,
    baseline: str = "mlp2x_gelu",
    reference_name: str = "",
) -> Table:
    """A row per config: visual tokens, 7B TFLOPs, TTFT, one column per score, Avg, Rel. to baseline;
    then the chance levels (where tasks give them) and the quoted reference rows."""
    wide = pivot_values(results)
    info = row_info(results)
    base = resolve_baseline(info, baseline)
    averaged = unit_interval_columns(wide, columns)
    base_values = {c: value_at(wide, base, c.task, c.metric) for c in columns} if base else {}
    relative_columns = [c for c, value in base_values.items() if value not in (None, 0.0)]
    flagged = sample_count_notes(results, columns)
    relative_header = f"Rel. to {base or baseline} (%)"

    order = ([base] if base else []) + [label for label in info.index if label != base]
    rows: list[tuple[Cell, ...]] = []
    failed = failed_tasks(results)
    for label in order:
        row_value = {c: value_at(wide, label, c.task, c.metric) for c in columns}
        rows.append(
            (
                label + (FAILED_MARK if info.at[label, "failed"] else ""),
                _efficiency(wide, label, VISUAL_TOKENS),
                _efficiency(wide, label, TFLOPS_7B),
                _efficiency(wide, label, TTFT_MS),
                *(_score_cell(wide, failed, label, c.task, c.metric) for c in columns),
                _average([row_value[c] for c in averaged]),
                _relative(
                    [row_value[c] for c in relative_columns], [base_values[c] for c in relative_columns]
                ),
            )
        )
    chance = chance_levels(results)
    if any(c in chance for c in columns):
        rows.append((CHANCE_LABEL, None, None, None, *(chance.get(c) for c in columns), None, None))
    first_quoted = len(rows)
    for row in quoted:
        rows.append(
            (row.label, row.visual_tokens or None, None, None, *_quoted_cells(row, columns), None, None)
        )

    notes = [
        "Measured rows: every value exactly as in its results file, in the scorer's units "
        "(lmms-eval: accuracy, exact match and F1 as fractions 0-1; MMBench in %; MME as summed scores).",
        "TFLOPs: prefill cost at LLaMA-7B scale, counting 2 FLOPs per multiply-accumulate. TTFT: time to first token.",
        (
            f"Avg: mean of {', '.join(c.label for c in averaged)}; a gap if any of them is missing."
            if len(averaged) >= 2
            else "Avg: not computed (fewer than two score columns in 0-1 units)."
        ),
        (
            f"Rel.: 100 x mean over {', '.join(c.label for c in relative_columns)} of score / score of {base}; "
            "a gap if any is missing."
            if relative_columns
            else f"Rel.: baseline {baseline!r} is not among the measured rows (or has no scores), so not computed."
        ),
        f"{GAP} : not reported (never read as 0). {PRECISION_NOTE}",
        *(f"{MIXED_MARK.strip()} {note}" for note in flagged.values()),
    ]
    if any(info["failed"]):
        notes.append(
            f"{FAILED_MARK.strip()} : some cells of this config failed ({FAILED_CELL}: no number); see the failures table."
        )
    if any(c in chance for c in columns):
        notes.append(f"{CHANCE_LABEL}: the score of a uniform guess, as the task declares it; not measured.")
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
            *(c.label + (MIXED_MARK if c in flagged else "") for c in columns),
            AVG_HEADER,
            relative_header,
        ),
        rows=tuple(rows),
        notes=tuple(notes),
        midrules=tuple(i for i in (len(order), first_quoted) if 0 < i < len(rows)),
        fixed_decimals={AVG_HEADER: MAX_DECIMALS, relative_header: 1},
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


@dataclass(frozen=True)
class AblationGroup:
    """One projector's configs within one run (results folder or lmms-eval model): what a grid compares."""

    origin: str
    projector: str
    several_origins: bool  # whether the report holds other runs, so titles must name this one

    @property
    def title(self) -> str:
        return f"{self.projector} [{self.origin}]" if self.several_origins else self.projector

    @property
    def slug(self) -> str:
        text = f"{self.projector}_{self.origin}" if self.several_origins else self.projector
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def ablation_groups(results: pd.DataFrame) -> list[AblationGroup]:
    """(run, projector) pairs with at least two (scale_factor, patch_num) configs: the ones an ablation
    grid is for. Grids never mix runs, so a cell is never filled from another experiment."""
    info = row_info(results)
    counts = info.groupby(["origin", "projector"])[["scale_factor", "patch_num"]].apply(
        lambda g: len(g.drop_duplicates())
    )
    several = info["origin"].nunique() > 1
    return [AblationGroup(str(o), str(p), several) for o, p in sorted(counts[counts >= 2].index)]


def ablation_grid(results: pd.DataFrame, group: AblationGroup, column: ScoreColumn) -> pd.DataFrame:
    """Rows scale_factor, columns patch_num (labels "n/a" when unset), cells the reported value, None
    when not reported, "failed" when the cell failed, or "<k> seeds" when several seeds share the cell."""
    wide = pivot_values(results)
    info = row_info(results)
    rows = info[(info["origin"] == group.origin) & (info["projector"] == group.projector)]
    scales, patches = _sorted_axis(rows["scale_factor"]), _sorted_axis(rows["patch_num"])
    grid = pd.DataFrame(
        index=[_axis_label(s) for s in scales], columns=[_axis_label(p) for p in patches], dtype=object
    )
    cells: dict[tuple[str, str], list[str]] = {}
    for label in rows.index:
        key = (_axis_label(rows.at[label, "scale_factor"]), _axis_label(rows.at[label, "patch_num"]))
        cells.setdefault(key, []).append(label)
    failed = failed_tasks(results)
    for (scale, patch), labels in cells.items():
        if len(labels) == 1:
            grid.at[scale, patch] = _score_cell(wide, failed, labels[0], column.task, column.metric)
        else:
            grid.at[scale, patch] = f"{len(labels)} seeds"
    return grid.astype(object).where(grid.notna(), None)


def grid_has_values(grid: pd.DataFrame) -> bool:
    """Whether any cell of an ablation grid holds a reported number (else the grid is not worth showing)."""
    return any(isinstance(v, float) for v in grid.to_numpy().ravel())


def ablation_tables(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> list[Table]:
    """scale_factor x patch_num grids, one per (ablation group, score column)."""
    tables = []
    for group in ablation_groups(results):
        for column in columns:
            grid = ablation_grid(results, group, column)
            if not grid_has_values(grid):
                continue
            tables.append(
                Table(
                    name=f"ablation_{group.slug}_{column.slug}",
                    title=f"{group.title}: {column.label} over scale_factor x patch_num",
                    columns=("scale_factor \\ patch_num", *(f"N={p}" for p in grid.columns)),
                    rows=tuple((f"s={scale}", *grid.loc[scale]) for scale in grid.index),
                    notes=(
                        f"Values as in the results files; {GAP} : not run or not reported; n/a: not set; "
                        f"{FAILED_CELL}: the cell failed; "
                        "'k seeds': several seeds share the cell, see the main table.",
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
            scores = [value_at(wide, label, c.task, c.metric) for c in columns]
            rows.append((budget, group.at[label, "projector"], label, *scores))
    if not rows:
        return None
    return Table(
        name="equal_budget",
        title="Projectors at equal visual-token budget",
        columns=(EFFICIENCY_LABELS[VISUAL_TOKENS], "Projector", CONFIG_HEADER, *(c.label for c in columns)),
        rows=tuple(rows),
        notes=(
            "Only budgets reached by at least two projectors; values as in the results files; — : not reported.",
        ),
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
        rows=tuple(
            tuple(None if pd.isna(v) else str(v) for v in row) for row in unique.itertuples(index=False)
        ),
    )


def all_scores_table(results: pd.DataFrame) -> Table:
    """Every record, one line each: the audit trail from table cell back to file."""
    rows = []
    for record in results.sort_values(["row_label", "task", "metric"], kind="stable").itertuples(index=False):
        rows.append(
            (
                record.row_label,
                record.task,
                record.metric,
                record.status,
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
        columns=(
            CONFIG_HEADER,
            "task",
            "metric",
            "status",
            "value",
            "stderr",
            "n",
            "git commit",
            "source file",
        ),
        rows=tuple(rows),
        uniform_decimals=False,
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
        versions = sorted(
            {_lmms_eval_version(str(text)) for text in group["package_versions"].dropna()} - {None}
        )
        suite = sorted(str(v) for v in group["suite_version"].dropna().unique())
        commits = sorted(str(v) for v in group["git_commit"].dropna().unique())
        kind = "lmms-eval results" if str(source).endswith("_results.json") else "suite results table"
        rows.append(
            (
                Path(str(source)).name,
                kind,
                ", ".join(suite) or None,
                ", ".join(str(v) for v in versions) or None,
                ", ".join(commits) or None,
                int(group["row_label"].nunique()),
                str(source),
            )
        )
    return Table(
        name="inputs",
        title="Inputs",
        columns=("file", "kind", "suite version", "lmms-eval version", "git commit", "configs", "path"),
        rows=tuple(rows),
    )


def sample_record(results: pd.DataFrame, label: str, column: ScoreColumn) -> tuple[float, str | None] | None:
    """(value, samples file) of a config's successful record for a column, or None."""
    ok = reported(results)
    match = ok[(ok["row_label"] == label) & (ok["task"] == column.task) & (ok["metric"] == column.metric)]
    if match.empty:
        return None
    record = match.iloc[0]
    return float(record["value"]), None if pd.isna(record["samples_file"]) else str(record["samples_file"])


class _SampleCache:
    """Unit scores by (file, metric), read once; each checked to make the reported value."""

    def __init__(self) -> None:
        self._scores: dict[tuple[str, str], SampleScores | str] = {}

    def scores(self, samples_file: str | None, column: ScoreColumn, reported: float) -> SampleScores | str:
        """The scores, or the reason there are none (a string shown in the table)."""
        if samples_file is None:
            return "no per-sample log"
        key = (samples_file, column.metric)
        if key not in self._scores:
            try:
                scores = read_sample_scores(Path(samples_file), column.metric)
                check_reported_matches(scores, reported)
                self._scores[key] = scores
            except ScoresUnavailable as exc:
                self._scores[key] = str(exc)
        return self._scores[key]


def interval_table(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Table:
    """95% percentile-bootstrap CI of each score from its per-sample log; n/a with the reason otherwise."""
    cache = _SampleCache()
    rows = []
    for label in row_info(results).index:
        for column in columns:
            record = sample_record(results, label, column)
            if record is None:
                continue
            value, samples_file = record
            scores = cache.scores(samples_file, column, value)
            try:
                if isinstance(scores, str):
                    raise ScoresUnavailable(scores)
                interval = score_interval(scores, value, resamples=resamples, seed=seed)
            except ScoresUnavailable as exc:
                rows.append((label, column.label, value, None, "n/a", "n/a", str(exc)))
                continue
            rows.append((label, column.label, value, interval.n, interval.low, interval.high, ""))
    return Table(
        name="uncertainty",
        title="Bootstrap 95% confidence intervals from per-sample logs",
        columns=(CONFIG_HEADER, "benchmark", "value", "n", "CI low", "CI high", "note"),
        rows=tuple(rows),
        uniform_decimals=False,
        notes=(
            f"Percentile bootstrap (scipy.stats.bootstrap), {resamples} resamples, seed {seed}, over the units a "
            "benchmark scores (n): samples for a mean (accuracy), questions with all their rotations for MMBench's "
            "circular accuracy, images within each category for MME's summed score. The value column is the reported "
            "one, and an interval is given only when the units make it.",
            PRECISION_NOTE,
        ),
    )


def paired_table(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    *,
    baseline: str,
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> Table | None:
    """Each config against the baseline on the units both scored (metrics the units make); None without a baseline."""
    info = row_info(results)
    base = resolve_baseline(info, baseline)
    if base is None:
        return None
    cache = _SampleCache()
    rows = []
    for label in info.index.drop(base):
        for column in columns:
            record, base_record = (
                sample_record(results, label, column),
                sample_record(results, base, column),
            )
            if record is None or base_record is None:
                continue
            scores, base_scores = (
                cache.scores(record[1], column, record[0]),
                cache.scores(base_record[1], column, base_record[0]),
            )
            try:
                for reason in (scores, base_scores):
                    if isinstance(reason, str):
                        raise ScoresUnavailable(reason)
                test = paired_test(
                    scores, base_scores, resamples=resamples, permutations=permutations, seed=seed
                )
            except ScoresUnavailable as exc:
                rows.append((label, column.label, None, None, "n/a", "n/a", "n/a", str(exc)))
                continue
            rows.append((label, column.label, test.n, test.difference, test.low, test.high, test.p_value, ""))
    return Table(
        name="paired_tests",
        title=f"Paired comparison against {base} on shared units",
        columns=(CONFIG_HEADER, "benchmark", "n pairs", "difference", "CI low", "CI high", "p", "note"),
        rows=tuple(rows),
        notes=(
            f"difference = the benchmark's statistic (a mean, or MME's sum of category means) of (config - {base}) "
            "over the units both scored (samples, MMBench questions, MME images); 95% paired percentile-bootstrap CI "
            f"({resamples} resamples); p: two-sided sign-flip permutation test (scipy.stats.permutation_test, "
            f"{permutations} permutations or exact when fewer suffice), seed {seed}.",
            PRECISION_NOTE,
        ),
    )
