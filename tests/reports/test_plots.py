"""Figures: the Pareto front on known points, and every figure is written, legible in size and not blank."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from reports.plots import (
    COLUMN_WIDTH_IN,
    PNG_DPI,
    pareto_mask,
    plot_benchmark_bars,
    plot_heatmap,
    plot_score_vs_cost,
    save_figure,
)


def _pixel_spread(path: Path) -> float:
    return float(np.asarray(matplotlib.image.imread(path))[..., :3].std())


def test_pareto_front_on_known_points() -> None:
    cost = np.array([1.0, 2.0, 3.0, 2.0, 4.0])
    score = np.array([0.5, 0.6, 0.55, 0.4, 0.7])
    assert pareto_mask(cost, score).tolist() == [True, True, False, False, True]


def test_pareto_front_when_lower_is_better() -> None:
    assert pareto_mask(np.array([1.0, 2.0]), np.array([0.3, 0.1]), higher_is_better=False).tolist() == [
        True,
        True,
    ]
    assert pareto_mask(np.array([1.0, 2.0]), np.array([0.1, 0.3]), higher_is_better=False).tolist() == [
        True,
        False,
    ]


@pytest.mark.parametrize(
    "draw",
    [
        lambda: plot_score_vs_cost(
            pd.DataFrame(
                {
                    "label": ["a (s=2)", "a (s=4)", "b"],
                    "projector": ["a", "a", "b"],
                    "x": [144, 36, 576],
                    "y": [0.6, 0.55, 0.62],
                }
            ),
            x_label="Visual tokens",
            y_label="GQA",
        ),
        lambda: plot_heatmap(
            pd.DataFrame(
                [[0.6, None], ["2 seeds", 0.5]], index=["2", "4"], columns=["9", "n/a"], dtype=object
            ),
            title="t",
            row_name="scale_factor",
            column_name="patch_num",
        ),
        lambda: plot_benchmark_bars(
            pd.DataFrame({("gqa", "em"): [0.6, np.nan], ("mme", "p"): [1500.0, 1400.0]}, index=["a", "b"]),
            benchmark_labels=["GQA", "MME-P"],
            chance=[0.5, None],
        ),
    ],
    ids=["scatter", "heatmap", "bars"],
)
def test_figure_is_written_at_column_width_and_not_blank(tmp_path: Path, draw) -> None:
    paths = save_figure(draw(), tmp_path, "figure")
    assert paths["pdf"].read_bytes().startswith(b"%PDF")
    image = matplotlib.image.imread(paths["png"])
    assert image.shape[1] >= COLUMN_WIDTH_IN * PNG_DPI - 2  # at least a paper column wide
    assert _pixel_spread(paths["png"]) > 0.05


def test_report_plots_are_not_blank(built_report: Path) -> None:
    pngs = sorted((built_report / "plots").glob("*.png"))
    names = {path.stem for path in pngs}
    assert {
        "gqa__exact_match_vs_visual_tokens",
        "gqa__exact_match_vs_prefill_tflops_7b",
        "gqa__exact_match_vs_ttft_ms",
    } <= names
    assert {"heatmap_tokenpacker_suite_gqa__exact_match", "benchmarks"} <= names
    for png in pngs:
        assert png.with_suffix(".pdf").is_file()
        assert _pixel_spread(png) > 0.05, png.name
