"""Bootstrap intervals and paired tests against known answers and a hand-written percentile bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reports.uncertainty import (
    SampleScores,
    ScoresUnavailable,
    bootstrap_ci,
    check_reported_matches,
    paired_test,
    read_sample_scores,
    score_interval,
)


def _scores(values, ids=None, hashes=None) -> SampleScores:
    ids = [str(i) for i in range(len(values))] if ids is None else [str(i) for i in ids]
    return SampleScores(
        doc_ids=np.asarray(ids),
        scores=np.asarray(values, dtype=float),
        doc_hashes=None if hashes is None else np.asarray(hashes),
    )


def _plain_percentile_bootstrap(values: np.ndarray, resamples: int, seed: int) -> tuple[float, float]:
    """The textbook percentile bootstrap, written out: resample with replacement, take the 2.5/97.5 percentiles."""
    rng = np.random.default_rng(seed)
    means = [rng.choice(values, size=len(values), replace=True).mean() for _ in range(resamples)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_interval_matches_a_plain_percentile_bootstrap() -> None:
    values = (np.arange(300) % 10 < 7).astype(float)  # accuracy 0.7 over 300 samples
    low, high = bootstrap_ci(values, resamples=4000, seed=1)
    plain_low, plain_high = _plain_percentile_bootstrap(values, resamples=4000, seed=2)
    assert low == pytest.approx(plain_low, abs=0.01)
    assert high == pytest.approx(plain_high, abs=0.01)


def test_interval_of_binary_scores_matches_the_normal_approximation() -> None:
    values = (np.arange(2000) % 5 < 3).astype(float)  # p = 0.6, n = 2000
    low, high = bootstrap_ci(values, resamples=2000, seed=0)
    half_width = 1.96 * np.sqrt(0.6 * 0.4 / 2000)
    assert low == pytest.approx(0.6 - half_width, abs=0.004)
    assert high == pytest.approx(0.6 + half_width, abs=0.004)


def test_interval_of_two_values_spans_both() -> None:
    """Means of resamples of [0, 1] are 0, 0.5, 1 with chance 1/4, 1/2, 1/4: the 95% interval is [0, 1]."""
    assert bootstrap_ci(np.array([0.0, 1.0]), resamples=2000, seed=0) == (0.0, 1.0)


def test_interval_of_constant_scores_is_a_point() -> None:
    assert bootstrap_ci(np.full(50, 0.25), resamples=500, seed=0) == (0.25, 0.25)


def test_interval_is_reproducible_for_a_seed() -> None:
    values = (np.arange(100) % 3 == 0).astype(float)
    assert bootstrap_ci(values, seed=7) == bootstrap_ci(values, seed=7)


def test_interval_needs_two_samples() -> None:
    with pytest.raises(ScoresUnavailable, match="at least two"):
        bootstrap_ci(np.array([1.0]))


def test_score_interval_reports_the_reported_value() -> None:
    interval = score_interval(_scores([1, 0, 1, 1]), 0.75, resamples=500)
    assert interval.value == 0.75 and interval.n == 4 and interval.low <= 0.75 <= interval.high


def test_a_reported_value_that_is_not_the_sample_mean_gets_no_interval() -> None:
    with pytest.raises(ScoresUnavailable, match="not the per-sample statistic"):
        check_reported_matches(_scores([1, 0, 1, 1]), 1510.7)


def test_paired_test_of_identical_configs() -> None:
    a = _scores([1, 0, 1, 1, 0, 1])
    test = paired_test(a, a, resamples=500)
    assert (test.n, test.difference, test.low, test.high, test.p_value) == (6, 0.0, 0.0, 0.0, 1.0)


def test_paired_test_exact_sign_flip_p_value() -> None:
    """10 docs, a right and b wrong on each: only the all-plus and all-minus flips are as extreme, p = 2 / 2^10."""
    test = paired_test(_scores([1.0] * 10), _scores([0.0] * 10), resamples=500)
    assert test.difference == 1.0 and (test.low, test.high) == (1.0, 1.0)
    assert test.p_value == pytest.approx(2 / 1024)


def test_paired_test_uses_only_shared_docs() -> None:
    a = _scores([1, 1, 0, 1], ids=[0, 1, 2, 3])
    b = _scores([0, 1, 1, 9, 9], ids=[0, 1, 2, 10, 11])
    test = paired_test(a, b, resamples=500)
    assert test.n == 3
    assert test.difference == pytest.approx(((1 - 0) + (1 - 1) + (0 - 1)) / 3)


def test_paired_test_refuses_different_docs_under_one_doc_id() -> None:
    a = _scores([1, 0, 1], hashes=["h0", "h1", "h2"])
    b = _scores([1, 1, 1], hashes=["h0", "x1", "h2"])
    with pytest.raises(ScoresUnavailable, match="1 of 3 shared doc_ids hold different docs"):
        paired_test(a, b)


def test_paired_test_needs_shared_docs() -> None:
    with pytest.raises(ScoresUnavailable, match="share 0 doc_id"):
        paired_test(_scores([1, 0], ids=[0, 1]), _scores([1, 0], ids=[5, 6]))


def _write_jsonl(path: Path, lines: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_read_scores_from_numbers_and_score_dicts(tmp_path: Path) -> None:
    path = _write_jsonl(
        tmp_path / "s.jsonl",
        [
            {"doc_id": 0, "doc_hash": "a", "mme_perception_score": {"score": 1.0}},
            {"doc_id": 1, "doc_hash": "b", "mme_cognition_score": {"score": 0.0}},
            {"doc_id": 2, "doc_hash": "c", "mme_perception_score": {"score": 0.0}},
        ],
    )
    scores = read_sample_scores(path, "mme_perception_score")
    assert scores.doc_ids.tolist() == ["0", "2"] and scores.scores.tolist() == [1.0, 0.0]
    assert scores.doc_hashes.tolist() == ["a", "c"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([{"doc_id": 0, "m": "yes"}], "not numeric"),
        ([{"doc_id": 0, "m": 1.0}, {"doc_id": 0, "m": 0.0}], "doc_ids repeat"),
        ([{"m": 1.0}], "has no doc_id"),
        ([{"doc_id": 0, "other": 1.0}], "no per-sample values for m"),
        ([{"doc_id": 0, "m": {"index": 0, "prediction": "A"}}], "MMBench entries without a per-rotation hit"),
        (
            [{"doc_id": 0, "m": {"index": 0, "hit": 1}}, {"doc_id": 0, "m": {"index": 1_000_000, "hit": 1}}],
            "doc_ids repeat",
        ),
    ],
)
def test_unusable_sample_logs(tmp_path: Path, lines: list[dict], message: str) -> None:
    with pytest.raises(ScoresUnavailable, match=message):
        read_sample_scores(_write_jsonl(tmp_path / "s.jsonl", lines), "m")


def _mme_lines(answers: dict[tuple[str, int], tuple[float, float]]) -> list[dict]:
    lines = []
    for (category, image), pair in answers.items():
        for score in pair:
            entry = {"question_id": f"{category}/{image:05d}.png", "category": category, "score": score}
            lines.append({"doc_id": len(lines), "doc_hash": "h", "mme_perception_score": entry})
    return lines


def test_mme_units_are_images_whose_category_means_sum_to_the_score(tmp_path: Path) -> None:
    # existence: images 100+100, 50+0 -> mean 125; OCR: 0, 200, 200 -> 133.33; score 258.33
    answers = {("existence", 0): (1, 1), ("existence", 1): (1, 0)}
    answers |= {("OCR", 0): (0, 0), ("OCR", 1): (1, 1), ("OCR", 2): (1, 1)}
    scores = read_sample_scores(
        _write_jsonl(tmp_path / "s.jsonl", _mme_lines(answers)), "mme_perception_score"
    )
    assert sorted(scores.scores.tolist()) == [0.0, 50.0, 200.0, 200.0, 200.0]
    assert scores.statistic() == pytest.approx(125 + 400 / 3)
    check_reported_matches(scores, 125 + 400 / 3)
    interval = score_interval(scores, 125 + 400 / 3, resamples=500)
    # each category is resampled on its own: existence's mean lies in 50..200, OCR's in 0..200
    assert 50 <= interval.low <= 125 + 400 / 3 <= interval.high <= 400 and interval.n == 5


def test_mme_units_match_lmms_eval_s_aggregation(tmp_path: Path) -> None:
    from lmms_eval.tasks.mme.utils import mme_aggregate_results

    rng = np.random.default_rng(0)
    answers = {(c, i): tuple(rng.integers(0, 2, 2).astype(float)) for c in ("color", "OCR") for i in range(9)}
    lines = _mme_lines(answers)
    scores = read_sample_scores(_write_jsonl(tmp_path / "s.jsonl", lines), "mme_perception_score")
    assert scores.statistic() == pytest.approx(
        mme_aggregate_results([line["mme_perception_score"] for line in lines])
    )


def test_an_mme_image_without_a_pair_gets_no_interval(tmp_path: Path) -> None:
    lines = _mme_lines({("color", 0): (1, 1)})[:1]
    with pytest.raises(ScoresUnavailable, match=r"has 1 question\(s\), not a pair"):
        read_sample_scores(_write_jsonl(tmp_path / "s.jsonl", lines), "mme_perception_score")


def test_circular_units_are_questions_right_in_every_rotation(tmp_path: Path) -> None:
    hits = {0: (1, 1, 1, 1), 1: (1, 0, 1, 1), 2: (1, 1, 1, 1)}
    lines = [
        {"doc_id": len(hits) * k + q, "gpt_eval_score": {"index": q + k * 1_000_000, "hit": h}}
        for q, rotations in hits.items()
        for k, h in enumerate(rotations)
    ]
    scores = read_sample_scores(_write_jsonl(tmp_path / "s.jsonl", lines), "gpt_eval_score")
    assert scores.doc_ids.tolist() == ["0", "1", "2"] and scores.scores.tolist() == [100.0, 0.0, 100.0]
    check_reported_matches(scores, 200 / 3)


def test_paired_mme_difference_is_the_difference_of_scores(tmp_path: Path) -> None:
    a = {("color", 0): (1, 1), ("color", 1): (1, 1), ("OCR", 0): (1, 0), ("OCR", 1): (0, 0)}
    b = {("color", 0): (1, 0), ("color", 1): (1, 1), ("OCR", 0): (0, 0), ("OCR", 1): (0, 0)}
    read = [
        read_sample_scores(_write_jsonl(tmp_path / f"{name}.jsonl", _mme_lines(x)), "mme_perception_score")
        for name, x in (("a", a), ("b", b))
    ]
    test = paired_test(*read, resamples=200, permutations=200)
    assert test.n == 4 and test.difference == pytest.approx(read[0].statistic() - read[1].statistic())


def test_an_mme_category_with_one_image_gets_no_interval_and_says_why(tmp_path: Path) -> None:
    answers = {("color", 0): (1, 1), ("color", 1): (1, 0), ("OCR", 0): (1, 1)}
    scores = read_sample_scores(
        _write_jsonl(tmp_path / "s.jsonl", _mme_lines(answers)), "mme_perception_score"
    )
    with pytest.raises(ScoresUnavailable, match="category OCR has 1 unit"):
        score_interval(scores, scores.statistic(), resamples=100)
