"""Accuracy per question type, from lmms-eval's per-sample logs: which questions compression costs.

A benchmark's score mixes questions that pooling cannot hurt (a colour is an average over pixels,
and average pooling keeps averages) with questions that need the image's fine structure (a shape's
size, small text). Split by type, the scores show where tokens are lost. A sample's type is what its
log carries: the category of lmms-eval's own MME entries ({question_id, category, score}), or the
"question_type" the suite's GQA tasks log beside exact_match (GQA's detailed type). The value is the
share of questions answered right, over the questions of that type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.records import EFFICIENCY_TASK
from reports.render import PRECISION_NOTE, Cell, Table
from reports.scores import EFFICIENCY_LABELS, VISUAL_TOKENS, ScoreColumn, pivot_values, row_info, value_at
from reports.tables import CONFIG_HEADER, sample_record
from reports.uncertainty import DEFAULT_RESAMPLES, DEFAULT_SEED, bootstrap_ci

# evaluation.tasks.scoring.QUESTION_TYPE, not imported: that module loads lmms-eval, and reports/
# stays light (a test ties the two names)
TYPE_FIELD = "question_type"


def typed_scores(path: Path, metric: str) -> dict[str, np.ndarray]:
    """Per question type, the 0-1 scores of `metric`'s samples in a `*_samples_<task>.jsonl`; empty
    when the log carries no types, or cannot be read (the table then leaves the benchmark out)."""
    key = metric.split(",")[0]
    by_type: dict[str, list[float]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    for line in lines:
        try:
            sample = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            return {}
        if not isinstance(sample, dict) or key not in sample:
            continue
        typed = _typed_score(sample, key)
        if typed is None:
            return {}
        by_type.setdefault(typed[0], []).append(typed[1])
    return {name: np.asarray(scores) for name, scores in sorted(by_type.items())}


def _typed_score(sample: dict, key: str) -> tuple[str, float] | None:
    """(type, score) of one sample, or None when it has no type or no finite score."""
    value = sample[key]
    if isinstance(value, dict):
        question_type, score = value.get("category"), value.get("score")
    else:
        question_type, score = sample.get(TYPE_FIELD), value
    if not isinstance(question_type, str) or isinstance(score, bool) or not isinstance(score, int | float):
        return None
    return (question_type, float(score)) if math.isfinite(score) else None


SHARE_COLUMNS = ["label", "family", "tokens", "benchmark", "share", "n", "low", "high"]


def type_shares(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Long table of every typed share: columns label, family (see _family), tokens (NaN when not
    measured), benchmark ("<benchmark>: <type>"), share, n and its bootstrap 95% interval (low, high;
    NaN for one question), configs in the report's row order."""
    wide, info = pivot_values(results), row_info(results)
    rows = []
    for column in columns:
        for label in info.index:
            record = sample_record(results, label, column)
            if record is None or record[1] is None:
                continue
            for question_type, scores in typed_scores(Path(record[1]), column.metric).items():
                low, high = (
                    bootstrap_ci(scores, resamples=resamples, seed=seed)
                    if len(scores) > 1
                    else (np.nan, np.nan)
                )
                rows.append(
                    (label, _family(info.loc[label]), value_at(wide, label, EFFICIENCY_TASK, VISUAL_TOKENS),
                     f"{column.label}: {question_type}", float(scores.mean()), len(scores), low, high)
                )  # fmt: skip
    return pd.DataFrame(rows, columns=SHARE_COLUMNS)


def _family(config: pd.Series) -> str:
    """The line a config is drawn on: its projector, with TokenPacker-HD's patch_num apart, since
    HD's tokens grow with its crops, not with compression."""
    if pd.isna(config["patch_num"]):
        return str(config["projector"])
    return f"{config['projector']} HD (N={int(config['patch_num'])})"


def question_type_table(shares: pd.DataFrame) -> Table | None:
    """Configs x typed benchmarks, with their visual tokens; None when no log carries types."""
    if shares.empty:
        return None
    benchmarks = list(dict.fromkeys(shares["benchmark"]))
    grid = shares.pivot(index="label", columns="benchmark", values="share")
    tokens = shares.groupby("label", sort=False)["tokens"].first()
    rows = tuple(
        (label, _cell(tokens[label]), *(_cell(grid.at[label, b]) for b in benchmarks))
        for label in tokens.index
    )
    counts = shares.groupby("benchmark", sort=False)["n"].agg(lambda n: sorted(set(n)))
    return Table(
        name="question_types",
        title="Share of questions answered right, per question type",
        columns=(CONFIG_HEADER, EFFICIENCY_LABELS[VISUAL_TOKENS], *benchmarks),
        rows=rows,
        notes=(
            "Each benchmark's questions split by the type its per-sample log gives (MME's category, GQA's "
            "detailed type): the share answered right over that type's questions (for MME, per question, "
            "not its acc+ score). Average pooling keeps what is an average over pixels (a colour) and "
            "blurs what is spatial structure (a shape's extent, strokes of text): the split shows which "
            "questions a config's compression costs.",
            "Questions per type: "
            + "; ".join(f"{b}: {', '.join(str(n) for n in counts[b])}" for b in benchmarks)
            + ".",
            PRECISION_NOTE,
        ),
        fixed_decimals=dict.fromkeys(benchmarks, 2),
    )


def question_type_interval_table(shares: pd.DataFrame) -> Table | None:
    """Each typed share with its question count and bootstrap 95% interval; None when no log carries types."""
    if shares.empty:
        return None
    rows = tuple(
        (row.label, row.benchmark, row.share, int(row.n), _cell(row.low), _cell(row.high))
        for row in shares.itertuples(index=False)
    )
    return Table(
        name="question_type_intervals",
        title="Share right per question type, with bootstrap 95% confidence intervals",
        columns=(CONFIG_HEADER, "question type", "share", "n", "CI low", "CI high"),
        rows=rows,
        notes=(
            "Percentile bootstrap (scipy.stats.bootstrap) over the type's questions, as the uncertainty "
            "table's intervals for a mean.",
            PRECISION_NOTE,
        ),
        fixed_decimals={"share": 2, "CI low": 2, "CI high": 2},
    )


def _cell(value: object) -> Cell:
    return None if value is None or pd.isna(value) else float(value)
