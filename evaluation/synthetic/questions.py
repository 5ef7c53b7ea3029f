"""Question kinds of the synthetic world, grouped by the benchmark whose format they take.

Every image shows one thing: a shape (a colour, a kind and a size, anywhere on the canvas) or a
word. The questions ask about that thing in each benchmark's format: its colour and size, whether it
is a given object, which word is written. One thing per image is deliberate: a tiny
model trained for minutes learns to read an attribute off its visual tokens, but not to bind
attributes between several objects (the former multi-object scenes stayed at chance in 300
stage-2 steps of benchmarks/bench_learnability.py). Fine detail is what separates the projectors: small shapes
and medium-size words cover few patches, so they suffer first when tokens are compressed.

Each kind has a scene recipe (what `sample_scene` should draw) and an `ask` function that reads
the scene record and returns the kind's items in the benchmark's terms (see `formats.py` for the
item fields), or None when the scene does not allow an unambiguous question. Training turns and
evaluation rows come from the same kinds, so they always agree on wording and answer format.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.synthetic.scene import Scene, Shape, Text, pick, sample_canvas, sample_scene
from evaluation.synthetic.vocabulary import (
    COLOR_NAMES,
    COLOR_WEIGHTS,
    COLORS,
    MME_SUFFIX,
    SIZES,
    WORD_SCALES,
    WORDS,
)

ANSWER_NOISE = 0.1  # chance that one of TextVQA's ten annotators disagrees
MAX_NOISY_ANSWERS = 3  # so the drawn text always keeps a clear majority of the ten answers
SCENE_TRIES = 200

Recipe = Callable[[np.random.Generator], dict]
Ask = Callable[[Scene, np.random.Generator], "list[dict] | None"]


@dataclass(frozen=True)
class Kind:
    task: str  # the evaluation set: one of EVAL_TASKS
    name: str  # MME / MMBench category, GQA detailed type, or the reading kind
    recipe: Recipe  # keyword arguments for sample_scene (minus rng and canvas)
    ask: Ask
    answers: int  # how many answers the kind admits: a uniform guess is right with 1 / answers


def draw_scene(kind: Kind, rng: np.random.Generator) -> tuple[Scene, list[dict]]:
    """A scene drawn for `kind` and the kind's items about it (rejection sampling)."""
    for _ in range(SCENE_TRIES):
        scene = sample_scene(rng, sample_canvas(rng), **kind.recipe(rng))
        if scene is not None and (items := kind.ask(scene, rng)):
            return scene, items
    raise RuntimeError(
        f"no scene for {kind.task}/{kind.name} in {SCENE_TRIES} tries; the recipe cannot satisfy ask()"
    )


def one_shape(rng: np.random.Generator) -> dict:
    return {"n_shapes": 1, "text_kinds": ()}


def one_word(rng: np.random.Generator) -> dict:
    return {"n_shapes": 0, "text_kinds": ("word",), "text_scale": pick(rng, WORD_SCALES)}


# ---------------------------------------------------------------- reading a scene


def the_shape(scene: Scene) -> Shape | None:
    """The scene's only item, when it is a shape."""
    return scene.shapes[0] if len(scene.shapes) == 1 and not scene.texts else None


def the_word(scene: Scene) -> Text | None:
    """The scene's only item, when it is a word."""
    return (
        scene.texts[0]
        if len(scene.texts) == 1 and not scene.shapes and scene.texts[0].kind == "word"
        else None
    )


def _other(rng: np.random.Generator, options, exclude):
    return pick(rng, [o for o in options if o != exclude])


def _swap(rng: np.random.Generator, first: str, second: str) -> tuple[str, str]:
    return (first, second) if rng.random() < 0.5 else (second, first)


# ---------------------------------------------------------------- MME: yes/no pairs


def _mme_pair(yes: str, no: str) -> list[dict]:
    return [{"question": yes + MME_SUFFIX, "answer": "Yes"}, {"question": no + MME_SUFFIX, "answer": "No"}]


def _mme_existence(scene, rng):
    if (s := the_shape(scene)) is None:
        return None
    q = "Is there a {} shape in the image?"
    return _mme_pair(q.format(s.color), q.format(_other(rng, COLOR_NAMES, s.color)))


def _mme_color(scene, rng):
    if (s := the_shape(scene)) is None:
        return None
    return _mme_pair(f"Is the shape {s.color}?", f"Is the shape {_other(rng, COLOR_NAMES, s.color)}?")


def _mme_ocr(scene, rng):
    if (word := the_word(scene)) is None:
        return None
    q = 'Is the word in the image "{}"?'
    return _mme_pair(q.format(word.content), q.format(_other(rng, WORDS, word.content)))


# ---------------------------------------------------------------- TextVQA: reading, ten answers


def _annotator_answers(rng: np.random.Generator, truth: str) -> list[str]:
    """Ten answers: the truth, with up to MAX_NOISY_ANSWERS annotators writing something else."""
    answers = []
    for _ in range(10):
        noisy = len(answers) - answers.count(truth) < MAX_NOISY_ANSWERS and rng.random() < ANSWER_NOISE
        answers.append(
            pick(rng, ("unanswerable", _other(rng, WORDS, truth.upper()).lower())) if noisy else truth
        )
    return answers


def _textvqa_read(scene, rng):
    if (word := the_word(scene)) is None:
        return None
    answer = word.answer
    return [
        {
            "question": "what is written in the image?",
            "answer": answer,
            "answers": _annotator_answers(rng, answer),
        }
    ]


# ---------------------------------------------------------------- GQA: short answers, exact match


