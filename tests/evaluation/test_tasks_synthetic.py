"""The syn_* tasks load through lmms-eval's TaskManager with our include_path, read a world from
TOKENPACKER_DATA_ROOT, ask exactly the prompts the training data uses, and never drop a sample."""

from __future__ import annotations

import json
import shutil

import pytest
from lmms_eval.tasks import TaskManager, get_task_dict
from lmms_eval.utils import load_yaml_config
from loguru import logger
from PIL import Image

from evaluation.synthetic import build_world, chance_levels, formats
from evaluation.synthetic.vocabulary import OPTION_LETTER_PROMPT, SHORT_ANSWER_PROMPT
from evaluation.tasks import DATA_ROOT_ENV, MIRROR_TASKS, SYNTHETIC_GROUP, SYNTHETIC_TASKS, TASKS_DIR
from evaluation.tasks.local_data import PLACEHOLDER_SIZE


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("worlds"), "smoke", seed=0)


@pytest.fixture(scope="module")
def manager():
    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)


@pytest.fixture(scope="module")
def tasks(world, manager, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATA_ROOT_ENV, str(world.eval_root))
        env.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("datasets_cache")))
        yield get_task_dict(list(SYNTHETIC_TASKS), manager)


@pytest.fixture
def isolated_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "datasets_cache"))


def _rows(world, task: str) -> list[dict]:
    return [json.loads(line) for line in (world.eval_root / task / "test.jsonl").read_text().splitlines()]


def test_every_task_and_the_group_is_registered(manager):
    assert set(SYNTHETIC_TASKS) | set(MIRROR_TASKS) <= set(manager.all_subtasks)
    assert SYNTHETIC_GROUP in manager.all_groups


def test_our_names_do_not_clash_with_lmms_eval_tasks():
    manager = TaskManager(include_path=str(TASKS_DIR))
    index = manager.task_index
    for name in (*SYNTHETIC_TASKS, SYNTHETIC_GROUP, *MIRROR_TASKS):
        assert str(TASKS_DIR) in index[name]["yaml_path"]
    for original in MIRROR_TASKS.values():
        assert str(TASKS_DIR) not in index[original]["yaml_path"]


def test_every_task_builds_all_its_docs(world, tasks):
    for name in SYNTHETIC_TASKS:
        assert len(tasks[name].test_docs()) == world.manifest["eval"][name]["questions"]


def test_prompts_are_the_training_prompts(world, tasks):
    """lmms-eval's doc_to_text on each row equals formats.prompt, which wrote the training turns."""
    for name in SYNTHETIC_TASKS:
        task = tasks[name]
        for doc, row in zip(task.test_docs(), _rows(world, name), strict=True):
            assert task.doc_to_text(doc) == formats.prompt(name, row)


def test_training_turns_end_with_lmms_eval_prompts(world):
    for record in json.loads(world.stage2_json.read_text()):
        for turn in record["conversations"][::2]:
            assert turn["value"].endswith((SHORT_ANSWER_PROMPT, OPTION_LETTER_PROMPT))


def test_visuals_are_the_scene_images(world, tasks):
    for name in SYNTHETIC_TASKS:
        task = tasks[name]
        scenes = {
            s["image"]: s["scene"]
            for s in map(json.loads, (world.eval_root / name / "scenes.jsonl").read_text().splitlines())
        }
        for doc, row in zip(task.test_docs(), _rows(world, name), strict=True):
            (image,) = task.doc_to_visual(doc)
            scene = scenes[row["image"]]
            assert isinstance(image, Image.Image) and image.mode == "RGB"
            assert image.size == (scene["width"], scene["height"])


def test_group_loads_all_synthetic_tasks(world, manager, isolated_cache, monkeypatch):
    monkeypatch.setenv(DATA_ROOT_ENV, str(world.eval_root))
    loaded = get_task_dict([SYNTHETIC_GROUP], manager)
    ((group, members),) = loaded.items()
    assert group.group_name == SYNTHETIC_GROUP
    assert set(members) == set(SYNTHETIC_TASKS)


def test_yaml_chance_levels_match_the_catalogue():
    for name in SYNTHETIC_TASKS:
        config = load_yaml_config(str(TASKS_DIR / name / f"{name}.yaml"), mode="simple")
        assert config["metadata"]["chance"] == pytest.approx(chance_levels()[name], abs=1e-6)


# ---------------------------------------------------------------- bad input


def test_unset_data_root_says_what_to_set(manager, monkeypatch, isolated_cache):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"{DATA_ROOT_ENV} is not set.*tokenpacker synth"):
        get_task_dict(["syn_mme"], manager)


def test_wrong_data_root_names_the_missing_file(manager, monkeypatch, tmp_path, isolated_cache):
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path))
    with pytest.raises(
        FileNotFoundError, match=f"{tmp_path}/syn_gqa/test.jsonl does not exist.*tokenpacker synth"
    ):
        get_task_dict(["syn_gqa"], manager)


def test_missing_image_is_reported_when_the_task_loads(world, manager, monkeypatch, tmp_path, isolated_cache):
    root = tmp_path / "eval"
    shutil.copytree(world.eval_root, root)
    (root / "syn_pope" / "images" / "00001.png").unlink()
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    with pytest.raises(FileNotFoundError, match="1 images that are missing.*images/00001.png"):
        get_task_dict(["syn_pope"], manager)


def test_data_roots_are_searched_in_order(world, manager, monkeypatch, tmp_path, isolated_cache):
    monkeypatch.setenv(DATA_ROOT_ENV, f"{tmp_path / 'empty'}:{world.eval_root}")
    (task,) = get_task_dict(["syn_textvqa"], manager).values()
    assert len(task.test_docs()) == world.manifest["eval"]["syn_textvqa"]["questions"]


@pytest.mark.parametrize("damage", [lambda data: data[: len(data) // 2], lambda data: b"not an image"])
def test_corrupt_image_is_reported_and_scored_wrong(
    world, manager, monkeypatch, tmp_path, isolated_cache, damage
):
    root = tmp_path / "eval"
    shutil.copytree(world.eval_root, root)
    broken = root / "syn_pope" / "images" / "00000.png"
    broken.write_bytes(damage(broken.read_bytes()))
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    (task,) = get_task_dict(["syn_pope"], manager).values()
    errors: list[str] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        outcomes = []
        for doc in task.test_docs():
            (image,) = task.doc_to_visual(doc)
            scores = task.process_results(doc, [doc["answer"]])  # the right answer
            outcomes.append(
                (doc["image"].endswith("00000.png"), image.size, scores["pope_accuracy"]["score"])
            )
    finally:
        logger.remove(sink)
    damaged = [o for o in outcomes if o[0]]
    assert len(outcomes) == len(task.test_docs()) and damaged
    assert all(size == PLACEHOLDER_SIZE and score == 0.0 for _, size, score in damaged)
    assert all(score == 1.0 for flag, _, score in outcomes if not flag)
    first_id = next(doc["question_id"] for doc in task.test_docs() if doc["image"].endswith("00000.png"))
    assert any(f"question_id={first_id!r}" in message and "cannot be read" in message for message in errors)
