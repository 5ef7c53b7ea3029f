"""Uncertainty from lmms-eval per-sample logs: bootstrap confidence intervals and paired tests.

Only metrics whose reported value is the mean of per-sample numbers can be bootstrapped this way
(accuracy, exact match, and lmms-eval's dict entries whose "score" field averages to the reported
value). For any other metric (MME's summed score, F1, GPT-judged scores) the reason is returned
instead of an interval. The reported numbers themselves are never recomputed.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reports.errors import ReportInputError

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 10_000
DEFAULT_SEED = 0
EXACT_PERMUTATION_LIMIT = 16  # enumerate all 2^m sign flips up to this many non-zero differences
_MAX_DRAWS_PER_CHUNK = 4_000_000  # bound memory of the vectorised resampling


class ScoresUnavailable(Exception):
    """Per-sample scores cannot support an interval; str(exc) is the reason shown in the report."""


@dataclass(frozen=True)
class SampleScores:
    """One metric's per-sample scores, aligned with the docs they score."""

    doc_ids: np.ndarray  # str, unique
    scores: np.ndarray  # float64


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedTest:
    """Mean of (a - b) over doc_ids both configs scored, its bootstrap CI and a sign-flip p-value."""

    n: int
    difference: float
    low: float
    high: float
    p_value: float
    method: str


def read_sample_scores(path: Path, metric: str) -> SampleScores:
    """The numeric per-sample values of `metric` from an lmms-eval `*_samples_<task>.jsonl`.

    A value is a number, or a dict with a numeric "score" (lmms-eval's aggregated metrics). Lines
    without the metric are skipped (MME logs perception and cognition on different lines).
    """
    key = metric.split(",")[0]
    doc_ids: list[str] = []
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
        if key not in sample:
            continue
        if "doc_id" not in sample:
            raise ScoresUnavailable(f"per-sample log line {number} has no doc_id")
        raw = sample[key]
        if isinstance(raw, dict):
            raw = raw.get("score")
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
            raise ScoresUnavailable("per-sample entries are not numeric (metric aggregated by a task function)")
        doc_ids.append(str(sample["doc_id"]))
        scores.append(float(raw))
    if not scores:
        raise ScoresUnavailable(f"no per-sample values for {key}")
    ids = np.asarray(doc_ids)
    if len(np.unique(ids)) != len(ids):
        raise ScoresUnavailable("doc_ids repeat in the per-sample log (several filters or repeats)")
    return SampleScores(doc_ids=ids, scores=np.asarray(scores, dtype=np.float64))


def check_mean_matches(samples: SampleScores, reported: float, *, rel_tol: float = 1e-6) -> None:
    """Raise ScoresUnavailable unless the reported value is the mean of the per-sample scores."""
    mean = float(samples.scores.mean())
    if not math.isclose(mean, reported, rel_tol=rel_tol, abs_tol=1e-9):
        raise ScoresUnavailable(
            f"reported {reported:g} is not the per-sample mean ({mean:g}): not a mean-type metric"
        )


def _bootstrap_means(values: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of `resamples` with-replacement resamples of `values`, vectorised in bounded chunks."""
    n = len(values)
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // n)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def bootstrap_ci(
    values: np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (fixed seed: same input, same interval)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    means = _bootstrap_means(values, resamples, np.random.default_rng(seed))
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def score_interval(
    samples: SampleScores, reported: float, *, resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> Interval:
    """95% bootstrap CI for a reported mean-type score; ScoresUnavailable if it is not one."""
    check_mean_matches(samples, reported)
    low, high = bootstrap_ci(samples.scores, resamples=resamples, seed=seed)
    return Interval(mean=reported, low=low, high=high, n=len(samples.scores))


def _sign_flip_p_value(differences: np.ndarray, permutations: int, rng: np.random.Generator) -> tuple[float, str]:
    """Two-sided p-value of mean(differences) under random sign flips (exact when few are non-zero)."""
    nonzero = differences[differences != 0]
    m = len(nonzero)
    if m == 0:
        return 1.0, "exact sign-flip"
    observed = abs(nonzero.sum())
    tolerance = 1e-12 * max(1.0, observed)
    if m <= EXACT_PERMUTATION_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=m)))
        sums = np.abs(signs @ nonzero)
        return float(np.mean(sums >= observed - tolerance)), "exact sign-flip"
    chunk = max(1, _MAX_DRAWS_PER_CHUNK // m)
    extreme = 0
    for start in range(0, permutations, chunk):
        size = min(chunk, permutations - start)
        signs = rng.choice(np.array([1.0, -1.0]), size=(size, m))
        extreme += int(np.sum(np.abs(signs @ nonzero) >= observed - tolerance))
    return (1 + extreme) / (1 + permutations), f"sign-flip, {permutations} random flips"


def paired_test(
    a: SampleScores,
    b: SampleScores,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> PairedTest:
    """Compare two configs on the docs both scored: mean(a - b), paired bootstrap 95% CI, sign-flip p.

    Raises ReportInputError when the two logs share no doc_id.
    """
    shared, index_a, index_b = np.intersect1d(a.doc_ids, b.doc_ids, assume_unique=True, return_indices=True)
    if len(shared) == 0:
        raise ReportInputError("paired test: the two per-sample logs share no doc_id, so no pairs to compare")
    differences = a.scores[index_a] - b.scores[index_b]
    rng = np.random.default_rng(seed)
    means = _bootstrap_means(differences, resamples, rng)
    low, high = np.quantile(means, [0.025, 0.975])
    p_value, method = _sign_flip_p_value(differences, permutations, rng)
    return PairedTest(
        n=len(shared),
        difference=float(differences.mean()),
        low=float(low),
        high=float(high),
        p_value=p_value,
        method=f"paired bootstrap ({resamples}) + {method}",
    )
