"""Synthetic TextVQA: reading words, numbers and letters, scored by lmms-eval's TextVQA code
(ten reference answers, VQA accuracy after EvalAI normalisation)."""

from lmms_eval.tasks.textvqa.utils import textvqa_process_results

from evaluation.tasks.local_data import doc_visuals, synthetic_questions_file, with_absolute_images
from evaluation.tasks.scoring import score_unless_unreadable

TASK = "syn_textvqa"
ID_FIELD = "question_id"
# Resolved from TOKENPACKER_DATA_ROOT when lmms-eval loads syn_textvqa.yaml (`!function utils.QUESTIONS_FILE`).
QUESTIONS_FILE = synthetic_questions_file(TASK)


def syn_textvqa_process_docs(dataset):
    return with_absolute_images(dataset, TASK)


def syn_textvqa_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def syn_textvqa_process_results(doc, results):
    scores = score_unless_unreadable(textvqa_process_results, doc, results, ID_FIELD)
    # without lmms-eval's "submission" entry, which is meant for the real benchmark's server
    return {"exact_match": scores["exact_match"]}
