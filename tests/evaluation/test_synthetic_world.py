"""The synthetic world on disk: deterministic, cached, disjoint, fast, and every answer right.

Answers are re-derived here from the scene records with a small independent reader of the
questions (regular expressions and geometry), not with the generator's own code.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from pathlib import Path

import pytest

from evaluation.synthetic import EVAL_TASKS, build_world, chance_levels
from evaluation.synthetic.scene import Scene, encode_png, render_scene
from evaluation.synthetic.vocabulary import MMBENCH_OPTIONS_HEADER
from evaluation.synthetic.world import ANNEAL_OPTION_REPEATS, PRESETS, World, _stage1_samples, world_key


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("worlds"), "smoke", seed=0)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _eval_set(world: World, task: str) -> tuple[list[dict], dict[str, Scene]]:
    folder = world.eval_root / task
    scenes = {s["image"]: Scene.from_record(s["scene"]) for s in _read_jsonl(folder / "scenes.jsonl")}
    return _read_jsonl(folder / "test.jsonl"), scenes


# ---------------------------------------------------------------- an independent reader of the questions


def _only_shape(scene: Scene):
    (shape,) = scene.shapes
    assert not scene.texts
    return shape


def _only_word(scene: Scene) -> str:
    (text,) = scene.texts
    assert not scene.shapes and text.kind == "word"
    return text.content


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def read_answer(question: str, scene: Scene) -> str:
    """The answer to one synthetic question, from the scene record alone."""
    q = question.replace(" Please answer yes or no.", "")
    if m := re.fullmatch(r'Is the word in the image "(\w+)"\?', q):
        return _yes(_only_word(scene) == m[1])
    if q in ("what is written in the image?", "Which word is written in the image?"):
        word = _only_word(scene)
        return word if q.startswith("Which") else word.lower()
    shape = _only_shape(scene)
    if m := re.fullmatch(r"Is there a (\w+) shape in the image\?", q):
        return _yes(m[1] == shape.color)
    if m := re.fullmatch(r"Is the shape (small|large) or (small|large)\?", q):
        assert {m[1], m[2]} == {"small", "large"}
        return shape.size
    if m := re.fullmatch(r"Is the shape (\w+) or (\w+)\?", q):
        assert shape.color in (m[1], m[2]) and m[1] != m[2]
        return shape.color
    if m := re.fullmatch(r"Is the shape (\w+)\?", q):
        return _yes(shape.color == m[1])
    if q == "What color is the shape?":
        return shape.color
    raise AssertionError(f"the test cannot read question {question!r}")


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("task", ["syn_mme", "syn_gqa", "syn_pope"])
def test_yes_no_and_short_answers_match_the_scene(world, task):
    rows, scenes = _eval_set(world, task)
    for row in rows:
        assert read_answer(row["question"], scenes[row["image"]]) == row["answer"].lower(), row


def test_textvqa_majority_answer_is_the_drawn_text(world):
    rows, scenes = _eval_set(world, "syn_textvqa")
    for row in rows:
        truth = read_answer(row["question"], scenes[row["image"]])
        answers = Counter(row["answers"])
        assert len(row["answers"]) == 10 and answers[truth] >= 7, row
        assert row["ocr_tokens"] == [t.content for t in scenes[row["image"]].texts]


def test_mmbench_answer_letter_names_the_only_right_option(world):
    rows, scenes = _eval_set(world, "syn_mmbench")
    for row in rows:
        truth = read_answer(row["question"], scenes[row["image"]])
        options = {letter: row[letter] for letter in "ABCD"}
        assert options[row["answer"]] == truth and list(options.values()).count(truth) == 1, row
        assert len(set(options.values())) == 4


def test_mmbench_rows_are_the_four_rotations_of_each_question(world):
    rows, _ = _eval_set(world, "syn_mmbench")
    by_question: dict[int, list[dict]] = {}
    for row in rows:
        by_question.setdefault(row["index"] % 1_000_000, []).append(row)
    for group in by_question.values():
        assert sorted(r["index"] // 1_000_000 for r in group) == [0, 1, 2, 3]
        first = [group[0][letter] for letter in "ABCD"]
        for row in group:
            k = row["index"] // 1_000_000
            assert [row[letter] for letter in "ABCD"] == first[k:] + first[:k]


def test_mme_rows_come_in_yes_no_pairs_per_image(world):
    rows, _ = _eval_set(world, "syn_mme")
    pairs: dict[str, list[str]] = {}
    for row in rows:
        pairs.setdefault(row["question_id"], []).append(row["answer"])
    assert all(sorted(answers) == ["No", "Yes"] for answers in pairs.values())
    categories = {row["category"] for row in rows}
    assert categories == {"existence", "color", "OCR"}


def test_pope_is_balanced_over_three_samplings(world):
    rows, _ = _eval_set(world, "syn_pope")
    counts = Counter((row["category"], row["answer"]) for row in rows)
    assert len(set(counts.values())) == 1
    assert {c for c, _ in counts} == {"random", "popular", "adversarial"}


def test_stored_images_are_the_rendered_scenes(world):
    for task in EVAL_TASKS:
        _, scenes = _eval_set(world, task)
        for image, scene in scenes.items():
            assert (world.eval_root / task / image).read_bytes() == encode_png(render_scene(scene))


# ---------------------------------------------------------------- training data


def test_training_data_is_llava_json(world):
    for path, split in ((world.stage1_json, "stage1"), (world.stage2_json, "stage2")):
        records = [r for r in json.loads(path.read_text()) if "image" in r]
        assert len(records) == getattr(PRESETS["smoke"], f"{split}_samples")
        for record in records:
            assert set(record) == {"id", "image", "conversations"}
            assert (world.image_folder / record["image"]).is_file()
            turns = record["conversations"]
            assert [t["from"] for t in turns] == ["human", "gpt"] * (len(turns) // 2)
            assert turns[0]["value"].startswith("<image>\n")
            assert all("<image>" not in t["value"] for t in turns[1:])


def test_stage1_captions_name_every_item(world):
    records = json.loads(world.stage1_json.read_text())
    for record, (scene, _) in zip(records[:50], _stage1_samples(0, PRESETS["smoke"]), strict=False):
        assert (world.image_folder / record["image"]).read_bytes() == encode_png(render_scene(scene))
        caption = record["conversations"][1]["value"].lower()
        for shape in scene.shapes:
            assert f"a {shape.size} {shape.name}" in caption
        for text in scene.texts:
            assert f"the {text.kind} {text.content.lower()}" in caption


def test_the_language_corpus_is_the_training_data_in_words(world):
    """Stage 0's text: every training sample with its image replaced by its caption, stage-1 samples
    in stage 1's plain template (caption in, caption out), each stage-2 question a sample of its own."""
    corpus = json.loads(world.language_json.read_text())
    stage1 = json.loads(world.stage1_json.read_text())
    stage2 = [r for r in json.loads(world.stage2_json.read_text()) if "image" in r]
    questions = [(record, turn) for record in stage2 for turn in range(0, len(record["conversations"]), 2)]
    assert len(corpus) == len(stage1) + len(questions) == world.manifest["language"]["samples"]
    for words, record in zip(corpus[: len(stage1)], stage1, strict=True):
        caption = record["conversations"][1]["value"]
        assert words["template"] == "plain" and words["conversations"][0]["value"] == caption
    for words, (record, turn) in zip(corpus[len(stage1) :], questions, strict=True):
        assert "template" not in words and "image" not in words
        human, answer = words["conversations"]
        caption, question = human["value"].split("\n", 1)
        assert caption.endswith(".") and "<image>" not in human["value"]
        assert question == record["conversations"][turn]["value"].removeprefix("<image>\n")
        assert answer == record["conversations"][turn + 1]


