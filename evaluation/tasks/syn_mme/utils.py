"""Synthetic MME: yes/no pairs per image, prompted and scored by lmms-eval's own MME code."""

from lmms_eval.tasks.mme.utils import mme_process_results

from evaluation.tasks.local_data import doc_visuals, synthetic_questions_file, with_absolute_images
from evaluation.tasks.scoring import score_unless_unreadable

TASK = "syn_mme"
ID_FIELD = "question_id"
# Resolved from TOKENPACKER_DATA_ROOT when lmms-eval loads syn_mme.yaml (`!function utils.QUESTIONS_FILE`).
QUESTIONS_FILE = synthetic_questions_file(TASK)


def syn_mme_process_docs(dataset):
    return with_absolute_images(dataset, TASK)


def syn_mme_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def syn_mme_process_results(doc, results):
    return score_unless_unreadable(mme_process_results, doc, results, ID_FIELD)
