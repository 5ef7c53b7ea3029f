"""Build a synthetic world on disk: LLaVA training data and benchmark-shaped evaluation sets.

A world lives in `<root>/<preset>-seed<seed>-<digest>/`, where the digest covers the preset's
parameters and the generator's source and Pillow version, so a world is reused only when it
would be regenerated bit for bit. It is written into a temporary folder and renamed into place,
so a folder that exists is complete. Layout:

    manifest.json            parameters, counts, blind baselines (no timestamps: bit-identical)
    stage1.json stage2.json  LLaVA JSON; image paths relative to images/. stage2.json ends with
                             text-only multiple-choice questions in words (see stage2_text_samples).
    language.json            the stage-1 and stage-2 samples in words, each image replaced by its caption:
                             the text a tiny LLM is pretrained on before it sees images (stage 0). Stage-1
                             samples keep stage 1's `plain` template, so the LLM learns to repeat a
                             description that precedes it, which stage 1 then asks of the visual tokens.
                             Each stage-2 question is a sample of its own, right after the caption.
    language_anneal.json     language.json with every multiple-choice sample six times: the corpus of
                             stage 0's second, lower-lr phase (stage0_anneal), where the LLM learns to
                             give the option's letter, which the mixed corpus alone does not teach it.
    images/stage1/*.png images/stage2/*.png
    eval/<task>/test.jsonl   rows in the benchmark's schema; image paths relative to the task folder
    eval/<task>/scenes.jsonl the scene record behind each image (what the answers were read from)
    eval/<task>/images/*.png

Every sample draws from its own generator seeded by (seed, split, index), and no evaluation
image is byte-identical to a training image.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import PIL
from tqdm import tqdm

from evaluation.synthetic import formats
from evaluation.synthetic.baselines import chance_levels, majority_levels
from evaluation.synthetic.questions import EVAL_TASKS, KINDS, Kind, draw_scene, kinds_of
from evaluation.synthetic.scene import Scene, encode_png, render_scene
from evaluation.synthetic.vocabulary import CAPTION_PROMPT, MMBENCH_OPTIONS_HEADER

FORMAT_VERSION = 1
GENERATOR_MODULES = ("vocabulary.py", "scene.py", "questions.py", "formats.py", "baselines.py", "world.py")
STAGE1, STAGE2, EVAL, STAGE2_TEXT = 1, 2, 3, 4  # split codes in the per-sample seeds
MANIFEST = "manifest.json"
EVAL_QUESTIONS_FILE = "test.jsonl"
EVAL_SCENES_FILE = "scenes.jsonl"
# Measured on the default world, from stage 0's LLM (400 steps of 32 at lr 3e-4, letters of held-out
# questions in words): x6 gives 0.64 with every other question kind still right, x3 stays at 0.3, and
# multiple choice alone gives 0.95 but forgets the rest (yes/no 0.57-0.71).
ANNEAL_OPTION_REPEATS = 6
# The tiny CLIP tower pretrained on this generator's scenes (`tokenpacker synth-tower`; see tower.py),
# which a sweep's cells on a synthetic world see through, as LLaVA sees through a pretrained CLIP.
SHIPPED_TOWER = Path(__file__).parent / "tiny_tower"
# The tiny LLM trained in words on the default world (stage 0 and its anneal; `tokenpacker synth-llm`,
# see evaluation/sweep/language.py), which the default sweep's cells start from, as LLaVA from Vicuna.
SHIPPED_LANGUAGE_MODEL = Path(__file__).parent / "tiny_llm"
# A shipped tower's or LLM's weights, and beside them how it was trained and the weights' digest.
WEIGHTS_FILE = "model.safetensors"
SETTINGS_FILE = "pretraining.json"


@dataclass(frozen=True)
class Preset:
    stage1_samples: int  # caption pairs
    stage2_samples: int  # conversations
    # multiple-choice questions in words added to stage2.json as text-only samples (as LLaVA-1.5 mixes
    # ShareGPT text into its instruction data), so stage 2 keeps the option letters the anneal taught
    stage2_text_samples: int
    max_turns: int  # questions per stage-2 conversation: 1 to max_turns
    # items per question kind: MME pairs, TextVQA and GQA questions, MMBench questions (each in
    # four rotations), POPE images (six questions each)
    eval_items: dict[str, int]


PRESETS: dict[str, Preset] = {
    "default": Preset(
        stage1_samples=2000,
        stage2_samples=5000,
        stage2_text_samples=1000,
        max_turns=3,
        # 614 prompts per model: enough for 95% intervals of about +-0.1 per task, small enough that
        # the eight cells of the tiny sweep evaluate in minutes on 2 CPU cores. MMBench: 26 per kind,
        # two kinds, 52 questions (208 prompts). A question counts only when all four rotations are
        # right, so a model right in a tenth of them needs that many for its interval to clear chance
        # ((1/4)^4 = 0.39%): about four questions right lift a bootstrap lower bound above 0.
        eval_items={"syn_mme": 17, "syn_textvqa": 100, "syn_gqa": 34, "syn_mmbench": 26, "syn_pope": 17},
    ),
    "smoke": Preset(
        stage1_samples=200,
        stage2_samples=400,
        stage2_text_samples=80,
        max_turns=3,
        # GQA gets 30 questions: CI's smoke gate checks that the tiny models still learn it
        eval_items={"syn_mme": 3, "syn_textvqa": 8, "syn_gqa": 10, "syn_mmbench": 3, "syn_pope": 4},
    ),
}


@dataclass(frozen=True)
class World:
    """Paths of a generated world. Hand `eval_root` to the syn_* lmms-eval tasks as their data root."""

    folder: Path
    stage1_json: Path
    stage2_json: Path
    language_json: Path
    language_anneal_json: Path
    image_folder: Path  # LLaVA's --image_folder: the JSON's image paths are relative to it
    eval_root: Path  # <eval_root>/<task>/test.jsonl for each task in EVAL_TASKS
    manifest_path: Path

    @classmethod
    def at(cls, folder: Path) -> World:
        return cls(
            folder=folder,
            stage1_json=folder / "stage1.json",
            stage2_json=folder / "stage2.json",
            language_json=folder / "language.json",
            language_anneal_json=folder / "language_anneal.json",
            image_folder=folder / "images",
            eval_root=folder / "eval",
            manifest_path=folder / MANIFEST,
        )

    @cached_property
    def manifest(self) -> dict:
        return json.loads(self.manifest_path.read_text())


def check_preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise ValueError(f"unknown synthetic world preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[preset]


def world_key(preset: str, seed: int) -> str:
    """The world's folder name: changes whenever the generated bytes could change."""
    digest = hashlib.sha256()
    digest.update(
        json.dumps({"format": FORMAT_VERSION, "preset": asdict(check_preset(preset)), "seed": seed}).encode()
    )
    digest.update(PIL.__version__.encode())
    package = Path(__file__).parent
    for module in GENERATOR_MODULES:
        digest.update((package / module).read_bytes())
    return f"{preset}-seed{seed}-{digest.hexdigest()[:12]}"


