"""Where the suite's lmms-eval tasks find their data, and how they read images without dropping samples.

lmms-eval builds a task from its YAML and offers no setting for a data folder, so each task's
utils.py resolves its folder from TOKENPACKER_DATA_ROOT when lmms-eval loads the YAML (a missing
folder fails there, with a message saying how to create it). An image that cannot be decoded is
logged with its sample id and the model sees a blank placeholder; `scoring.py` then counts the
sample as wrong.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import datasets
from loguru import logger
from PIL import Image

from evaluation.tasks import DATA_ROOT_ENV

SYNTHETIC_QUESTIONS = "test.jsonl"
SYNTHETIC_HINT = (
    f"generate a world with `tokenpacker synth --out DIR` and set {DATA_ROOT_ENV} to its eval/ folder"
)
MIRROR_HINT = "copy the data set there with save_to_disk as evaluation/tasks/README.md shows"
PLACEHOLDER_SIZE = (64, 64)  # what the model sees instead of an unreadable image: a grey square


class UnreadableImageError(ValueError):
    """An image whose bytes do not decode."""


def data_roots() -> list[Path]:
    """The folders named by TOKENPACKER_DATA_ROOT, in search order."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    if not value:
        raise FileNotFoundError(
            f"{DATA_ROOT_ENV} is not set; set it to the folder holding the evaluation data "
            f"(for the syn_* tasks: {SYNTHETIC_HINT}; for the local_* tasks: {MIRROR_HINT})"
        )
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part]


def task_folder(name: str, marker: str, hint: str) -> Path:
    """The first `<root>/<name>` that holds `marker`, searching the data roots in order."""
    roots = data_roots()
    for root in roots:
        if (root / name / marker).is_file():
            return root / name
    searched = ", ".join(str(root / name / marker) for root in roots)
    raise FileNotFoundError(f"no data for {name}: {searched} does not exist; {hint}")


def synthetic_questions_file(task: str) -> str:
    """The task's test.jsonl, after checking that every image it names is on disk."""
    folder = task_folder(task, SYNTHETIC_QUESTIONS, SYNTHETIC_HINT)
    questions = folder / SYNTHETIC_QUESTIONS
    images = {json.loads(line)["image"] for line in questions.read_text().splitlines() if line}
    missing = sorted(image for image in images if not (folder / image).is_file())
    if missing:
        raise FileNotFoundError(
            f"{questions} names {len(missing)} images that are missing under {folder} (first: {missing[0]}); "
            "regenerate the world (delete its folder and run `tokenpacker synth` again)"
        )
    return str(questions)


def with_absolute_images(dataset: datasets.Dataset, task: str) -> datasets.Dataset:
    """Synthetic rows name images relative to the task folder; make them absolute paths."""
    folder = task_folder(task, SYNTHETIC_QUESTIONS, SYNTHETIC_HINT)
    return dataset.map(lambda row: {"image": str(folder / row["image"])}, desc=f"{task}: image paths")


def mirror_folder(task: str, subfolder: str = "") -> str:
    """The folder of a local copy saved with DatasetDict.save_to_disk (lmms-eval's load_from_disk)."""
    parent = task_folder(task, str(Path(subfolder) / "dataset_dict.json"), MIRROR_HINT)
    return str(parent / subfolder)


def undecoded_images(dataset: datasets.Dataset, column: str = "image") -> datasets.Dataset:
    """Keep images as bytes, so reading a row never fails; doc_to_visual decodes them."""
    return dataset.cast_column(column, datasets.Image(decode=False))


def _image_bytes(value) -> bytes:
    if isinstance(value, str):
        return Path(value).read_bytes()
    if value.get("bytes") is not None:
        return value["bytes"]
    return Path(value["path"]).read_bytes()


def read_image(value) -> Image.Image | None:
    """An RGB image from a path, a datasets image dict ({"bytes", "path"}) or a PIL image; None
    when the row has no image. Raises UnreadableImageError when the bytes do not decode.

    verify() comes first because lmms-eval sets ImageFile.LOAD_TRUNCATED_IMAGES, under which
    load() accepts truncated or damaged files.
    """
    if value is None:
        return None
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    try:
        data = _image_bytes(value)
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise UnreadableImageError(f"{type(error).__name__}: {error}") from error
    return image.convert("RGB")


def doc_visuals(doc: dict, id_field: str, column: str = "image") -> list[Image.Image]:
    """doc_to_visual: the doc's image, or the placeholder (logged) when it cannot be read."""
    try:
        image = read_image(doc[column])
    except UnreadableImageError as error:
        logger.error(
            f"{id_field}={doc[id_field]!r}: image cannot be read ({error}); the model sees a blank placeholder"
        )
        return [Image.new("RGB", PLACEHOLDER_SIZE, (128, 128, 128))]
    return [] if image is None else [image]
