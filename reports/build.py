"""`build_report`: results files in, a folder of tables, plots and a report page out.

Everything is read and checked before anything is written, and the report is built in a staging
folder beside `out_dir` that replaces `out_dir` only when complete: an error never leaves a
half-written report behind (a previous report in `out_dir` stays as it was).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from tqdm import tqdm

from evaluation.records import EFFICIENCY_TASK
from reports.errors import ReportInputError
from reports.load import load_results
from reports.page import REPORT_HTML, REPORT_MARKDOWN, FigureEntry, Section, TableEntry, write_page
from reports.plots import (
    plot_benchmark_bars,
    plot_heatmap,
    plot_score_vs_cost,
    plot_shares_vs_tokens,
    save_figure,
)
from reports.question_types import question_type_interval_table, question_type_table, type_shares
from reports.reference import QuotedRow, read_reference
from reports.render import Table, write_table
from reports.scores import (
    EFFICIENCY_LABELS,
    TFLOPS_7B,
    TTFT_MS,
    VISUAL_TOKENS,
    ScoreColumn,
    chance_levels,
    higher_is_better,
    pivot_values,
    row_info,
    score_columns,
    value_at,
)
from reports.tables import (
    ablation_grid,
    ablation_groups,
    ablation_tables,
    all_scores_table,
    equal_budget_table,
    failures_table,
    grid_has_values,
    inputs_table,
    interval_table,
    main_table,
    paired_table,
    reference_table,
)
from reports.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED

REPORT_TITLE = "TokenPacker evaluation report"
COST_AXES = (VISUAL_TOKENS, TFLOPS_7B, TTFT_MS)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output folder that holds something other than an earlier report (it would be replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportInputError(f"--out {out_dir}: is a file; pass a folder for the report")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / REPORT_MARKDOWN).is_file():
        raise ReportInputError(
            f"--out {out_dir}: folder is not empty and holds no earlier report ({REPORT_MARKDOWN}); "
            "pass a new or empty folder, since the report replaces the folder's contents"
        )


def _publish(staging: Path, out_dir: Path) -> None:
    """Move the finished report into place, replacing an earlier report in `out_dir`."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    retired = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old."))
    out_dir.rename(retired / out_dir.name)
    try:
        staging.rename(out_dir)
    except OSError:
        (retired / out_dir.name).rename(out_dir)  # put the earlier report back
        raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _cost_points(results: pd.DataFrame, column: ScoreColumn, cost: str) -> pd.DataFrame:
    """Configs with both a reported score and a reported cost: columns label, projector, x, y."""
    wide = pivot_values(results)
    info = row_info(results)
    points = [
        (
            label,
            info.at[label, "projector"],
            value_at(wide, label, EFFICIENCY_TASK, cost),
            value_at(wide, label, column.task, column.metric),
        )
        for label in info.index
    ]
    frame = pd.DataFrame(points, columns=["label", "projector", "x", "y"])
    return frame.dropna().reset_index(drop=True)


@dataclass(frozen=True)
class FigureJob:
    """A figure to draw: planned first, so the progress bar knows the total."""

    title: str
    stem: str  # file name without suffix
    draw: Callable[[], Figure]


class _ReportWriter:
    """Writes tables and figures into one staging folder, advancing one progress bar."""

    def __init__(self, root: Path, progress: tqdm) -> None:
        self.root = root
        self.progress = progress

    def tables(self, tables: Sequence[Table | None]) -> tuple[TableEntry, ...]:
        entries = tuple(TableEntry(t, write_table(t, self.root / "tables")) for t in tables if t is not None)
        self.progress.update(1)
        return entries

    def figures(self, jobs: Sequence[FigureJob]) -> tuple[FigureEntry, ...]:
        entries = []
        for job in jobs:
            self.progress.set_postfix_str(job.stem[:40])
            entries.append(FigureEntry(job.title, save_figure(job.draw(), self.root / "plots", job.stem)))
            self.progress.update(1)
        return tuple(entries)