def test_stage2_ends_with_text_only_multiple_choice_questions_from_the_corpus(world):
    records = json.loads(world.stage2_json.read_text())
    text_only = records[PRESETS["smoke"].stage2_samples :]
    assert len(text_only) == PRESETS["smoke"].stage2_text_samples == world.manifest["stage2"]["text_only"]
    assert all("image" not in r for r in text_only) and all("image" in r for r in records[: -len(text_only)])
    corpus = [json.dumps(s["conversations"]) for s in json.loads(world.language_json.read_text())]
    chosen = [json.dumps(r["conversations"]) for r in text_only]
    assert all(MMBENCH_OPTIONS_HEADER in r["conversations"][0]["value"] for r in text_only)
    assert set(chosen) <= set(corpus) and len({r["id"] for r in text_only}) == len(text_only)
    assert len(set(chosen)) > len(chosen) // 2  # drawn across the corpus, not one sample repeated


def test_the_anneal_corpus_repeats_each_multiple_choice_sample(world):
    corpus = json.loads(world.language_json.read_text())
    annealing = json.loads(world.language_anneal_json.read_text())
    assert world.manifest["language_anneal"]["samples"] == len(annealing)
    assert annealing[: len(corpus)] == corpus and len({s["id"] for s in annealing}) == len(annealing)
    options = [s for s in corpus if MMBENCH_OPTIONS_HEADER in s["conversations"][0]["value"]]
    assert options and len(annealing) == len(corpus) + (ANNEAL_OPTION_REPEATS - 1) * len(options)
    copies = Counter(json.dumps(s["conversations"]) for s in annealing[len(corpus) :])
    originals = Counter(json.dumps(s["conversations"]) for s in options)
    assert copies == Counter({text: n * (ANNEAL_OPTION_REPEATS - 1) for text, n in originals.items()})