def weights_digest(folder: Path) -> str:
    """sha256 of a shipped tower's or LLM's weights file, recorded beside them so a swapped file shows."""
    return hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()


def tower_digest(folder: Path = SHIPPED_TOWER) -> str | None:
    """Covers a tower's config and weights, so cells trained through it are redone when it is replaced;
    None when it is not there (the training's own check then names what is missing)."""
    files = [folder / "config.json", folder / WEIGHTS_FILE]
    if not all(file.is_file() for file in files):
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.read_bytes())
    return digest.hexdigest()[:12]


def build_world(root: Path, preset: str = "default", seed: int = 0) -> World:
    """The world for (preset, seed) under `root`, generated unless it is already there."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    world = World.at(Path(root) / world_key(preset, seed))
    if world.manifest_path.is_file():
        return world
    world.folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=world.folder.parent, prefix=f".{world.folder.name}."))
    try:
        _write_world(World.at(staging), check_preset(preset), preset, seed)
        try:
            os.rename(staging, world.folder)
        except OSError:
            if not world.manifest_path.is_file():  # not a concurrent build that finished first
                raise FileExistsError(
                    f"{world.folder} exists but holds no {MANIFEST}, so it is not a finished world; delete it and run again"
                ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return world


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _write_world(world: World, preset: Preset, name: str, seed: int) -> None:
    training_images: set[str] = set()
    described: list[dict] = []
    stage1 = _write_training(
        world, "stage1", _stage1_samples(seed, preset), training_images, described, "plain"
    )
    stage2 = _write_training(world, "stage2", _stage2_samples(seed, preset), training_images, described)
    options = multiple_choice(described)
    text_only = stage2_text_samples(options, preset.stage2_text_samples, _rng(seed, STAGE2_TEXT))
    annealing = described + anneal_copies(options)
    for path, records in (
        (world.stage1_json, stage1),
        (world.stage2_json, stage2 + text_only),
        (world.language_json, described),
        (world.language_anneal_json, annealing),
    ):
        path.write_text(json.dumps(records))
    evaluation, baselines = {}, {}
    chance = chance_levels()
    for task in EVAL_TASKS:
        evaluation[task], majority = _write_eval_set(
            world.eval_root / task, task, preset, seed, training_images
        )
        baselines[task] = {m: {"chance": chance[task][m], "majority": majority[m]} for m in chance[task]}
    manifest = {
        "format": FORMAT_VERSION,
        "preset": name,
        "seed": seed,
        "parameters": asdict(preset),
        "stage1": {"file": world.stage1_json.name, "samples": len(stage1)},
        "stage2": {
            "file": world.stage2_json.name,
            "samples": len(stage2) + len(text_only),
            "text_only": len(text_only),
        },
        "language": {"file": world.language_json.name, "samples": len(described)},
        "language_anneal": {"file": world.language_anneal_json.name, "samples": len(annealing)},
        "eval": evaluation,
        "baselines": baselines,
    }
    world.manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")


# ---------------------------------------------------------------- training data


def caption(scene: Scene) -> str:
    """Every item, left to right: "A large red circle and the word CAT."."""
    items = [(s.center[0], f"a {s.size} {s.name}") for s in scene.shapes]
    x_center = {t: (t.box[0] + t.box[2]) / 2 for t in scene.texts}
    items += [(x_center[t], f"the {t.kind} {t.content}") for t in scene.texts]
    parts = [text for _, text in sorted(items)]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return listed[0].upper() + listed[1:] + "."


def _stage1_samples(seed: int, preset: Preset) -> Iterator[tuple[Scene, list[tuple[str, str]]]]:
    for index in range(preset.stage1_samples):
        rng = _rng(seed, STAGE1, index)
        scene, _ = draw_scene(KINDS[index % len(KINDS)], rng)
        yield scene, [(CAPTION_PROMPT, caption(scene))]


def _turn(kind: Kind, scene: Scene, items: list[dict], rng: np.random.Generator) -> tuple[str, str]:
    """One (prompt, answer) from a kind's items, built through the evaluation rows' own format."""
    row = formats.rows(kind, scene, items, image="", image_id="0", serial=0)
    chosen = row[int(rng.integers(len(row)))]
    return formats.prompt(kind.task, chosen), formats.answer(kind.task, chosen)


def _stage2_samples(seed: int, preset: Preset) -> Iterator[tuple[Scene, list[tuple[str, str]]]]:
    """Conversations of 1 to max_turns questions about one image; the first turn's kind cycles
    through the catalogue, later turns come from other kinds that apply to the same scene."""
    for index in range(preset.stage2_samples):
        rng = _rng(seed, STAGE2, index)
        kind = KINDS[index % len(KINDS)]
        scene, items = draw_scene(kind, rng)
        turns = [_turn(kind, scene, items, rng)]
        wanted = int(rng.integers(1, preset.max_turns + 1))
        for other in (KINDS[i] for i in rng.permutation(len(KINDS))):
            if len(turns) >= wanted:
                break
            if other is not kind and (more := other.ask(scene, rng)):
                turn = _turn(other, scene, more, rng)
                if turn[0] not in (t[0] for t in turns):
                    turns.append(turn)
        yield scene, turns


def _write_training(
    world: World,
    split: str,
    samples,
    training_images: set[str],
    described: list[dict],
    template: str | None = None,
) -> list[dict]:
    """Write the split's images and return its LLaVA records; add the same conversations in words to
    `described` (rendered with `template` when given)."""
    folder = world.image_folder / split
    folder.mkdir(parents=True)
    records = []
    for index, (scene, turns) in enumerate(
        tqdm(samples, desc=f"synthetic {split}", unit="sample", disable=None)
    ):
        png = encode_png(render_scene(scene))
        training_images.add(hashlib.sha256(png).hexdigest())
        image = f"{split}/{index:06d}.png"
        (world.image_folder / image).write_bytes(png)
        conversation = []
        for number, (question, answer) in enumerate(turns):
            conversation.append(
                {"from": "human", "value": f"<image>\n{question}" if number == 0 else question}
            )
            conversation.append({"from": "gpt", "value": answer})
        records.append({"id": f"{split}-{index:06d}", "image": image, "conversations": conversation})
        for number, words in enumerate(in_words(conversation, scene, template)):
            sample = {"id": f"{split}-words-{index:06d}-{number}", "conversations": words}
            described.append(sample | {"template": template} if template else sample)
    return records


def multiple_choice(described: list[dict]) -> list[dict]:
    """The corpus's multiple-choice samples (MMBench questions in words), in corpus order."""
    return [s for s in described if MMBENCH_OPTIONS_HEADER in s["conversations"][0]["value"]]


