"""Accuracy per question type: read from the per-sample logs, tabled and plotted beside visual tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.tasks.scoring import QUESTION_TYPE
from reports.load import load_results
from reports.question_types import (
    SHARE_COLUMNS,
    TYPE_FIELD,
    question_type_interval_table,
    question_type_table,
    type_shares,
    typed_scores,
)
from reports.scores import score_columns


def _log(path: Path, lines: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_the_type_field_is_the_one_the_tasks_log() -> None:
    assert TYPE_FIELD == QUESTION_TYPE


def test_gqa_types_and_mme_categories_split_the_scores(tmp_path: Path) -> None:
    gqa = _log(
        tmp_path / "gqa.jsonl",
        [
            {"doc_id": 0, "exact_match": 1.0, TYPE_FIELD: "chooseSize"},
            {"doc_id": 1, "exact_match": 0.0, TYPE_FIELD: "chooseSize"},
            {"doc_id": 2, "exact_match": 1.0, TYPE_FIELD: "queryAttr"},
        ],
    )
    split = typed_scores(gqa, "exact_match,none")
    assert list(split) == ["chooseSize", "queryAttr"]
    assert split["chooseSize"].tolist() == [1.0, 0.0] and split["queryAttr"].tolist() == [1.0]
    entry = {"question_id": "a", "category": "color", "score": 1.0}
    mme = _log(
        tmp_path / "mme.jsonl",
        [{"doc_id": 0, "mme_perception_score": entry}, {"doc_id": 1, "mme_cognition_score": entry}],
    )
    assert {k: v.tolist() for k, v in typed_scores(mme, "mme_perception_score").items()} == {"color": [1.0]}


@pytest.mark.parametrize(
    "lines",
    [
        [{"doc_id": 0, "exact_match": 1.0}],  # no type logged (an older GQA log, TextVQA)
        [
            {"doc_id": 0, "exact_match": 1.0, TYPE_FIELD: "a"},
            {"doc_id": 1, "exact_match": 1.0},
        ],  # some untyped
        [{"doc_id": 0, "exact_match": float("nan"), TYPE_FIELD: "a"}],
        [{"doc_id": 0, "exact_match": {"index": 0, "category": "ocr", "hit": 1}}],  # MMBench: hits, no score
    ],
)
def test_logs_without_a_type_and_a_score_for_every_sample_are_left_out(tmp_path: Path, lines) -> None:
    assert typed_scores(_log(tmp_path / "log.jsonl", lines), "exact_match") == {}


def test_unreadable_logs_are_left_out(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert typed_scores(tmp_path / "bad.jsonl", "exact_match") == {}
    assert typed_scores(tmp_path / "missing.jsonl", "exact_match") == {}


def test_the_table_gives_each_config_s_share_per_type_beside_its_tokens(fixtures: Path) -> None:
    results = load_results([fixtures / "suite"])
    shares = type_shares(results, score_columns(results, primary_only=True))
    table = question_type_table(shares)
    assert table is not None
    (header,) = [c for c in table.columns if c.endswith(": OCR")]
    # the fixture's MME perception entries: OCR questions p0, p2, ..., right unless i % 3 == 0
    expected = np.mean([float(i % 3 != 0) for i in range(0, 40, 2)])
    shown = dict(zip(table.column("Method / config"), table.column(header), strict=True))
    assert shown and all(value == pytest.approx(expected) for value in shown.values())
    assert set(shares["n"]) == {20}


def test_each_share_gets_a_bootstrap_interval_around_it(fixtures: Path) -> None:
    results = load_results([fixtures / "suite"])
    shares = type_shares(results, score_columns(results, primary_only=True), resamples=500)
    assert ((shares["low"] <= shares["share"]) & (shares["share"] <= shares["high"])).all()
    assert (shares["high"] - shares["low"] > 0.1).all()  # 20 questions of 0 / 1: a wide interval
    table = question_type_interval_table(shares)
    assert table is not None and len(table.rows) == len(shares)
    assert table.column("CI low") == pytest.approx(shares["low"].tolist())


def test_no_typed_log_gives_no_table() -> None:
    empty = pd.DataFrame(columns=SHARE_COLUMNS)
    assert question_type_table(empty) is None and question_type_interval_table(empty) is None
