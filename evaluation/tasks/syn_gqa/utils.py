"""Synthetic GQA: questions about relations and attributes, prompted by lmms-eval's GQA code and
scored by lmms-eval's exact_match metric with gqa.yaml's settings."""

from evaluation.tasks.local_data import doc_visuals, synthetic_questions_file, with_absolute_images
from evaluation.tasks.scoring import gqa_exact_match, score_unless_unreadable

TASK = "syn_gqa"
ID_FIELD = "id"
# Resolved from TOKENPACKER_DATA_ROOT when lmms-eval loads syn_gqa.yaml (`!function utils.QUESTIONS_FILE`).
QUESTIONS_FILE = synthetic_questions_file(TASK)


def syn_gqa_process_docs(dataset):
    return with_absolute_images(dataset, TASK)


def syn_gqa_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def syn_gqa_process_results(doc, results):
    return score_unless_unreadable(gqa_exact_match, doc, results, ID_FIELD)