def _cost_jobs(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> tuple[list[FigureJob], list[str]]:
    """Score-vs-cost scatter plots, and a note for each pair with fewer than two points."""
    jobs, skipped = [], []
    for column in columns:
        for cost in COST_AXES:
            points = _cost_points(results, column, cost)
            if len(points) < 2:
                skipped.append(
                    f"Not plotted: {column.label} vs {EFFICIENCY_LABELS[cost]}: fewer than two configs report both."
                )
                continue
            draw = partial(
                plot_score_vs_cost,
                points,
                x_label=EFFICIENCY_LABELS[cost],
                y_label=column.label,
                higher_is_better=higher_is_better(results, column),
            )
            title = f"{column.label} vs {EFFICIENCY_LABELS[cost]} (dashed: Pareto front)"
            jobs.append(FigureJob(title, f"{column.slug}_vs_{cost}", draw))
    return jobs, skipped


def _heatmap_jobs(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> list[FigureJob]:
    """A scale_factor x patch_num heatmap per (ablation group, score column) with any reported value."""
    jobs = []
    for group in ablation_groups(results):
        for column in columns:
            grid = ablation_grid(results, group, column)
            if not grid_has_values(grid):
                continue
            title = f"{group.title}: {column.label}"
            draw = partial(plot_heatmap, grid, title=title, row_name="scale_factor", column_name="patch_num")
            jobs.append(
                FigureJob(
                    f"{title} over scale_factor x patch_num", f"heatmap_{group.slug}_{column.slug}", draw
                )
            )
    return jobs


def _bars_job(results: pd.DataFrame, columns: Sequence[ScoreColumn]) -> list[FigureJob]:
    """Grouped bars of every score column, when any config reports a score."""
    values = (
        pivot_values(results)
        .reindex(columns=[(c.task, c.metric) for c in columns])
        .reindex(row_info(results).index)
    )
    if values.isna().all().all():
        return []
    chance = chance_levels(results)
    draw = partial(
        plot_benchmark_bars,
        values,
        benchmark_labels=[c.label for c in columns],
        chance=[chance.get(c) for c in columns],
    )
    return [FigureJob("Scores per benchmark and config (dotted: chance level)", "benchmarks", draw)]


def _question_type_jobs(shares: pd.DataFrame) -> tuple[list[FigureJob], list[str]]:
    """The per-type figure, when two or more configs with typed logs report their visual tokens;
    else the note why it is not drawn."""
    if shares.empty:
        return [], ["No per-sample log gives question types."]
    if shares.dropna(subset=["tokens"])["label"].nunique() < 2:
        return [], ["Not plotted: fewer than two configs with question types report their visual tokens."]
    draw = partial(plot_shares_vs_tokens, shares)
    return [FigureJob("Share right per question type vs visual tokens", "question_types_vs_tokens", draw)], []


TABLE_STEPS = 5  # the writer.tables calls in _write_report


def _write_report(
    root: Path,
    results: pd.DataFrame,
    quoted: Sequence[QuotedRow],
    benchmarks: Sequence[str],
    reference_name: str,
    *,
    baseline: str,
    resamples: int,
    seed: int,
) -> None:
    columns = score_columns(results, primary_only=True)
    all_columns = score_columns(results, primary_only=False)
    cost_jobs, skipped = _cost_jobs(results, columns)
    heatmap_jobs, bars_job = _heatmap_jobs(results, columns), _bars_job(results, columns)
    shares = type_shares(results, columns, resamples=resamples, seed=seed)
    type_jobs, type_notes = _question_type_jobs(shares)
    total = TABLE_STEPS + len(cost_jobs) + len(heatmap_jobs) + len(bars_job) + len(type_jobs)
    with tqdm(total=total, desc="report", unit="step") as progress:
        writer = _ReportWriter(root, progress)
        main = main_table(results, columns, quoted, baseline=baseline, reference_name=reference_name)
        reference = reference_table(quoted, benchmarks, reference_name) if quoted else None
        sections = [
            Section("Main table", writer.tables([main, reference])),
            Section("Accuracy vs efficiency", figures=writer.figures(cost_jobs), notes=tuple(skipped)),
            Section(
                "Accuracy per question type",
                writer.tables([question_type_table(shares), question_type_interval_table(shares)]),
                figures=writer.figures(type_jobs),
                notes=tuple(type_notes),
            ),
        ]
        ablations = ablation_tables(results, columns)
        sections.append(
            Section(
                "Ablations",
                tables=writer.tables([*ablations, equal_budget_table(results, columns)]),
                figures=writer.figures(heatmap_jobs),
                notes=()
                if ablations
                else ("No projector has two or more (scale_factor, patch_num) configs.",),
            )
        )
        if bars_job:
            sections.append(Section("Per-benchmark scores", figures=writer.figures(bars_job)))
        uncertainty = [
            interval_table(results, columns, resamples=resamples, seed=seed),
            paired_table(results, columns, baseline=baseline, resamples=resamples, seed=seed),
        ]
        sections.append(Section("Uncertainty", writer.tables(uncertainty)))
        sections.append(
            Section(
                "Inputs and audit",
                writer.tables([inputs_table(results), failures_table(results), all_scores_table(results)]),
                notes=(
                    f"{len(all_columns)} (task, metric) pairs in the inputs; the main table shows {len(columns)}.",
                ),
            )
        )
        write_page(root, REPORT_TITLE, sections)


def build_report(
    inputs: Sequence[Path],
    out_dir: Path,
    *,
    reference_csv: Path | None,
    baseline: str = "mlp2x_gelu",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Path:
    """Read results (suite tables and/or lmms-eval folders), write tables (md/tex/csv), plots (png/pdf),
    report.md and index.html into `out_dir`; returns the path of index.html.

    `baseline` names the reference row: a projector with exactly one config, or a row label.
    `reference_csv` holds quoted paper numbers printed beside the measured rows (None: none).
    Raises ReportInputError for unusable input; `out_dir` is then left as it was.
    """
    out_dir = Path(out_dir).resolve()
    check_out_dir(out_dir)
    results = load_results(inputs)
    quoted, benchmarks = read_reference(reference_csv) if reference_csv is not None else ([], [])
    reference_name = reference_csv.name if reference_csv is not None else ""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.staging."))
    staging.chmod(0o755)  # mkdtemp makes it private; the report is meant to be read and served
    try:
        _write_report(
            staging,
            results,
            quoted,
            benchmarks,
            reference_name,
            baseline=baseline,
            resamples=resamples,
            seed=seed,
        )
        _publish(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir / REPORT_HTML
