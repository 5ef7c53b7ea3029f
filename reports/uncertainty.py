"""Uncertainty from lmms-eval per-sample logs: bootstrap confidence intervals and paired tests.

Three kinds of metric are bootstrapped, each over the units its benchmark scores:
- a mean of per-sample numbers (accuracy, exact match, and lmms-eval's dict entries whose "score"
  field averages to the reported value): the samples are resampled;
- MME's summed score (entries with question_id, category and score): an image's value is the acc +
  acc+ of its two questions, the score is the sum over categories of their mean, so images are
  resampled within each category;
- MMBench's circular accuracy (entries with index and a per-rotation "hit", which the suite's
  MMBench tasks log): a question is right when all its rotations are, so questions are resampled.
For any other metric (F1, GPT-judged scores) the reason is returned instead of an interval. The
reported numbers themselves are never recomputed: the statistic over the units is only used to
check that the log belongs to the reported number.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 2000
DEFAULT_PERMUTATIONS = 9999
DEFAULT_SEED = 0
CONFIDENCE = 0.95
_MAX_DRAWS_PER_BATCH = 4_000_000  # bounds the memory of scipy's vectorised resampling
# MMBench logs rotation k of question i as index i + k * 1e6 (formats.CIRCULAR_OFFSET)
CIRCULAR_STRIDE = 1_000_000
MME_FIELDS = frozenset({"question_id", "category", "score"})
CIRCULAR_FIELDS = frozenset({"index", "hit"})


class ScoresUnavailable(Exception):
    """Per-sample scores cannot support an interval; str(exc) is the reason shown in the report."""


@dataclass(frozen=True)
class SampleScores:
    """One metric's scores per unit (a sample, an MME image, an MMBench question), with the ids that
    pair units across configs."""

    doc_ids: np.ndarray  # str, unique: the doc_id, or the unit's id ("category|question_id", question number)
    scores: np.ndarray  # float64
    # str, lmms-eval's hash of each unit's docs; None when the log lacks them
    doc_hashes: np.ndarray | None = None
    # str per unit: the score is the sum over strata of their means (MME's categories); None: the mean
    strata: np.ndarray | None = None

    def statistic(self) -> float:
        """What the benchmark reports from these units, to check them against the reported value."""
        return float(sum_of_means(*stratified(self.scores, self.strata)))


@dataclass(frozen=True)
class Interval:
    value: float  # the reported value
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PairedTest:
    """The statistic of (a - b) over the units both configs scored, its paired bootstrap CI and a sign-flip p-value."""

    n: int
    difference: float
    low: float
    high: float
    p_value: float


def read_sample_scores(path: Path, metric: str) -> SampleScores:
    """The scores of `metric`'s units from an lmms-eval `*_samples_<task>.jsonl` (see the module docstring).

    A value is a number, or a dict with a numeric "score" (lmms-eval's aggregated metrics), or an
    MME or MMBench entry. Lines without the metric are skipped (MME logs perception and cognition
    on different lines).
    """
    key = metric.split(",")[0]
    records = [
        (str(sample["doc_id"]), sample.get("doc_hash"), sample[key]) for sample in metric_samples(path, key)
    ]
    if not records:
        raise ScoresUnavailable(f"no per-sample values for {key}")
    if all(isinstance(raw, dict) and MME_FIELDS <= raw.keys() for _, _, raw in records):
        return mme_units(records)
    if all(isinstance(raw, dict) and CIRCULAR_FIELDS <= raw.keys() for _, _, raw in records):
        return circular_units(records)
    if all(isinstance(raw, dict) and "index" in raw and "prediction" in raw for _, _, raw in records):
        raise ScoresUnavailable(
            "MMBench entries without a per-rotation hit (the suite's MMBench tasks log one; rerun the evaluation)"
        )
    return sample_units(records)


def metric_samples(path: Path, key: str) -> list[dict]:
    """The logged samples of an lmms-eval `*_samples_<task>.jsonl` that hold `key`, each with a
    doc_id of its own. Lines without the key are skipped (MME logs perception and cognition on
    different lines); a repeated doc_id (several filters or repeats) would count a doc twice."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ScoresUnavailable(f"per-sample log unreadable ({exc.__class__.__name__})") from None
    samples = []
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
        samples.append(sample)
    if len({str(sample["doc_id"]) for sample in samples}) != len(samples):
        raise ScoresUnavailable("doc_ids repeat in the per-sample log (several filters or repeats)")
    return samples


def _number(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ScoresUnavailable("per-sample entries are not numeric (metric aggregated by a task function)")
    return float(raw)


def _hashes(hashes: list[object]) -> np.ndarray | None:
    return np.asarray(hashes, dtype=str) if all(isinstance(h, str) for h in hashes) else None


def sample_units(records: list[tuple[str, str | None, object]]) -> SampleScores:
    """One unit per sample: its number, or its dict's "score"."""
    scores = [_number(raw.get("score") if isinstance(raw, dict) else raw) for _, _, raw in records]
    return SampleScores(
        doc_ids=np.asarray([doc_id for doc_id, _, _ in records]),
        scores=np.asarray(scores, dtype=np.float64),
        doc_hashes=_hashes([doc_hash for _, doc_hash, _ in records]),
    )


def _grouped(
    records: list[tuple[str, str | None, object]], unit: Callable[[dict], Hashable]
) -> dict[Hashable, list[tuple[str | None, dict]]]:
    """The records' (doc_hash, entry) pairs by unit, in sorted unit order."""
    groups: dict[Hashable, list[tuple[str | None, dict]]] = {}
    for _, doc_hash, raw in records:
        groups.setdefault(unit(raw), []).append((doc_hash, raw))
    return dict(sorted(groups.items()))


def _joined_hashes(groups: dict[object, list[tuple[str | None, dict]]]) -> np.ndarray | None:
    hashes = [[doc_hash for doc_hash, _ in members] for members in groups.values()]
    if not all(isinstance(h, str) for members in hashes for h in members):
        return None
    return np.asarray(["+".join(members) for members in hashes], dtype=str)


def mme_units(records: list[tuple[str, str | None, object]]) -> SampleScores:
    """One unit per image, as lmms-eval's mme_aggregate_results scores it: acc + acc+ of its two
    questions, in percent; the score is the sum over categories of the units' mean."""
    groups = _grouped(records, lambda raw: (str(raw["category"]), str(raw["question_id"])))
    scores = []
    for (category, question_id), members in groups.items():
        answers = [_number(raw["score"]) for _, raw in members]
        if len(answers) != 2:
            raise ScoresUnavailable(
                f"MME image {category}/{question_id} has {len(answers)} question(s), not a pair"
            )
        scores.append(100.0 * sum(answers) / 2 + 100.0 * (sum(answers) == 2))
    return SampleScores(
        doc_ids=np.asarray([f"{category}|{question_id}" for category, question_id in groups]),
        scores=np.asarray(scores, dtype=np.float64),
        doc_hashes=_joined_hashes(groups),
        strata=np.asarray([category for category, _ in groups]),
    )


def circular_units(records: list[tuple[str, str | None, object]]) -> SampleScores:
    """One unit per MMBench question: 100 when every rotation's hit is 1, else 0."""
    groups = _grouped(records, lambda raw: int(_number(raw["index"])) % CIRCULAR_STRIDE)
    scores = [100.0 * all(_number(raw["hit"]) == 1 for _, raw in members) for members in groups.values()]
    return SampleScores(
        doc_ids=np.asarray([str(question) for question in groups]),
        scores=np.asarray(scores, dtype=np.float64),
        doc_hashes=_joined_hashes(groups),
    )


def check_reported_matches(samples: SampleScores, reported: float, *, rel_tol: float = 1e-6) -> None:
    """Raise ScoresUnavailable unless the reported value is the units' statistic (their mean, or
    the sum of their strata's means)."""
    value = samples.statistic()
    if not math.isclose(value, reported, rel_tol=rel_tol, abs_tol=1e-9):
        raise ScoresUnavailable(
            f"reported {reported:g} is not the per-sample statistic ({value:g}): not a metric this report can resample"
        )


def stratified(values: np.ndarray, strata: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """The values of each stratum (all of them when there are none), in sorted stratum order."""
    if strata is None:
        return (values,)
    return tuple(values[..., strata == stratum] for stratum in np.unique(strata))


def sum_of_means(*groups: np.ndarray, axis: int = -1) -> np.ndarray:
    """The statistic of every metric here: a plain mean for one group, MME's sum over categories for several."""
    return sum(np.mean(group, axis=axis) for group in groups)


def _batch(n: int) -> int:
    return max(1, _MAX_DRAWS_PER_BATCH // max(1, n))


def bootstrap_ci(
    values: np.ndarray,
    strata: np.ndarray | None = None,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean of `values`, or of the sum of their strata's
    means, each stratum resampled on its own (scipy.stats.bootstrap; fixed seed).

    Raises ScoresUnavailable for fewer than two values in a stratum.
    """
    values = np.asarray(values, dtype=np.float64)
    groups = stratified(values, strata)
    if strata is None and values.size < 2:
        raise ScoresUnavailable(f"{values.size} per-sample value(s): a bootstrap needs at least two")
    for stratum in () if strata is None else np.unique(strata):
        if (count := int(np.sum(strata == stratum))) < 2:
            raise ScoresUnavailable(
                f"category {stratum} has {count} unit(s); a bootstrap within each category needs two"
            )
    result = stats.bootstrap(
        groups,
        sum_of_means,
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
    """95% bootstrap CI for a reported score; ScoresUnavailable if the units do not make it."""
    check_reported_matches(samples, reported)
    low, high = bootstrap_ci(samples.scores, samples.strata, resamples=resamples, seed=seed)
    return Interval(value=reported, low=low, high=high, n=len(samples.scores))


def paired_test(
    a: SampleScores,
    b: SampleScores,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> PairedTest:
    """Compare two configs on the units both scored: the statistic of (a - b) (its mean, or MME's sum
    of category means), paired bootstrap 95% CI, and the
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
    strata = None if a.strata is None else a.strata[index_a]
    low, high = bootstrap_ci(differences, strata, resamples=resamples, seed=seed)

    def statistic(flipped: np.ndarray, axis: int = -1) -> np.ndarray:
        return sum_of_means(*stratified(flipped, strata), axis=axis)

    test = stats.permutation_test(
        (differences,),
        statistic,
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
        difference=float(statistic(differences)),
        low=low,
        high=high,
        p_value=float(test.pvalue),
    )
