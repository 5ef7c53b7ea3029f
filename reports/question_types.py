"""Accuracy per question type, from lmms-eval's per-sample logs: which questions compression costs.

A benchmark's score mixes questions that pooling cannot hurt (a colour is an average over pixels,
and average pooling keeps averages) with questions that need the image's fine structure (a shape's
size, small text). Split by type, the scores show where tokens are lost. A sample's type is what its
log carries: the category of lmms-eval's own MME entries ({question_id, category, score}), or the
"question_type" the suite's GQA tasks log beside exact_match (GQA's detailed type). The value is the
share of questions answered right, over the questions of that type.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.records import EFFICIENCY_TASK, QUESTION_TYPE_FIELD
from reports.render import PRECISION_NOTE, Cell, Table
from reports.scores import EFFICIENCY_LABELS, VISUAL_TOKENS, ScoreColumn, pivot_values, row_info, value_at
from reports.tables import CONFIG_HEADER, sample_record
from reports.uncertainty import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    ScoresUnavailable,
    bootstrap_ci,
    metric_samples,
)

# Real GQA has over a hundred detailed types: more than a table or figure can show per benchmark.
MAX_TYPES = 12


def typed_scores(path: Path, metric: str) -> dict[str, np.ndarray]:
    """Per question type, the 0/1 scores of `metric`'s samples in a `*_samples_<task>.jsonl`; empty
    when any sample lacks a type or a 0/1 score, or the log cannot be used (unreadable, repeated
    doc_ids: see metric_samples); the benchmark is then left out of the split."""
    key = metric.split(",")[0]
    try:
        samples = metric_samples(path, key)
    except ScoresUnavailable:
        return {}
    typed = [_typed_score(sample, key) for sample in samples]
    if not typed or None in typed:
        return {}
    by_type: dict[str, list[float]] = {}
    for question_type, score in typed:
        by_type.setdefault(question_type, []).append(score)
    return {name: np.asarray(scores) for name, scores in sorted(by_type.items())}


def _typed_score(sample: dict, key: str) -> tuple[str, float] | None:
    """(type, score) of one sample, or None when it has no type or its score is not right/wrong."""
    value = sample[key]
    if isinstance(value, dict):
        question_type, score = value.get("category"), value.get("score")
    else:
        question_type, score = sample.get(QUESTION_TYPE_FIELD), value
    if not isinstance(question_type, str) or isinstance(score, bool) or score not in (0, 1):
        return None
    return question_type, float(score)


SHARE_COLUMNS = ["label", "family", "tokens", "benchmark", "share", "n", "low", "high"]


def type_shares(
    results: pd.DataFrame,
    columns: Sequence[ScoreColumn],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> pd.DataFrame:
    """Long table of every typed share: columns label, family (see config_families), tokens (NaN when
    not measured), benchmark ("<benchmark>: <type>"), share, n and its bootstrap 95% interval (low,
    high; NaN for one question), in the report's row order, then the benchmarks' order. A benchmark
    with more than MAX_TYPES types in a log is left out."""
    wide, info = pivot_values(results), row_info(results)
    families = config_families(info)
    rows = []
    for label in info.index:
        tokens = value_at(wide, label, EFFICIENCY_TASK, VISUAL_TOKENS)
        for column in columns:
            record = sample_record(results, label, column)
            split = typed_scores(Path(record[1]), column.metric) if record and record[1] else {}
            if len(split) > MAX_TYPES:
                continue
            for question_type, scores in split.items():
                low, high = _interval(scores, resamples, seed)
                rows.append(
                    (label, families[label], tokens, f"{column.label}: {question_type}",
                     float(scores.mean()), len(scores), low, high)
                )  # fmt: skip
    return pd.DataFrame(rows, columns=SHARE_COLUMNS)


def _interval(scores: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The bootstrap 95% interval of the share, or NaNs where bootstrap_ci cannot make one (one question)."""
    try:
        return bootstrap_ci(scores, resamples=resamples, seed=seed)
    except ScoresUnavailable:
        return np.nan, np.nan


def config_families(info: pd.DataFrame) -> dict[str, str]:
    """The line each config is drawn on: its projector, with TokenPacker-HD's patch_num apart (HD's
    tokens grow with its crops, not with compression), and the seed and origin where the results
    hold several, so that no line joins two runs at the same token count."""
    several_seeds, several_origins = info["seed"].nunique() > 1, info["origin"].nunique() > 1
    families = {}
    for label, config in info.iterrows():
        family = str(config["projector"])
        if not pd.isna(config["patch_num"]):
            family += f" HD (N={int(config['patch_num'])})"
        if several_seeds and not pd.isna(config["seed"]):
            family += f", seed {int(config['seed'])}"
        if several_origins:
            family += f" [{config['origin']}]"
        families[str(label)] = family
    return families


def question_type_table(shares: pd.DataFrame) -> Table | None:
    """Configs x typed benchmarks, with their visual tokens; None when no log carries types."""
    if shares.empty:
        return None
    benchmarks = sorted(set(shares["benchmark"]))  # the same columns whichever configs have which logs
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
            "questions a config's compression costs. A benchmark with more than "
            f"{MAX_TYPES} types in a log is left out.",
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
    """A number, or a gap for a missing one."""
    return None if value is None or pd.isna(value) else float(value)
