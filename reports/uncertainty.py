"""Uncertainty from lmms-eval per-sample logs: bootstrap confidence intervals and paired tests.

Only metrics whose reported value is the mean of per-sample numbers can be bootstrapped this way
(accuracy, exact match, and lmms-eval's dict entries whose "score" field averages to the reported
value). For any other metric (MME's summed score, F1, GPT-judged scores) the reason is returned
instead of an interval. The reported numbers themselves are never recomputed: the per-sample mean
is only used to check that the log belongs to the reported number.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 9999
DEFAULT_SEED = 0
CONFIDENCE = 0.95
_MAX_DRAWS_PER_BATCH = 4_000_000  # bounds the memory of scipy's vectorised resampling


class ScoresUnavailable(Exception):
    """Per-sample scores cannot support an interval; str(exc) is the reason shown in the report."""


@dataclass(frozen=True)
class SampleScores:
    """One metric's per-sample scores, aligned with the docs they score."""

    doc_ids: np.ndarray  # str, unique
    scores: np.ndarray  # float64
    doc_hashes: np.ndarray | None = None  # str, lmms-eval's hash of each doc; None when the log lacks them


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedTest:
    """Mean of (a - b) over doc_ids both configs scored, its paired bootstrap CI and a sign-flip p-value."""

    n: int
    difference: float
    low: float
    high: float
    p_value: float


def read_sample_scores(path: Path, metric: str) -> SampleScores:
    """The numeric per-sample values of `metric` from an lmms-eval `*_samples_<task>.jsonl`.

    A value is a number, or a dict with a numeric "score" (lmms-eval's aggregated metrics). Lines
    without the metric are skipped (MME logs perception and cognition on different lines).
    """
    key = metric.split(",")[0]
    doc_ids: list[str] = []
    doc_hashes: list[str | None] = []
    scores: list[float] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoresUnavailable(f"per-sample log unreadable ({exc.__class__.__name__})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            raise ScoresUnavailable(f"per-sample log line {number} is not JSON") from None
        if not isinstance(sample, dict) or key not in sample:
            continue
        if "doc_id" not in sample:
            raise ScoresUnavailable(f"per-sample log line {number} has no doc_id")
        raw = sample[key]
        if isinstance(raw, dict):
            raw = raw.get("score")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ScoresUnavailable(
                "per-sample entries are not numeric (metric aggregated by a task function)"
            )
        doc_ids.append(str(sample["doc_id"]))
        doc_hashes.append(sample.get("doc_hash"))
        scores.append(float(raw))
    if not scores:
        raise ScoresUnavailable(f"no per-sample values for {key}")
    ids = np.asarray(doc_ids)
    if len(np.unique(ids)) != len(ids):
        raise ScoresUnavailable("doc_ids repeat in the per-sample log (several filters or repeats)")
    hashes = np.asarray(doc_hashes, dtype=str) if all(isinstance(h, str) for h in doc_hashes) else None
    return SampleScores(doc_ids=ids, scores=np.asarray(scores, dtype=np.float64), doc_hashes=hashes)


def check_mean_matches(samples: SampleScores, reported: float, *, rel_tol: float = 1e-6) -> None:
    """Raise ScoresUnavailable unless the reported value is the mean of the per-sample scores."""
    mean = float(samples.scores.mean())
    if not math.isclose(mean, reported, rel_tol=rel_tol, abs_tol=1e-9):
        raise ScoresUnavailable(
            f"reported {reported:g} is not the per-sample mean ({mean:g}): not a mean-type metric"
        )


def _batch(n: int) -> int:
    return max(1, _MAX_DRAWS_PER_BATCH // max(1, n))


def bootstrap_ci(
    values: np.ndarray, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of `values` (scipy.stats.bootstrap; fixed seed).

    Raises ScoresUnavailable for fewer than two values.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        raise ScoresUnavailable(f"{values.size} per-sample value(s): a bootstrap needs at least two")
    result = stats.bootstrap(
        (values,),
        np.mean,
        n_resamples=resamples,
        batch=_batch(values.size),
        vectorized=True,
        axis=-1,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def score_interval(
    samples: SampleScores, reported: float, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Interval:
    """95% bootstrap CI for a reported mean-type score; ScoresUnavailable if it is not one."""
    check_mean_matches(samples, reported)
    low, high = bootstrap_ci(samples.scores, resamples=resamples, seed=seed)
    return Interval(mean=reported, low=low, high=high, n=len(samples.scores))


def paired_test(
    a: SampleScores,
    b: SampleScores,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> PairedTest:
    """Compare two configs on the docs both scored: mean(a - b), paired bootstrap 95% CI, and the
    two-sided p-value of a sign-flip permutation test (scipy.stats.permutation_test; exact when
    2^n <= `permutations`).

    Pairs are matched by doc_id; when both logs carry lmms-eval's doc_hash, the paired docs must be the
    same docs. Raises ScoresUnavailable when they are not (the logs come from different eval sets) or
    when the logs share fewer than two doc_ids.
    """
    shared, index_a, index_b = np.intersect1d(a.doc_ids, b.doc_ids, assume_unique=True, return_indices=True)
    if a.doc_hashes is not None and b.doc_hashes is not None:
        differing = int(np.sum(a.doc_hashes[index_a] != b.doc_hashes[index_b]))
        if differing:
            raise ScoresUnavailable(
                f"{differing} of {len(shared)} shared doc_ids hold different docs (doc_hash): not the same eval set"
            )
    if len(shared) < 2:
        raise ScoresUnavailable(
            f"the two per-sample logs share {len(shared)} doc_id(s); a paired test needs two or more"
        )
    differences = a.scores[index_a] - b.scores[index_b]
    low, high = bootstrap_ci(differences, resamples=resamples, seed=seed)
    test = stats.permutation_test(
        (differences,),
        np.mean,
        permutation_type="samples",
        vectorized=True,
        axis=-1,
        n_resamples=permutations,
        batch=_batch(differences.size),
        alternative="two-sided",
        rng=np.random.default_rng(seed),
    )
    return PairedTest(
        n=len(shared),
        difference=float(differences.mean()),
        low=low,
        high=high,
        p_value=float(test.pvalue),
    )
