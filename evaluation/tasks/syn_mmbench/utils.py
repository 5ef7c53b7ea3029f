"""Synthetic MMBench: four-option questions in all four rotations, prompted and scored by
lmms-eval's MMBench code with circular evaluation and its offline ("static") answer extraction."""

from lmms_eval.tasks.mmbench.en_utils import mmbench_evaluator, mmbench_process_results

from evaluation.tasks.local_data import doc_visuals, synthetic_questions_file, with_absolute_images
from evaluation.tasks.scoring import score_unless_unreadable, with_rotation_hit

TASK = "syn_mmbench"
ID_FIELD = "index"
# Resolved from TOKENPACKER_DATA_ROOT when lmms-eval loads syn_mmbench.yaml (`!function utils.QUESTIONS_FILE`).
QUESTIONS_FILE = synthetic_questions_file(TASK)


def syn_mmbench_process_docs(dataset):
    return with_absolute_images(dataset, TASK)


def syn_mmbench_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def syn_mmbench_process_results(doc, results):
    scores = score_unless_unreadable(mmbench_process_results, doc, results, ID_FIELD)
    # without lmms-eval's "submission" entry, which is meant for the real benchmark's server
    return with_rotation_hit({"gpt_eval_score": scores["gpt_eval_score"]})


def syn_mmbench_aggregate_results(results):
    """Circular accuracy in percent, as mmbench_en_dev_static reports it (without its results file)."""
    overall, _, _ = mmbench_evaluator.eval_result(results, eval_method="static")
    return overall * 100
