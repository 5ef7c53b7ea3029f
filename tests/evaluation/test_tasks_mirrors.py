"""The local_* tasks load small copies of the real data sets (fixtures/mirrors, in the Hugging Face
schemas, saved with save_to_disk), keep lmms-eval's own settings, and score with its functions."""

from __future__ import annotations

import io
import shutil
from argparse import Namespace
from collections import defaultdict
from pathlib import Path

import lmms_eval.tasks
import pytest
from datasets import DatasetDict, load_from_disk
from lmms_eval.tasks import TaskManager, get_task_dict
from lmms_eval.utils import load_yaml_config
from loguru import logger
from PIL import Image

from evaluation.tasks import DATA_ROOT_ENV, MIRROR_TASKS, TASKS_DIR
from evaluation.tasks.local_data import PLACEHOLDER_SIZE

FIXTURES = Path(__file__).parent / "fixtures" / "mirrors"
LMMS_EVAL_TASKS = Path(lmms_eval.tasks.__file__).parent
# the lmms-eval YAML each mirror repeats (mmbench: its offline variant, see local_mmbench_en_dev.yaml)
ORIGINAL_YAML = {
    "local_mme": "mme/mme.yaml",
    "local_textvqa_val": "textvqa/textvqa_val.yaml",
    "local_gqa": "gqa/gqa.yaml",
    "local_mmbench_en_dev": "mmbench/mmbench_en_dev_static.yaml",
    "local_pope": "pope/pope.yaml",
    "local_scienceqa_img": "scienceqa/scienceqa_img.yaml",
}
FIXTURE_ROWS = {
    "local_mme": 4,
    "local_textvqa_val": 2,
    "local_gqa": 2,
    "local_mmbench_en_dev": 6,
    "local_pope": 4,
    "local_scienceqa_img": 2,
}


@pytest.fixture(scope="module")
def manager():
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


@pytest.fixture(scope="module")
def tasks(manager, tmp_path_factory):
    root = tmp_path_factory.mktemp("mirrors")
    shutil.copytree(FIXTURES, root, dirs_exist_ok=True)  # datasets writes cache files next to the data
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATA_ROOT_ENV, str(root))
        yield get_task_dict(list(MIRROR_TASKS), manager)


def _function_name(value) -> str:
    """`!function utils.x` and `!function lmms_eval.tasks.y.utils.x` both name x (simple-mode YAML node)."""
    return getattr(value, "value", value).rsplit(".", 1)[-1] if value is not None else None


@pytest.mark.parametrize("name", list(MIRROR_TASKS))
def test_mirror_keeps_lmms_eval_settings(name):
    ours = load_yaml_config(str(TASKS_DIR / name / f"{name}.yaml"), mode="simple")
    original = load_yaml_config(str(LMMS_EVAL_TASKS / ORIGINAL_YAML[name]), mode="simple")
    for key in (
        "test_split",
        "output_type",
        "generation_kwargs",
        "lmms_eval_specific_kwargs",
        "model_specific_generation_kwargs",
    ):
        assert ours.get(key) == original.get(key), key
    for key in ("doc_to_text", "doc_to_target"):
        assert _function_name(ours[key]) == _function_name(original[key]), key
    assert [m["metric"] for m in ours["metric_list"]] == [m["metric"] for m in original["metric_list"]]
    for mine, theirs in zip(ours["metric_list"], original["metric_list"], strict=True):
        assert _function_name(mine.get("aggregation")) == _function_name(theirs.get("aggregation"))


@pytest.mark.parametrize("name", list(MIRROR_TASKS))
def test_mirror_loads_its_fixture(tasks, name):
    task = tasks[name]
    docs = task.test_docs()
    assert len(docs) == FIXTURE_ROWS[name]
    for doc in docs:
        assert doc["question"].split("?")[0].lower() in task.doc_to_text(doc).lower()
        (image,) = task.doc_to_visual(doc)
        assert isinstance(image, Image.Image) and image.size in ((24, 16), (16, 24))


def test_gqa_questions_get_their_own_images(tasks):
    sizes = {"n288870": (24, 16), "n12345": (16, 24)}  # the red and the blue fixture image
    for doc in tasks["local_gqa"].test_docs():
        (image,) = tasks["local_gqa"].doc_to_visual(doc)
        assert image.size == sizes[doc["imageId"]]


def test_mme_prompt_is_lmms_eval_default(tasks):
    doc = tasks["local_mme"].test_docs()[0]
    expected = "Is there a red square in this image?\nAnswer the question using a single word or phrase."
    assert tasks["local_mme"].doc_to_text(doc) == expected


def test_mmbench_circular_on_real_schema(tasks, tmp_path):
    task = tasks["local_mmbench_en_dev"]
    items = []
    for doc in task.eval_docs_no_media:
        wrong = doc["index"] == 1_000_001  # the two-option question fails one rotation
        prediction = ("A" if doc["answer"] == "B" else "B") if wrong else doc["answer"]
        items.append(task.process_results(doc, [prediction])["gpt_eval_score"])
    aggregate = task.aggregation()["gpt_eval_score"]
    assert aggregate(items, args=Namespace(output_path=str(tmp_path))) == pytest.approx(50.0)


def test_scienceqa_scores_the_option_letter(tasks):
    task = tasks["local_scienceqa_img"]
    doc = task.eval_docs_no_media[0]  # answer 1 -> "B"
    assert [task.process_results(doc, [p])["exact_match"] for p in ("B", "B. red", "A")] == [1.0, 1.0, 0.0]


def test_pope_scores_on_real_schema(tasks):
    task = tasks["local_pope"]
    items = defaultdict(list)
    for doc in task.eval_docs_no_media:
        for metric, value in task.process_results(doc, ["yes"]).items():
            items[metric].append(value)
    assert task.aggregation()["pope_accuracy"](items["pope_accuracy"]) == pytest.approx(0.5)
    assert task.aggregation()["pope_recall"](items["pope_recall"]) == pytest.approx(1.0)


def test_missing_mirror_says_how_to_prepare_it(manager, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/pope/dataset_dict.json does not exist.*README"):
        get_task_dict(["local_pope"], manager)


def test_corrupt_image_in_a_mirror_is_reported_and_scored_wrong(manager, monkeypatch, tmp_path):
    copy = load_from_disk(str(FIXTURES / "mme"))
    rows = copy["test"].cast_column("image", copy["test"].features["image"].__class__(decode=False)).to_list()
    rows[0]["image"] = {"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}
    features = copy["test"].features
    DatasetDict({"test": copy["test"].from_list(rows, features=features)}).save_to_disk(str(tmp_path / "mme"))
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    (task,) = get_task_dict(["local_mme"], manager).values()
    errors: list[str] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        doc = task.test_docs()[0]
        (image,) = task.doc_to_visual(doc)
        score = task.process_results(task.eval_docs_no_media[0], [doc["answer"]])["mme_perception_score"][
            "score"
        ]
    finally:
        logger.remove(sink)
    assert image.size == PLACEHOLDER_SIZE and score == 0.0
    assert sum("question_id='existence/0001.jpg'" in message for message in errors) == 2
    assert len(task.test_docs()) == FIXTURE_ROWS["local_mme"]
    assert Image.open(io.BytesIO(task.test_docs()[1]["image"]["bytes"])).size == (24, 16)
