"""Local copy of lmms-eval's `gqa` task (testdev balanced): its prompts and exact-match scoring,
with questions and images read from $TOKENPACKER_DATA_ROOT/gqa/testdev_balanced_instructions and
.../testdev_balanced_images (saved with save_to_disk, see evaluation/tasks/README.md)."""

import datasets

from evaluation.tasks.local_data import doc_visuals, mirror_folder, undecoded_images
from evaluation.tasks.scoring import gqa_exact_match, score_unless_unreadable

ID_FIELD = "id"
SPLIT = "testdev"
# Resolved when lmms-eval loads local_gqa.yaml (`!function utils.DATASET_FOLDER`).
DATASET_FOLDER = mirror_folder("gqa", "testdev_balanced_instructions")
IMAGES_FOLDER = mirror_folder("gqa", "testdev_balanced_images")


def local_gqa_process_docs(dataset):
    """lmms-eval's gqa_process_docs with local images: each question gets its image's bytes; a
    question whose image is not in the image set gets a path that cannot be read (scored wrong)."""
    images = undecoded_images(datasets.load_from_disk(IMAGES_FOLDER)[SPLIT])
    row_of = {image_id: row for row, image_id in enumerate(images["id"])}

    def add_image(doc):
        row = row_of.get(doc["imageId"])
        if row is None:
            return {"image": {"bytes": None, "path": f"missing GQA image {doc['imageId']}"}}
        return {"image": images[row]["image"]}

    features = datasets.Features({**dataset.features, "image": datasets.Image(decode=False)})
    return dataset.map(add_image, features=features, desc="local_gqa: images")


def local_gqa_doc_to_visual(doc):
    return doc_visuals(doc, ID_FIELD)


def local_gqa_process_results(doc, results):
    return score_unless_unreadable(gqa_exact_match, doc, results, ID_FIELD)