def _gqa(question, answer, full_answer, structural, semantic, detailed, semantic_str) -> list[dict]:
    return [
        {
            "question": question,
            "answer": answer,
            "fullAnswer": full_answer,
            "types": {"structural": structural, "semantic": semantic, "detailed": detailed},
            "semanticStr": semantic_str,
        }
    ]


def _gqa_query_color(scene, rng):
    if (s := the_shape(scene)) is None:
        return None
    return _gqa(
        "What color is the shape?", s.color, f"The shape is {s.color}.", "query", "attr", "queryAttr",
        "select: shape ->query: color",
    )  # fmt: skip


def _gqa_choose_color(scene, rng):
    if (s := the_shape(scene)) is None:
        return None
    first, second = _swap(rng, s.color, _other(rng, COLOR_NAMES, s.color))
    return _gqa(
        f"Is the shape {first} or {second}?", s.color, f"The shape is {s.color}.", "choose", "attr",
        "chooseAttr", f"select: shape ->choose color: {first}|{second}",
    )  # fmt: skip


def _gqa_choose_size(scene, rng):
    if (s := the_shape(scene)) is None:
        return None
    first, second = _swap(rng, *SIZES)
    return _gqa(
        f"Is the shape {first} or {second}?", s.size, f"The shape is {s.size}.", "choose", "attr",
        "chooseSize", f"select: shape ->choose size: {first}|{second}",
    )  # fmt: skip


# ---------------------------------------------------------------- MMBench: four options, circular

MMBENCH_L2 = {  # MMBench's L2 ability of each category
    "attribute_recognition": "finegrained_perception (instance-level)",
    "ocr": "finegrained_perception (instance-level)",
}


def _mmbench(question: str, correct: str, pool, rng) -> list[dict]:
    distractors = [str(x) for x in rng.choice([p for p in pool if p != correct], size=3, replace=False)]
    options = [correct, *distractors]
    options = [options[i] for i in rng.permutation(len(options))]
    return [{"question": question, "options": options, "answer_index": options.index(correct)}]


def _mmbench_attribute_recognition(scene, rng):
    if (s := the_shape(scene)) is None:
        return None
    return _mmbench("What color is the shape?", s.color, COLOR_NAMES, rng)


def _mmbench_ocr(scene, rng):
    if (word := the_word(scene)) is None:
        return None
    return _mmbench("Which word is written in the image?", word.content, WORDS, rng)


# ---------------------------------------------------------------- POPE: existence, three samplings

POPE_CATEGORIES = ("random", "popular", "adversarial")
POPE_POPULAR_TOP = 3  # "popular" negatives come from the most frequent colours

COLORS_BY_PRIOR = tuple(c for _, c in sorted(zip(COLOR_WEIGHTS, COLOR_NAMES, strict=True), reverse=True))


def nearest_colors(color: str) -> list[str]:
    """The other colours, closest in RGB first: what a model that sees colour poorly confuses."""
    rgb = np.array(COLORS[color])
    return sorted(
        (c for c in COLOR_NAMES if c != color), key=lambda c: float(np.sum((np.array(COLORS[c]) - rgb) ** 2))
    )


def pope_negatives(shape: Shape) -> dict[str, list[str]]:
    """Absent colours per POPE sampling: random (any), popular (among the most frequent colours),
    adversarial (the two closest to the colour that is there).

    Objects are named by colour ("a red shape"): asking by kind as well made the tiny LLM's text
    pretraining miss the colour look-up every other question builds on (0.17 instead of 1.0)."""
    absent = [c for c in COLOR_NAMES if c != shape.color]
    return {
        "random": absent,
        "popular": [c for c in COLORS_BY_PRIOR[:POPE_POPULAR_TOP] if c != shape.color],
        "adversarial": nearest_colors(shape.color)[:2],
    }


def _pope(scene, rng):
    """Per category one question about the shape that is there and one about an absent colour,
    as in POPE's evaluation files."""
    if (s := the_shape(scene)) is None:
        return None
    q = "Is there a {} shape in the image?"
    items, asked = [], set()
    for category, negatives in pope_negatives(s).items():
        negative = pick(rng, [n for n in negatives if n not in asked] or negatives)
        asked.add(negative)
        items.append({"question": q.format(s.color), "answer": "yes", "category": category})
        items.append({"question": q.format(negative), "answer": "no", "category": category})
    return items


# ---------------------------------------------------------------- the catalogue

KINDS: tuple[Kind, ...] = (
    Kind("syn_mme", "existence", one_shape, _mme_existence, 2),
    Kind("syn_mme", "color", one_shape, _mme_color, 2),
    Kind("syn_mme", "OCR", one_word, _mme_ocr, 2),
    Kind("syn_textvqa", "read", one_word, _textvqa_read, len(WORDS)),
    Kind("syn_gqa", "queryAttr", one_shape, _gqa_query_color, len(COLOR_NAMES)),
    Kind("syn_gqa", "chooseAttr", one_shape, _gqa_choose_color, 2),
    Kind("syn_gqa", "chooseSize", one_shape, _gqa_choose_size, 2),
    Kind("syn_mmbench", "attribute_recognition", one_shape, _mmbench_attribute_recognition, 4),
    Kind("syn_mmbench", "ocr", one_word, _mmbench_ocr, 4),
    Kind("syn_pope", "existence", one_shape, _pope, 2),
)
EVAL_TASKS = ("syn_mme", "syn_textvqa", "syn_gqa", "syn_mmbench", "syn_pope")


def kinds_of(task: str) -> tuple[Kind, ...]:
    found = tuple(k for k in KINDS if k.task == task)
    if not found:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {', '.join(EVAL_TASKS)}")
    return found