def anneal_copies(options: list[dict]) -> list[dict]:
    """What the anneal corpus adds to the language corpus: each multiple-choice sample another
    ANNEAL_OPTION_REPEATS - 1 times (with ids of their own), enough option letters to learn them,
    enough of the rest not to forget it."""
    return [s | {"id": f"{s['id']}-copy{k}"} for k in range(1, ANNEAL_OPTION_REPEATS) for s in options]


def stage2_text_samples(options: list[dict], count: int, rng: np.random.Generator) -> list[dict]:
    """`count` of the multiple-choice samples, drawn without replacement, as text-only
    stage-2 samples. Measured in the default sweep after the anneal (one run each): with 1000 of them,
    MMBench beats chance for 7 of 8 models, twice; without, for 2 and for 5 of 8. They cost some MME
    (the models' median 355 and 340 against 360-390), as the image samples drop to 5 in 6."""
    chosen = sorted(rng.choice(len(options), size=min(count, len(options)), replace=False).tolist())
    return [
        {"id": f"stage2-text-{n:06d}", "conversations": options[i]["conversations"]}
        for n, i in enumerate(chosen)
    ]


def in_words(conversation: list[dict], scene: Scene, template: str | None = None) -> list[list[dict]]:
    """The conversation with its image replaced by the scene's caption: what a text-only LLM can learn from.
    `plain` keeps only the image of a human turn, so there the caption is all that is left of it. Every
    other question becomes a one-turn sample right after the caption: in one long conversation the
    tiny LLM learnt to answer "What color is the shape?" with a colour named by an earlier question
    instead of the caption's (measured: colour 0.4 against 1.0 for one-turn samples)."""
    words = caption(scene)
    if template == "plain":
        return [[{**conversation[0], "value": words}, *conversation[1:]]]
    samples = []
    for human, answer in zip(conversation[::2], conversation[1::2], strict=True):
        question = human["value"].removeprefix("<image>\n")
        samples.append([{**human, "value": f"{words}\n{question}"}, answer])
    return samples


