"""Local copy of lmms-eval's `textvqa_val` task: its prompts and scoring, with the data set read from
$TOKENPACKER_DATA_ROOT/textvqa_val (saved with save_to_disk, see evaluation/tasks/README.md)."""

from lmms_eval.tasks.textvqa.utils import textvqa_process_results

from evaluation.tasks.local_data import doc_visuals, mirror_folder, undecoded_images
from evaluation.tasks.scoring import score_unless_unreadable

ID_FIELD = "question_id"
# Resolved when lmms-eval loads local_textvqa_val.yaml (`!function utils.DATASET_FOLDER`).
DATASET_FOLDER = mirror_folder("textvqa_val")


def local_textvqa_val_process_docs(dataset):
    return undecoded_images(dataset)


def local_textvqa_val_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def local_textvqa_val_process_results(doc, results):
    return score_unless_unreadable(textvqa_process_results, doc, results, ID_FIELD)
