"""Accuracy per question type: read from the per-sample logs, tabled and plotted beside visual tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.records import EFFICIENCY_TASK, ResultRecord, records_to_frame, write_results_table
from reports.load import load_results
from reports.question_types import (
    MAX_TYPES,
    SHARE_COLUMNS,
    config_families,
    question_type_interval_table,
    question_type_table,
    type_shares,
    typed_scores,
)
from reports.scores import row_info, score_columns


def _log(path: Path, lines: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


TYPE_FIELD = "question_type"


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
        [{"doc_id": 0, "exact_match": 0.5, TYPE_FIELD: "a"}],  # not right / wrong
        [
            {"doc_id": 0, "exact_match": 1.0, TYPE_FIELD: "a"},
            {"doc_id": 0, "exact_match": 0.0, TYPE_FIELD: "a"},
        ],
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


def _record(cell: str, projector: str, scale: int | None, task: str, metric: str, value: float, samples=None):
    return ResultRecord(
        cell_id=cell, status="ok", error=None, projector=projector, scale_factor=scale, patch_num=None, seed=0,
        config_json="{}", task=task, metric=metric, value=value, stderr=None, n_samples=None,
        samples_path=samples, suite_version="0", git_commit="x", package_versions="{}", timings_json="{}",
        created_at="2026-01-01T00:00:00+00:00",
    )  # fmt: skip


def _gqa_log(path: Path, size_right: list[int]) -> str:
    """Four chooseSize questions (right as given) and two queryAttr questions, both right."""
    lines = [
        {"doc_id": i, "exact_match": float(r), TYPE_FIELD: "chooseSize"} for i, r in enumerate(size_right)
    ]
    lines += [{"doc_id": 10 + i, "exact_match": 1.0, TYPE_FIELD: "queryAttr"} for i in range(2)]
    _log(path, lines)
    return path.name


def test_two_configs_get_their_own_shares_in_the_report_s_row_order(tmp_path: Path) -> None:
    records = [
        _record("mlp", "mlp2x_gelu", None, EFFICIENCY_TASK, "visual_tokens", 144),  # no typed log
        _record("a4", "avgpool", 4, "syn_gqa", "exact_match", 4 / 6, _gqa_log(tmp_path / "a4.jsonl", [1, 0, 0, 0])),
        _record("a4", "avgpool", 4, EFFICIENCY_TASK, "visual_tokens", 9),
        _record("a2", "avgpool", 2, "syn_gqa", "exact_match", 5 / 6, _gqa_log(tmp_path / "a2.jsonl", [1, 1, 1, 0])),
    ]  # fmt: skip
    write_results_table(records_to_frame(records), tmp_path)
    results = load_results([tmp_path])
    shares = type_shares(results, score_columns(results, primary_only=True), resamples=200)
    table = question_type_table(shares)
    assert table is not None
    assert table.columns[2:] == ("Syn. GQA: chooseSize", "Syn. GQA: queryAttr")
    assert [row[:4] for row in table.rows] == [
        ("avgpool (s=2)", None, 0.75, 1.0),
        ("avgpool (s=4)", 9.0, 0.25, 1.0),
    ]
    assert set(config_families(row_info(results)).values()) == {"avgpool", "mlp2x_gelu"}
    # a config whose GQA log has no types keeps the columns where they are
    _log(tmp_path / "a2.jsonl", [{"doc_id": 0, "exact_match": 1.0}])
    table = question_type_table(
        type_shares(results, score_columns(results, primary_only=True), resamples=200)
    )
    assert table is not None and [row[:4] for row in table.rows] == [("avgpool (s=4)", 9.0, 0.25, 1.0)]
    assert table.columns[2:] == ("Syn. GQA: chooseSize", "Syn. GQA: queryAttr")


def test_hd_seeds_and_origins_get_lines_of_their_own() -> None:
    info = pd.DataFrame(
        {
            "projector": ["tokenpacker"] * 3,
            "patch_num": [9.0, None, None],
            "seed": [0, 0, 1],
            "origin": ["a"] * 3,
        },
        index=["hd", "s0", "s1"],
    )
    assert config_families(info) == {
        "hd": "tokenpacker HD (N=9), seed 0",
        "s0": "tokenpacker, seed 0",
        "s1": "tokenpacker, seed 1",
    }


def test_a_benchmark_with_too_many_types_is_left_out(tmp_path: Path) -> None:
    lines = [{"doc_id": i, "exact_match": 1.0, TYPE_FIELD: f"type{i}"} for i in range(MAX_TYPES + 1)]
    _log(tmp_path / "g.jsonl", lines)
    records = [_record("g", "avgpool", 2, "syn_gqa", "exact_match", 1.0, "g.jsonl")]
    write_results_table(records_to_frame(records), tmp_path)
    results = load_results([tmp_path])
    assert type_shares(results, score_columns(results, primary_only=True)).empty


def test_a_type_of_one_question_gets_its_share_and_no_interval(tmp_path: Path) -> None:
    lines = [{"doc_id": 0, "exact_match": 1.0, TYPE_FIELD: "alone"}]
    lines += [{"doc_id": 1 + i, "exact_match": float(i % 2), TYPE_FIELD: "pair"} for i in range(2)]
    _log(tmp_path / "g.jsonl", lines)
    records = [_record("g", "avgpool", 2, "syn_gqa", "exact_match", 2 / 3, "g.jsonl")]
    write_results_table(records_to_frame(records), tmp_path)
    results = load_results([tmp_path])
    shares = type_shares(results, score_columns(results, primary_only=True), resamples=200).set_index(
        "benchmark"
    )
    alone, pair = shares.loc["Syn. GQA: alone"], shares.loc["Syn. GQA: pair"]
    assert alone["share"] == 1.0 and alone["n"] == 1 and np.isnan(alone["low"]) and np.isnan(alone["high"])
    assert pair["n"] == 2 and pair["low"] <= 0.5 <= pair["high"]