def test_evaluation_images_differ_from_training_images(world):
    training = {hashlib.sha256(p.read_bytes()).digest() for p in world.image_folder.rglob("*.png")}
    evaluation = {hashlib.sha256(p.read_bytes()).digest() for p in world.eval_root.rglob("*.png")}
    assert training and evaluation and not training & evaluation


# ---------------------------------------------------------------- determinism, caching, speed


def test_same_seed_gives_identical_bytes(world, tmp_path):
    again = build_world(tmp_path, "smoke", seed=0)
    assert again.folder.name == world.folder.name
    assert _files(again.folder) == _files(world.folder)


def test_different_seed_gives_a_different_world(world, tmp_path):
    other = build_world(tmp_path, "smoke", seed=1)
    assert other.folder.name != world.folder.name
    assert other.stage2_json.read_bytes() != world.stage2_json.read_bytes()
    ours, theirs = _files(world.eval_root), _files(other.eval_root)
    assert sum(ours[name] != theirs.get(name) for name in ours) > len(ours) // 2


def test_an_existing_world_is_reused_without_writing(world):
    before = world.manifest_path.stat().st_mtime_ns
    started = time.perf_counter()
    assert build_world(world.folder.parent, "smoke", seed=0) == world
    assert time.perf_counter() - started < 0.5
    assert world.manifest_path.stat().st_mtime_ns == before
    assert [p.name for p in world.folder.parent.iterdir() if p.name.startswith(".")] == []


def test_manifest_counts_and_baselines(world):
    manifest = world.manifest
    assert (manifest["preset"], manifest["seed"]) == ("smoke", 0)
    for task in EVAL_TASKS:
        rows, scenes = _eval_set(world, task)
        assert manifest["eval"][task] == {
            "folder": f"eval/{task}",
            "questions": len(rows),
            "images": len(scenes),
        }
        for metric, level in chance_levels()[task].items():
            assert manifest["baselines"][task][metric]["chance"] == level
    assert manifest["baselines"]["syn_pope"]["pope_f1_score"]["majority"] == pytest.approx(2 / 3)


def test_generation_is_fast(tmp_path):
    """The smoke world (about 700 images) in well under the time the default world's thousands may take."""
    started = time.perf_counter()
    world = build_world(tmp_path, "smoke", seed=3)
    seconds = time.perf_counter() - started
    images = sum(1 for _ in world.folder.rglob("*.png"))
    assert images / seconds > 150, f"{images} images in {seconds:.1f} s"


@pytest.mark.slow
def test_default_world_builds_in_seconds(tmp_path):
    started = time.perf_counter()
    world = build_world(tmp_path, "default", seed=0)
    assert time.perf_counter() - started < 60
    assert world.manifest["stage2"]["samples"] >= 1000
    assert all(100 <= world.manifest["eval"][task]["questions"] for task in EVAL_TASKS)
    assert sum(world.manifest["eval"][task]["questions"] for task in EVAL_TASKS) == 614


# ---------------------------------------------------------------- bad input


def test_unknown_preset_names_the_allowed_ones(tmp_path):
    with pytest.raises(ValueError, match="'huge'.*default, smoke"):
        build_world(tmp_path, "huge")


@pytest.mark.parametrize("seed", [-1, 1.5, "0"])
def test_bad_seed_is_rejected(tmp_path, seed):
    with pytest.raises(ValueError, match="seed"):
        build_world(tmp_path, "smoke", seed=seed)


def test_an_unfinished_folder_in_the_way_is_reported(tmp_path):
    (tmp_path / world_key("smoke", 5) / "junk").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not a finished world"):
        build_world(tmp_path, "smoke", seed=5)
