"""Figures for a paper column (3.3 in wide, text >= 7 pt), saved as PNG and PDF.

Uses `matplotlib.figure.Figure` directly, never pyplot, so no backend or global figure state is
touched; style settings are applied in a local `rc_context`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports.render import GAP, column_decimals, format_cell

COLUMN_WIDTH_IN = 3.3
PAGE_WIDTH_IN = 6.8
MIN_FONT_PT = 7
PAPER_STYLE = {
    "font.size": MIN_FONT_PT,
    "axes.titlesize": 8,
    "axes.labelsize": MIN_FONT_PT,
    "xtick.labelsize": MIN_FONT_PT,
    "ytick.labelsize": MIN_FONT_PT,
    "legend.fontsize": MIN_FONT_PT,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "pdf.fonttype": 42,
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
PNG_DPI = 200  # 660 px across at column width: sharp on screen; the PDF is the print version


def pareto_mask(x: np.ndarray, y: np.ndarray, *, higher_is_better: bool = True) -> np.ndarray:
    """True for points no other point beats: lower or equal cost `x` and strictly better score `y`."""
    x = np.asarray(x, dtype=float)
    score = np.asarray(y, dtype=float) * (1.0 if higher_is_better else -1.0)
    order = np.lexsort((-score, x))  # by cost, best score first among equal costs
    best_before = np.maximum.accumulate(np.concatenate(([-np.inf], score[order][:-1])))
    mask = np.zeros(len(x), dtype=bool)
    mask[order] = score[order] > best_before
    return mask


def plot_score_vs_cost(
    points: pd.DataFrame, *, x_label: str, y_label: str, higher_is_better: bool = True
) -> Figure:
    """Scatter of score against a cost, one marker per projector, each point labelled, Pareto front drawn.

    `points` has columns: label (config), projector, x, y (all finite).
    """
    with matplotlib.rc_context(PAPER_STYLE):
        figure = Figure(figsize=(COLUMN_WIDTH_IN, 2.5), layout="constrained")
        axes = figure.add_subplot()
        for index, (projector, group) in enumerate(points.groupby("projector", sort=True)):
            axes.scatter(
                group["x"],
                group["y"],
                marker=MARKERS[index % len(MARKERS)],
                s=22,
                label=str(projector),
                zorder=3,
            )
        for row in points.itertuples(index=False):
            short = str(row.label).removeprefix(str(row.projector)).strip(" ()") or str(row.label)
            axes.annotate(
                short, (row.x, row.y), xytext=(3, 3), textcoords="offset points", fontsize=MIN_FONT_PT
            )
        front = points[
            pareto_mask(points["x"].to_numpy(), points["y"].to_numpy(), higher_is_better=higher_is_better)
        ]
        front = front.sort_values("x")
        axes.plot(
            front["x"],
            front["y"],
            drawstyle="steps-post",
            color="0.3",
            linewidth=0.9,
            linestyle="--",
            label="Pareto front",
            zorder=2,
        )
        axes.scatter(
            front["x"], front["y"], s=70, facecolors="none", edgecolors="0.2", linewidths=0.8, zorder=4
        )
        if points["x"].min() > 0 and points["x"].max() / points["x"].min() > 8:
            axes.set_xscale("log")
        axes.set_xlabel(x_label)
        axes.set_ylabel(y_label)
        axes.grid(alpha=0.3, linewidth=0.5)
        axes.legend(loc="best", frameon=False)
    return figure


def plot_heatmap(grid: pd.DataFrame, *, title: str, row_name: str, column_name: str) -> Figure:
    """Heatmap of reported values. Cells are numbers, None (grey, printed as a gap, never as 0) or
    text such as "2 seeds" (grey, printed as is)."""
    cells = grid.to_numpy(dtype=object)
    values = np.array(
        [[v if isinstance(v, float | int) else np.nan for v in row] for row in cells], dtype=float
    )
    finite = values[np.isfinite(values)]
    decimals = column_decimals(float(v) for v in finite)
    middle = (finite.min() + finite.max()) / 2 if finite.size else 0.0
    with matplotlib.rc_context(PAPER_STYLE):
        figure = Figure(figsize=(COLUMN_WIDTH_IN, 2.4), layout="constrained")
        axes = figure.add_subplot()
        colormap = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")
        image = axes.imshow(np.ma.masked_invalid(values), cmap=colormap, aspect="auto")
        for (i, j), cell in np.ndenumerate(cells):
            number = values[i, j]
            text = (
                cell
                if isinstance(cell, str)
                else GAP
                if np.isnan(number)
                else format_cell(float(number), decimals)
            )
            color = "black" if np.isnan(number) or number > middle else "white"
            axes.text(j, i, text, ha="center", va="center", fontsize=MIN_FONT_PT, color=color)
        axes.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
        axes.set_yticks(range(len(grid.index)), [str(r) for r in grid.index])
        axes.set_xlabel(column_name)
        axes.set_ylabel(row_name)
        axes.set_title(title)
        figure.colorbar(image, ax=axes, shrink=0.9)
    return figure


def plot_benchmark_bars(
    values: pd.DataFrame, *, benchmark_labels: Sequence[str], chance: Sequence[float | None] = ()
) -> Figure:
    """One panel per benchmark (own y scale, since units differ), one bar per config in the same place
    in every panel; gaps are marked, never drawn as 0. `chance` (per benchmark, None = unknown) draws
    a dotted line at the chance level."""
    configs = [str(label) for label in values.index]
    count = len(benchmark_labels)
    chance = list(chance) or [None] * count
    columns = 1 if count == 1 else 2 if count <= 4 else 3
    rows = -(-count // columns)
    width = COLUMN_WIDTH_IN if columns == 1 else PAGE_WIDTH_IN
    legend_columns = 1 if columns == 1 else 2
    legend_height = 0.16 * -(-len(configs) // legend_columns) + 0.1
    colors = [matplotlib.colormaps["tab10"](i % 10) for i in range(len(configs))]
    with matplotlib.rc_context(PAPER_STYLE):
        figure = Figure(figsize=(width, 1.6 * rows + legend_height), layout="constrained")
        panels = figure.subplots(rows, columns, squeeze=False).ravel()
        positions = np.arange(len(configs))
        for axes, benchmark, column, level in zip(
            panels, benchmark_labels, values.columns, chance, strict=False
        ):
            heights = values[column].to_numpy(dtype=float)
            present = np.isfinite(heights)
            axes.bar(
                positions[present],
                heights[present],
                color=[c for c, p in zip(colors, present, strict=True) if p],
            )
            for position in positions[~present]:
                axes.text(position, 0, GAP, ha="center", va="bottom", fontsize=MIN_FONT_PT)
            if level is not None:
                axes.axhline(level, color="0.2", linestyle=":", linewidth=0.9)
            axes.set_xlim(-0.6, len(configs) - 0.4)
            axes.set_title(benchmark)
            axes.set_xticks([])
            axes.grid(axis="y", alpha=0.3, linewidth=0.5)
        for axes in panels[count:]:
            axes.set_visible(False)
        handles = [Patch(color=c, label=label) for c, label in zip(colors, configs, strict=True)]
        figure.legend(handles=handles, loc="outside lower center", ncols=legend_columns, frameon=False)
    return figure


def save_figure(figure: Figure, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write <stem>.png (`PNG_DPI`) and <stem>.pdf; returns {"png": path, "pdf": path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"png": out_dir / f"{stem}.png", "pdf": out_dir / f"{stem}.pdf"}
    for path in paths.values():
        figure.savefig(path, dpi=PNG_DPI)
    return paths


def plot_shares_vs_tokens(shares: pd.DataFrame) -> Figure:
    """One panel per typed benchmark: share right against visual tokens, a line per config family
    (a projector; a family of one config, such as the baseline, is a marker). `shares` as
    question_types.type_shares, rows without tokens left out."""
    shares = shares.dropna(subset=["tokens"])
    benchmarks = sorted(set(shares["benchmark"]))  # the per-type table's column order
    columns = min(3, len(benchmarks))
    rows = -(-len(benchmarks) // columns)
    families = sorted(shares["family"].unique())
    with matplotlib.rc_context(PAPER_STYLE):
        figure = Figure(figsize=(PAGE_WIDTH_IN, 1.6 * rows + 0.3), layout="constrained")
        panels = figure.subplots(rows, columns, squeeze=False).ravel()
        for axes, benchmark in zip(panels, benchmarks, strict=False):
            for index, family in enumerate(families):
                points = shares[(shares["benchmark"] == benchmark) & (shares["family"] == family)]
                points = points.sort_values("tokens")
                axes.plot(
                    points["tokens"], points["share"], marker=MARKERS[index % len(MARKERS)], markersize=3,
                    linewidth=0.9, label=family,
                )  # fmt: skip
            if shares["tokens"].min() > 0 and shares["tokens"].max() / shares["tokens"].min() > 8:
                axes.set_xscale("log")
            axes.set_ylim(-0.03, 1.03)
            axes.set_title(benchmark)
            axes.set_xlabel("visual tokens")
            axes.grid(alpha=0.3, linewidth=0.5)
        for axes in panels[len(benchmarks) :]:
            axes.set_visible(False)
        handles, labels = panels[0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(families), frameon=False)
    return figure
