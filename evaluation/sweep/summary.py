"""What a sweep prints at the end: a short results table, the per-stage timings, and the dry-run listing."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from evaluation.sweep.runner import STAGE_TIMINGS
from evaluation.sweep.spec import CellConfig

SHOWN_EFFICIENCY = {"visual_tokens": "tokens", "prefill_tflops_7b": "TFLOPs@7B"}
MISSING = "-"


def results_overview(results: pd.DataFrame) -> str:
    """One row per cell: status, visual tokens, 7B prefill TFLOPs, and the first metric of each task."""
    if results.empty:
        return "(no finished cells yet)"
    scores = results[(results["task"] != EFFICIENCY_TASK) & (results["status"] == "ok")]
    first_metric = scores.drop_duplicates("task").set_index("task")["metric"]
    shown = pd.concat(
        [
            results[(results["task"] == EFFICIENCY_TASK) & results["metric"].isin(list(SHOWN_EFFICIENCY))],
            scores[scores["metric"].to_numpy() == first_metric.reindex(scores["task"]).to_numpy()],
        ]
    )
    column = [
        SHOWN_EFFICIENCY.get(m, t) if t == EFFICIENCY_TASK else t
        for t, m in zip(shown["task"], shown["metric"], strict=True)
    ]
    wide = shown.assign(column=column).pivot_table(
        index="cell_id", columns="column", values="value", aggfunc="first", sort=False
    )
    status = results.groupby("cell_id", sort=False)["status"].first()
    order = [c for c in [*SHOWN_EFFICIENCY.values(), *first_metric.index] if c in wide.columns]
    table = wide.reindex(index=status.index, columns=order).rename_axis(index="cell", columns=None)
    table.insert(0, "status", status)
    text = table.to_string(na_rep=MISSING, float_format=lambda v: f"{v:.3g}")
    legend = ", ".join(f"{task}: {metric}" for task, metric in first_metric.items())
    return f"{text}\nscores: {legend}" if legend else text


def timings_table(this_run: Mapping[str, float], results: pd.DataFrame) -> str:
    """Seconds per stage: spent in this run, and as recorded in the results (the work the table stands on)."""
    recorded = recorded_timings(results)
    rows = [
        (
            name.removesuffix("_s"),
            f"{this_run.get(name, 0.0):.1f}",
            f"{recorded[name]:.1f}" if name in recorded else MISSING,
        )
        for name in STAGE_TIMINGS
    ]
    frame = pd.DataFrame(rows, columns=["stage", "this run (s)", "recorded (s)"])
    return frame.to_string(index=False)


def recorded_timings(results: pd.DataFrame) -> dict[str, float]:
    """Sum over cells of each stage's recorded seconds (generation, pretraining and report are per sweep, counted once)."""
    totals: dict[str, float] = {}
    for raw in results.drop_duplicates("cell_id")["timings_json"]:
        for name, seconds in json.loads(raw).items():
            if name in ("generation_s", "pretraining_s", "report_s"):
                totals[name] = float(seconds)
            elif name in STAGE_TIMINGS:
                totals[name] = totals.get(name, 0.0) + float(seconds)
    return totals


def dry_run_listing(statuses: Sequence[tuple[CellConfig, str]], selected: Sequence[CellConfig]) -> str:
    """The cells, what each does, what is already done, and whether the next run would run it."""
    chosen = {cell.cell_id for cell in selected}
    rows = [
        (
            cell.cell_id,
            "train+evaluate" if cell.trains else "evaluate checkpoint",
            status,
            "run" if cell.cell_id in chosen and status != "done" else "skip",
        )
        for cell, status in statuses
    ]
    frame = pd.DataFrame(rows, columns=["cell", "does", "status", "next run"])
    done = sum(status == "done" for _, status in statuses)
    to_run = sum(row[3] == "run" for row in rows)
    return f"{left_aligned(frame)}\n{done} of {len(statuses)} cells done; the next run runs {to_run}"


def left_aligned(frame: pd.DataFrame) -> str:
    """A text table with every column left-aligned (ids and messages read better that way)."""
    widths = {c: max(len(str(c)), *(len(str(v)) for v in frame[c])) for c in frame.columns}
    formatters = {c: (lambda v, w=w: str(v).ljust(w)) for c, w in widths.items()}
    return frame.to_string(index=False, justify="left", formatters=formatters)