# ---------------------------------------------------------------- evaluation sets


def _eval_scene(kind: Kind, seed: int, stream: tuple[int, ...], training_images: set[str]):
    """A scene for `kind` whose image is not byte-identical to any training image."""
    for attempt in range(100):
        rng = _rng(seed, EVAL, *stream, attempt)
        scene, items = draw_scene(kind, rng)
        png = encode_png(render_scene(scene))
        if hashlib.sha256(png).hexdigest() not in training_images:
            return scene, items, png
    raise RuntimeError(f"{kind.task}/{kind.name}: every candidate image duplicates a training image")


def _write_eval_set(folder: Path, task: str, preset: Preset, seed: int, training_images: set[str]):
    """Write one task's rows, scene records and images; returns (summary, majority baselines)."""
    (folder / "images").mkdir(parents=True)
    rows, scenes = [], []
    answers_by_kind: dict[str, list[str]] = defaultdict(list)
    task_index = EVAL_TASKS.index(task)
    kinds = kinds_of(task)
    jobs = [(k, kind, j) for k, kind in enumerate(kinds) for j in range(preset.eval_items[task])]
    for k, kind, j in tqdm(jobs, desc=f"synthetic {task}", unit="image", disable=None):
        scene, items, png = _eval_scene(kind, seed, (task_index, k, j), training_images)
        image_id = f"{len(scenes):05d}"
        image = f"images/{image_id}.png"
        (folder / image).write_bytes(png)
        new_rows = formats.rows(kind, scene, items, image, image_id, serial=len(rows))
        rows += new_rows
        scenes.append({"image": image, "kind": kind.name, "scene": scene.to_record()})
        answers_by_kind[kind.name] += [formats.answer(task, row) for row in new_rows]
    _write_jsonl(folder / EVAL_QUESTIONS_FILE, rows)
    _write_jsonl(folder / EVAL_SCENES_FILE, scenes)
    summary = {"folder": f"eval/{task}", "questions": len(rows), "images": len(scenes)}
    return summary, majority_levels(task, answers_by_kind)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
