"""Synthetic POPE: object presence yes/no with random, popular and adversarial negatives,
prompted and scored by lmms-eval's POPE code (accuracy, precision, recall, F1, yes ratio)."""

from lmms_eval.tasks.pope.utils import pope_process_results

from evaluation.tasks.local_data import doc_visuals, synthetic_questions_file, with_absolute_images
from evaluation.tasks.scoring import score_unless_unreadable

TASK = "syn_pope"
ID_FIELD = "question_id"
# Resolved from TOKENPACKER_DATA_ROOT when lmms-eval loads syn_pope.yaml (`!function utils.QUESTIONS_FILE`).
QUESTIONS_FILE = synthetic_questions_file(TASK)


def syn_pope_process_docs(dataset):
    return with_absolute_images(dataset, TASK)


def syn_pope_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def syn_pope_process_results(doc, results):
    return score_unless_unreadable(pope_process_results, doc, results, ID_FIELD)
