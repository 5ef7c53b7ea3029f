"""process_results glue shared by the suite's tasks: lmms-eval's own scorers, with a sample whose
image cannot be read scored as an empty answer, which every lmms-eval scorer counts as wrong."""

from __future__ import annotations

from collections.abc import Callable

from lmms_eval.api.metrics import exact_match_hf_evaluate
from loguru import logger

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
    """What lmms-eval computes for gqa.yaml's metric_list: exact_match ignoring case and punctuation."""
    score = exact_match_hf_evaluate(
        predictions=results, references=[doc["answer"]], ignore_case=True, ignore_punctuation=True
    )
    return {"exact_match": float(score["exact_match"])}
