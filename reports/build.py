"""`build_report`: results files in, a folder of tables, plots and a report page out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from reports.load import load_results
from reports.page import FigureEntry, Section, TableEntry, write_page
from reports.plots import plot_benchmark_bars, plot_heatmap, plot_score_vs_cost, save_figure
from reports.reference import read_reference
from reports.render import Table, write_table
from reports.scores import (
    EFFICIENCY_LABELS,
    TFLOPS_7B,
    TTFT_MS,
    VISUAL_TOKENS,
    ScoreColumn,
    higher_is_better,
    pivot_values,
    row_info,
    score_columns,
    value_at,
)
from reports.tables import (
    ablation_grid,
    ablation_projectors,
    ablation_tables,
    all_scores_table,
    equal_budget_table,
    failures_table,
    inputs_table,
    interval_table,
    main_table,
    paired_table,
    reference_table,
)
from reports.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED

REPORT_TITLE = "TokenPacker evaluation report"
COST_AXES = (VISUAL_TOKENS, TFLOPS_7B, TTFT_MS)


def _tables(tables: Sequence[Table | None], out_dir: Path) -> tuple[TableEntry, ...]:
    return tuple(TableEntry(table, write_table(table, out_dir)) for table in tables if table is not None)


def _cost_points(results: pd.DataFrame, column: ScoreColumn, cost: str) -> pd.DataFrame:
    """Configs with both a reported score and a reported cost: columns label, projector, x, y."""
    wide = pivot_values(results)
    info = row_info(results)
    points = [
        (label, info.at[label, "projector"], value_at(wide, label, EFFICIENCY_TASK, cost), value_at(wide, label, column.task, column.metric))
        for label in info.index
    ]
    frame = pd.DataFrame(points, columns=["label", "projector", "x", "y"])
    return frame.dropna().reset_index(drop=True)


def _cost_figures(results: pd.DataFrame, columns: Sequence[ScoreColumn], plots_dir: Path) -> tuple[list[FigureEntry], list[str]]:
    figures, skipped = [], []
    for column in columns:
        for cost in COST_AXES:
            points = _cost_points(results, column, cost)
            if len(points) < 2:
                skipped.append(f"{column.label} vs {EFFICIENCY_LABELS[cost]}: fewer than two configs report both")
                continue
            figure = plot_score_vs_cost(
                points, x_label=EFFICIENCY_LABELS[cost], y_label=column.label, higher_is_better=higher_is_better(results, column)
            )
            files = save_figure(figure, plots_dir, f"{column.slug}_vs_{cost}")
            figures.append(FigureEntry(f"{column.label} vs {EFFICIENCY_LABELS[cost]} (dashed: Pareto front)", files))
    return figures, skipped


def _heatmaps(results: pd.DataFrame, columns: Sequence[ScoreColumn], plots_dir: Path) -> list[FigureEntry]:
    figures = []
    for projector in ablation_projectors(results):
        for column in columns:
            grid = ablation_grid(results, projector, column)
            numeric = grid.map(lambda v: float("nan") if v is None or isinstance(v, str) else float(v))
            if numeric.notna().sum().sum() == 0:
                continue
            figure = plot_heatmap(numeric, title=f"{projector}: {column.label}", row_name="scale_factor", column_name="patch_num")
            files = save_figure(figure, plots_dir, f"heatmap_{projector}_{column.slug}")
            figures.append(FigureEntry(f"{projector}: {column.label} over scale_factor x patch_num", files))
    return figures


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
    Raises ReportInputError for unusable input.
    """
    results = load_results(inputs)
    quoted, benchmarks = read_reference(reference_csv) if reference_csv is not None else ([], [])
    reference_name = reference_csv.name if reference_csv is not None else ""
    columns = score_columns(results, primary_only=True)
    out_dir = Path(out_dir)
    tables_dir, plots_dir = out_dir / "tables", out_dir / "plots"
    tables_dir.mkdir(parents=True, exist_ok=True)

    main = main_table(results, columns, quoted, baseline=baseline, reference_name=reference_name)
    sections = [
        Section(
            "Main table",
            _tables([main, reference_table(quoted, benchmarks, reference_name) if quoted else None], tables_dir),
        )
    ]

    cost_figures, skipped = _cost_figures(results, columns, plots_dir)
    sections.append(Section("Accuracy vs efficiency", figures=tuple(cost_figures), notes=tuple(f"Not plotted: {s}." for s in skipped)))

    ablations = ablation_tables(results, columns)
    sections.append(
        Section(
            "Ablations",
            tables=_tables([*ablations, equal_budget_table(results, columns)], tables_dir),
            figures=tuple(_heatmaps(results, columns, plots_dir)),
            notes=() if ablations else ("No projector has two or more (scale_factor, patch_num) configs.",),
        )
    )

    if columns:
        values = pivot_values(results).reindex(columns=[(c.task, c.metric) for c in columns])
        values = values.reindex(row_info(results).index)
        bars = plot_benchmark_bars(values, benchmark_labels=[c.label for c in columns])
        sections.append(Section("Per-benchmark scores", figures=(FigureEntry("Scores per benchmark and config", save_figure(bars, plots_dir, "benchmarks")),)))

    sections.append(
        Section(
            "Uncertainty",
            _tables(
                [
                    interval_table(results, columns, resamples=resamples, seed=seed),
                    paired_table(results, columns, baseline=baseline, resamples=resamples, seed=seed),
                ],
                tables_dir,
            ),
        )
    )
    all_columns = score_columns(results, primary_only=False)
    sections.append(
        Section(
            "Inputs and audit",
            _tables([inputs_table(results), failures_table(results), all_scores_table(results)], tables_dir),
            notes=(f"{len(all_columns)} (task, metric) pairs in the inputs; the main table shows {len(columns)}.",),
        )
    )
    _, page = write_page(out_dir, REPORT_TITLE, sections)
    return page
