"""Local copy of lmms-eval's `mmbench_en_dev` task: its prompts and scoring, with the data set read from
$TOKENPACKER_DATA_ROOT/mmbench_en_dev (saved with save_to_disk, see evaluation/tasks/README.md)."""

from lmms_eval.tasks.mmbench.en_utils import mmbench_process_results

from evaluation.tasks.local_data import doc_visuals, mirror_folder, undecoded_images
from evaluation.tasks.scoring import score_unless_unreadable, with_rotation_hit

ID_FIELD = "index"
# Resolved when lmms-eval loads local_mmbench_en_dev.yaml (`!function utils.DATASET_FOLDER`).
DATASET_FOLDER = mirror_folder("mmbench_en_dev")


def local_mmbench_en_dev_process_docs(dataset):
    return undecoded_images(dataset)


def local_mmbench_en_dev_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def local_mmbench_en_dev_process_results(doc, results):
    return with_rotation_hit(score_unless_unreadable(mmbench_process_results, doc, results, ID_FIELD))
