"""process_results glue shared by the suite's tasks: lmms-eval's own scorers, with a sample whose
image cannot be read scored as an empty answer, which every lmms-eval scorer counts as wrong."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from lmms_eval.api.metrics import exact_match_hf_evaluate
from lmms_eval.tasks.mmbench.en_utils import mmbench_evaluator
from loguru import logger

from evaluation.records import QUESTION_TYPE_FIELD
from evaluation.tasks.local_data import UnreadableImageError, read_image


def score_unless_unreadable(
    scorer: Callable[[dict, list[str]], dict],
    doc: dict,
    results: list[str],
    id_field: str,
    column: str = "image",
) -> dict:
    """process_results: lmms-eval's `scorer`, with an empty answer when the doc's image cannot be read."""
    try:
        read_image(doc[column])
    except UnreadableImageError as error:
        logger.error(
            f"{id_field}={doc[id_field]!r}: image cannot be read ({error}); the sample is scored as wrong"
        )
        results = [""]
    return scorer(doc, results)


def gqa_exact_match(doc: dict, results: list[str]) -> dict:
    """What lmms-eval computes for gqa.yaml's metric_list: exact_match ignoring case and punctuation,
    logged with GQA's detailed question type, so a report can split the score by type. The type is
    not in metric_list, so lmms-eval does not aggregate it (its results.json shows it as an empty
    "question_type,none" entry, which the loaders skip)."""
    score = exact_match_hf_evaluate(
        predictions=results, references=[doc["answer"]], ignore_case=True, ignore_punctuation=True
    )
    return {"exact_match": float(score["exact_match"]), QUESTION_TYPE_FIELD: doc["types"]["detailed"]}


def with_rotation_hit(scores: dict) -> dict:
    """MMBench's entry plus "hit": whether lmms-eval's static matcher finds this rotation right.

    A question counts when every rotation hits; logging each rotation's hit lets the report
    bootstrap the circular accuracy over questions. lmms-eval's aggregation ignores the field.
    """
    entry = scores["gpt_eval_score"]
    row = {key if key in ("A", "B", "C", "D") else key.lower(): value for key, value in entry.items()}
    row["prediction"] = str(row["prediction"])  # as eval_result prepares each row
    hit = mmbench_evaluator.eval_sub_data(
        pd.DataFrame([row]), {entry["index"]: entry["answer"]}, static_only=True
    )
    return scores | {"gpt_eval_score": entry | {"hit": hit}}
