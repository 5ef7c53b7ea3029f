"""Local copy of lmms-eval's `pope` task: its prompts and scoring, with the data set read from
$TOKENPACKER_DATA_ROOT/pope (saved with save_to_disk, see evaluation/tasks/README.md)."""

from lmms_eval.tasks.pope.utils import pope_process_results

from evaluation.tasks.local_data import doc_visuals, mirror_folder, undecoded_images
from evaluation.tasks.scoring import score_unless_unreadable

ID_FIELD = "question_id"
# Resolved when lmms-eval loads local_pope.yaml (`!function utils.DATASET_FOLDER`).
DATASET_FOLDER = mirror_folder("pope")


def local_pope_process_docs(dataset):
    return undecoded_images(dataset)


def local_pope_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def local_pope_process_results(doc, results):
    return score_unless_unreadable(pope_process_results, doc, results, ID_FIELD)
