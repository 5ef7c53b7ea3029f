"""Local copy of lmms-eval's `scienceqa_img` task: its prompts and scoring, with the data set read from
$TOKENPACKER_DATA_ROOT/scienceqa_img (saved with save_to_disk, see evaluation/tasks/README.md)."""

from lmms_eval.tasks.scienceqa.utils import sqa_process_results

from evaluation.tasks.local_data import doc_visuals, mirror_folder, undecoded_images
from evaluation.tasks.scoring import score_unless_unreadable

ID_FIELD = "question"
# Resolved when lmms-eval loads local_scienceqa_img.yaml (`!function utils.DATASET_FOLDER`).
DATASET_FOLDER = mirror_folder("scienceqa_img")


def local_scienceqa_img_process_docs(dataset):
    return undecoded_images(dataset)


def local_scienceqa_img_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def local_scienceqa_img_process_results(doc, results):
    return score_unless_unreadable(sqa_process_results, doc, results, ID_FIELD)
