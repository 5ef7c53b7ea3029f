"""Question kinds of the synthetic world, grouped by the benchmark whose format they take.

Each kind has a scene recipe (what `sample_scene` should draw so the kind usually applies) and an
`ask` function that reads the scene record and returns the kind's items in the benchmark's terms
(see `formats.py` for the item fields), or None when the scene does not allow an unambiguous
question. Training turns and evaluation rows come from the same kinds, so they always agree on
wording and answer format.

Spatial words are strict: "A is left of B" needs A's centre at least 12% of the image width left
of B's; questions whose answer would hinge on a nearer pair are not asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.synthetic.scene import Scene, Shape, pick, sample_canvas, sample_scene
from evaluation.synthetic.vocabulary import (
    COLOR_NAMES,
    COLOR_WEIGHTS,
    LETTERS,
    MME_SUFFIX,
    NUMBERS,
    OPPOSITE,
    QUADRANTS,
    READABLE_KINDS,
    RELATIONS,
    SHAPE_WEIGHTS,
    SHAPES,
    SIZES,
    WORDS,
)

CLEAR_OFFSET = 0.12  # of the image side: how far apart centres must be for a spatial word
SIDE_MARGIN = 0.1  # of the image side: how far from the midline an object must be for "left"/"top"
ANSWER_NOISE = 0.1  # chance that one of TextVQA's ten annotators disagrees
MAX_NOISY_ANSWERS = 3  # so the drawn text always keeps a clear majority of the ten answers
SCENE_TRIES = 200
MAX_SHAPES = 4  # the most shapes any recipe draws

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


def _shapes(lo: int, hi: int, text_kinds: tuple[str, ...] = (), distractor_text: float = 0.3) -> Recipe:
    """n_shapes uniform in [lo, hi]; without given text kinds, an extra text item with probability `distractor_text`."""

    def recipe(rng: np.random.Generator) -> dict:
        kinds = text_kinds
        if not kinds and rng.random() < distractor_text:
            kinds = (pick(rng, READABLE_KINDS),)
        return {"n_shapes": int(rng.integers(lo, hi + 1)), "text_kinds": kinds}

    return recipe


def _texts(count: int, first: str | None = None) -> Recipe:
    """0-2 shapes and `count` text items of readable kinds; `first` fixes the first item's kind
    and then the others differ from it."""

    def recipe(rng: np.random.Generator) -> dict:
        if first is None:
            kinds = tuple(pick(rng, READABLE_KINDS) for _ in range(count))
        else:
            kinds = (first, *(pick(rng, [k for k in READABLE_KINDS if k != first]) for _ in range(count - 1)))
        return {"n_shapes": int(rng.integers(0, 3)), "text_kinds": kinds}

    return recipe


# ---------------------------------------------------------------- reading a scene


def relation_holds(scene: Scene, a: Shape, b: Shape, relation: str) -> bool | None:
    """True when `a` is clearly <relation> `b`, False when clearly the opposite, None when too close."""
    _, axis, sign = RELATIONS[relation]
    offset = (a.center[axis] - b.center[axis]) * sign
    threshold = CLEAR_OFFSET * (scene.width if axis == 0 else scene.height)
    if offset >= threshold:
        return True
    if offset <= -threshold:
        return False
    return None


def unique_related(scene: Scene, reference: Shape, relation: str) -> Shape | None:
    """The only shape clearly <relation> the reference, if no other shape is borderline."""
    others = [s for s in scene.shapes if s is not reference]
    verdicts = [relation_holds(scene, s, reference, relation) for s in others]
    if None in verdicts or verdicts.count(True) != 1:
        return None
    return others[verdicts.index(True)]


def side_of(scene: Scene, shape: Shape) -> str | None:
    x = shape.center[0] / scene.width
    return "left" if x <= 0.5 - SIDE_MARGIN else "right" if x >= 0.5 + SIDE_MARGIN else None


def quadrant_of(scene: Scene, shape: Shape) -> str | None:
    x, y = shape.center[0] / scene.width, shape.center[1] / scene.height
    if abs(x - 0.5) < SIDE_MARGIN or abs(y - 0.5) < SIDE_MARGIN:
        return None
    return f"{'top' if y < 0.5 else 'bottom'} {'left' if x < 0.5 else 'right'}"


def absent_names(scene: Scene) -> list[str]:
    present = {s.name for s in scene.shapes}
    return [f"{c} {k}" for c in COLOR_NAMES for k in SHAPES if f"{c} {k}" not in present]


def _unique_kind_shapes(scene: Scene) -> list[Shape]:
    kinds = [s.kind for s in scene.shapes]
    return [s for s in scene.shapes if kinds.count(s.kind) == 1]


def _related_pair(scene: Scene, rng: np.random.Generator):
    """A random (a, b, relation) with `a` clearly <relation> `b`, or None."""
    pairs = [
        (a, b, r)
        for a in scene.shapes
        for b in scene.shapes
        if a is not b
        for r in RELATIONS
        if relation_holds(scene, a, b, r)
    ]
    return pick(rng, pairs) if pairs else None


def _relation_target(scene: Scene, rng: np.random.Generator):
    """A random (reference, relation, target) where target is the only shape <relation> reference."""
    found = [
        (ref, r, t)
        for ref in scene.shapes
        for r in RELATIONS
        if (t := unique_related(scene, ref, r)) is not None
    ]
    return pick(rng, found) if found else None


def _texts_of(scene: Scene, kind: str):
    return [t for t in scene.texts if t.kind == kind]


def _other(rng: np.random.Generator, options, exclude):
    return pick(rng, [o for o in options if o != exclude])


# ---------------------------------------------------------------- MME: yes/no pairs


def _mme_pair(yes: str, no: str) -> list[dict]:
    return [{"question": yes + MME_SUFFIX, "answer": "Yes"}, {"question": no + MME_SUFFIX, "answer": "No"}]


def _mme_existence(scene, rng):
    absent = absent_names(scene)
    if not scene.shapes or not absent:
        return None
    q = "Is there a {} in the image?"
    return _mme_pair(q.format(pick(rng, scene.shapes).name), q.format(pick(rng, absent)))


def _mme_count(scene, rng):
    """The wrong count is uniform over the other possible counts, so a number alone never tells the answer."""
    n = len(scene.shapes)
    q = "Is the number of shapes in the image {}?"
    return _mme_pair(q.format(n), q.format(_other(rng, range(1, MAX_SHAPES + 1), n)))


def _mme_position(scene, rng):
    pair = _related_pair(scene, rng)
    if pair is None:
        return None
    a, b, r = pair
    q = "Is the {} {} the {}?"
    return _mme_pair(
        q.format(a.name, RELATIONS[r][0], b.name), q.format(a.name, RELATIONS[OPPOSITE[r]][0], b.name)
    )


def _mme_color(scene, rng):
    shapes = _unique_kind_shapes(scene)
    if not shapes:
        return None
    s = pick(rng, shapes)
    return _mme_pair(f"Is the {s.kind} {s.color}?", f"Is the {s.kind} {_other(rng, COLOR_NAMES, s.color)}?")


def _mme_ocr(scene, rng):
    words = _texts_of(scene, "word")
    if len(words) != 1:
        return None
    q = 'Is the word in the image "{}"?'
    return _mme_pair(q.format(words[0].content), q.format(_other(rng, WORDS, words[0].content)))


def _mme_numerical_calculation(scene, rng):
    sums = _texts_of(scene, "sum")
    if len(sums) != 1:
        return None
    a, b = (int(x) for x in sums[0].content.split("+"))
    q = "Is the answer to the arithmetic question in the image {}?"
    return _mme_pair(q.format(a + b), q.format(a + b + pick(rng, (-2, -1, 1, 2))))


# ---------------------------------------------------------------- TextVQA: reading, ten answers


def _annotator_answers(rng: np.random.Generator, truth: str, vocabulary) -> list[str]:
    """Ten answers: the truth, with up to MAX_NOISY_ANSWERS annotators writing something else."""
    answers = []
    for _ in range(10):
        noisy = len(answers) - answers.count(truth) < MAX_NOISY_ANSWERS and rng.random() < ANSWER_NOISE
        answers.append(
            pick(rng, ("unanswerable", _other(rng, vocabulary, truth.upper()).lower())) if noisy else truth
        )
    return answers


def _textvqa_item(rng, question: str, text) -> list[dict]:
    vocabulary = {"word": WORDS, "number": NUMBERS, "letter": LETTERS}[text.kind]
    return [
        {
            "question": question,
            "answer": text.answer,
            "answers": _annotator_answers(rng, text.answer, vocabulary),
        }
    ]


def _textvqa_read(scene, rng):
    if len(scene.texts) != 1 or scene.texts[0].kind not in READABLE_KINDS:
        return None
    return _textvqa_item(rng, "what is written in the image?", scene.texts[0])


def _textvqa_read_kind(kind: str) -> Ask:
    def ask(scene, rng):
        texts = _texts_of(scene, kind)
        if len(texts) != 1:
            return None
        return _textvqa_item(rng, f"what {kind} is written in the image?", texts[0])

    return ask


def _textvqa_read_color(scene, rng):
    readable = [t for t in scene.texts if t.kind in READABLE_KINDS]
    if len(scene.texts) < 2 or not readable:
        return None
    text = pick(rng, readable)
    return _textvqa_item(rng, f"what is written in {text.color}?", text)


# ---------------------------------------------------------------- GQA: compositional, exact match


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


def _gqa_relate(attribute: str) -> Ask:
    def ask(scene, rng):
        found = _relation_target(scene, rng)
        if found is None:
            return None
        ref, r, target = found
        phrase = RELATIONS[r][0]
        program = f"select: {ref.name} ->relate: shape,{phrase},s ->query: {attribute}"
        if attribute == "color":
            q, a, full = (
                f"What color is the shape {phrase} the {ref.name}?",
                target.color,
                f"The shape is {target.color}.",
            )
        else:
            q, a, full = f"What shape is {phrase} the {ref.name}?", target.kind, f"It is a {target.kind}."
        return _gqa(q, a, full, "query", "rel", f"relate{attribute.capitalize()}", program)

    return ask


def _gqa_verify_relation(scene, rng):
    pair = _related_pair(scene, rng)
    if pair is None:
        return None
    a, b, r = pair
    asked = r if rng.random() < 0.5 else OPPOSITE[r]
    phrase = RELATIONS[asked][0]
    answer = "yes" if asked == r else "no"
    full = f"{answer.capitalize()}, the {a.name} is {RELATIONS[r][0]} the {b.name}."
    program = f"select: {b.name} ->relate: {a.name},{phrase},s ->exist: ?"
    return _gqa(
        f"Is the {a.name} {phrase} the {b.name}?", answer, full, "verify", "rel", "relVerify", program
    )


def _gqa_side(scene, rng):
    sided = [(s, side) for s in scene.shapes if (side := side_of(scene, s))]
    if not sided:
        return None
    s, side = pick(rng, sided)
    full = f"The {s.name} is on the {side} of the image."
    program = f"select: {s.name} ->query: hposition"
    return _gqa(
        f"On which side of the image is the {s.name}?", side, full, "query", "rel", "positionQuery", program
    )


def _gqa_choose_color(scene, rng):
    shapes = _unique_kind_shapes(scene)
    if not shapes:
        return None
    s = pick(rng, shapes)
    other = _other(rng, COLOR_NAMES, s.color)
    first, second = (s.color, other) if rng.random() < 0.5 else (other, s.color)
    program = f"select: {s.kind} ->choose color: {first}|{second}"
    full = f"The {s.kind} is {s.color}."
    return _gqa(
        f"Is the {s.kind} {first} or {second}?", s.color, full, "choose", "attr", "chooseAttr", program
    )


def _gqa_choose_size(scene, rng):
    if not scene.shapes:
        return None
    s = pick(rng, scene.shapes)
    first, second = SIZES if rng.random() < 0.5 else SIZES[::-1]
    program = f"select: {s.name} ->choose size: {first}|{second}"
    full = f"The {s.name} is {s.size}."
    return _gqa(
        f"Is the {s.name} {first} or {second}?", s.size, full, "choose", "attr", "chooseSize", program
    )


def _gqa_both(scene, rng):
    if not scene.shapes:
        return None
    present = [s.name for s in scene.shapes]
    if len(present) >= 2 and rng.random() < 0.5:
        first, second = (str(x) for x in rng.choice(present, size=2, replace=False))
        answer, full = "yes", f"Yes, there are both a {first} and a {second}."
    else:
        first, second = pick(rng, present), pick(rng, absent_names(scene))
        if rng.random() < 0.5:
            first, second = second, first
        answer, full = "no", f"No, there is not both a {first} and a {second}."
    program = f"select: {first} ->exist: ? ->select: {second} ->exist: ? ->and: "
    q = f"Are there both a {first} and a {second} in the image?"
    return _gqa(q, answer, full, "logical", "obj", "existAndC", program)


# ---------------------------------------------------------------- MMBench: four options, circular

INSTANCE = "finegrained_perception (instance-level)"
CROSS_INSTANCE = "finegrained_perception (cross-instance)"
MMBENCH_L2 = {  # MMBench's L2 ability of each category
    "attribute_recognition": INSTANCE,
    "object_localization": INSTANCE,
    "ocr": INSTANCE,
    "spatial_relationship": CROSS_INSTANCE,
    "attribute_comparison": CROSS_INSTANCE,
}


def _mmbench(question: str, correct: str, distractors: list[str] | None, rng) -> list[dict] | None:
    if distractors is None:
        return None
    options = [correct, *distractors]
    options = [options[i] for i in rng.permutation(len(options))]
    return [{"question": question, "options": options, "answer_index": options.index(correct)}]


def _distinct_distractors(rng, pool, exclude: set[str], n: int = 3) -> list[str] | None:
    pool = [p for p in dict.fromkeys(pool) if p not in exclude]
    if len(pool) < n:
        return None
    return [str(x) for x in rng.choice(pool, size=n, replace=False)]


def _object_distractors(scene: Scene, rng, exclude: set[str]) -> list[str] | None:
    """Other objects of the scene first, then absent ones: options a reader must check."""
    present = [s.name for s in scene.shapes if s.name not in exclude]
    absent = absent_names(scene)
    chosen = list(rng.permutation(present)) + list(rng.permutation(absent))
    return _distinct_distractors(rng, [str(x) for x in chosen[:3]], exclude)


def _mmbench_attribute_recognition(scene, rng):
    shapes = _unique_kind_shapes(scene)
    if not shapes:
        return None
    s = pick(rng, shapes)
    return _mmbench(
        f"What color is the {s.kind}?", s.color, _distinct_distractors(rng, COLOR_NAMES, {s.color}), rng
    )


def _mmbench_object_localization(scene, rng):
    placed = [(s, q) for s in scene.shapes if (q := quadrant_of(scene, s))]
    if not placed:
        return None
    s, quadrant = pick(rng, placed)
    return _mmbench(
        f"Where is the {s.name} in the image?", quadrant, [q for q in QUADRANTS if q != quadrant], rng
    )


def _mmbench_ocr(scene, rng):
    words = _texts_of(scene, "word")
    if len(words) != 1:
        return None
    distractors = _distinct_distractors(rng, WORDS, {words[0].content})
    return _mmbench("Which word is written in the image?", words[0].content, distractors, rng)


def _mmbench_spatial_relationship(scene, rng):
    found = _relation_target(scene, rng)
    if found is None:
        return None
    ref, r, target = found
    distractors = _object_distractors(scene, rng, {ref.name, target.name})
    return _mmbench(f"Which object is {RELATIONS[r][0]} the {ref.name}?", target.name, distractors, rng)


def _mmbench_attribute_comparison(scene, rng):
    large = [s for s in scene.shapes if s.size == "large"]
    if len(large) != 1 or len(scene.shapes) < 2:
        return None
    distractors = _object_distractors(scene, rng, {large[0].name})
    return _mmbench("Which object is the largest in the image?", large[0].name, distractors, rng)


# ---------------------------------------------------------------- POPE: existence, three samplings

POPE_CATEGORIES = ("random", "popular", "adversarial")
POPE_POPULAR_TOP = 6  # "popular" negatives come from the most frequent objects

# Every object name, most frequent under the world's prior first.
OBJECTS_BY_PRIOR = tuple(
    f"{COLOR_NAMES[i]} {SHAPES[j]}"
    for i, j in sorted(
        ((i, j) for i in range(len(COLOR_NAMES)) for j in range(len(SHAPES))),
        key=lambda ij: -COLOR_WEIGHTS[ij[0]] * SHAPE_WEIGHTS[ij[1]],
    )
)


def pope_negatives(scene: Scene) -> dict[str, list[str]]:
    """Absent objects per POPE sampling: random (any), popular (among the most frequent objects),
    adversarial (sharing a colour or a shape with an object that is there)."""
    absent = absent_names(scene)
    colors, kinds = {s.color for s in scene.shapes}, {s.kind for s in scene.shapes}
    popular = [n for n in OBJECTS_BY_PRIOR[:POPE_POPULAR_TOP] if n in absent]
    return {
        "random": absent,
        "popular": popular or [n for n in OBJECTS_BY_PRIOR if n in absent],
        "adversarial": [n for n in absent if n.split()[0] in colors or n.split()[1] in kinds] or absent,
    }


def _pope(scene, rng):
    """Per category one present and one absent object, as in POPE's evaluation files."""
    if not scene.shapes:
        return None
    negatives = pope_negatives(scene)
    present = [str(name) for name in rng.permutation([s.name for s in scene.shapes])]
    q = "Is there a {} in the image?"
    items, asked = [], set()
    for index, category in enumerate(POPE_CATEGORIES):
        fresh = [n for n in negatives[category] if n not in asked] or negatives[category]
        negative = pick(rng, fresh)
        asked.add(negative)
        items.append(
            {"question": q.format(present[index % len(present)]), "answer": "yes", "category": category}
        )
        items.append({"question": q.format(negative), "answer": "no", "category": category})
    return items


# ---------------------------------------------------------------- the catalogue

N_READABLE = len(WORDS) + len(NUMBERS) + len(LETTERS)

KINDS: tuple[Kind, ...] = (
    Kind("syn_mme", "existence", _shapes(1, MAX_SHAPES), _mme_existence, 2),
    Kind("syn_mme", "count", _shapes(1, MAX_SHAPES), _mme_count, 2),
    Kind("syn_mme", "position", _shapes(2, 3), _mme_position, 2),
    Kind("syn_mme", "color", _shapes(1, 3), _mme_color, 2),
    Kind("syn_mme", "OCR", _shapes(0, 2, ("word",)), _mme_ocr, 2),
    Kind("syn_mme", "numerical_calculation", _shapes(0, 2, ("sum",)), _mme_numerical_calculation, 2),
    Kind("syn_textvqa", "read", _texts(1), _textvqa_read, N_READABLE),
    Kind("syn_textvqa", "read_word", _texts(2, "word"), _textvqa_read_kind("word"), len(WORDS)),
    Kind("syn_textvqa", "read_number", _texts(2, "number"), _textvqa_read_kind("number"), len(NUMBERS)),
    Kind("syn_textvqa", "read_color", _texts(2), _textvqa_read_color, N_READABLE),
    Kind("syn_gqa", "relateColor", _shapes(2, 4), _gqa_relate("color"), len(COLOR_NAMES)),
    Kind("syn_gqa", "relateShape", _shapes(2, 4), _gqa_relate("shape"), len(SHAPES)),
    Kind("syn_gqa", "relVerify", _shapes(2, 4), _gqa_verify_relation, 2),
    Kind("syn_gqa", "positionQuery", _shapes(1, 3), _gqa_side, 2),
    Kind("syn_gqa", "chooseAttr", _shapes(1, 3), _gqa_choose_color, 2),
    Kind("syn_gqa", "chooseSize", _shapes(1, 3), _gqa_choose_size, 2),
    Kind("syn_gqa", "existAndC", _shapes(1, 3), _gqa_both, 2),
    Kind("syn_mmbench", "attribute_recognition", _shapes(1, 3), _mmbench_attribute_recognition, 4),
    Kind("syn_mmbench", "object_localization", _shapes(1, 3), _mmbench_object_localization, 4),
    Kind("syn_mmbench", "ocr", _shapes(0, 2, ("word",)), _mmbench_ocr, 4),
    Kind("syn_mmbench", "spatial_relationship", _shapes(3, 4), _mmbench_spatial_relationship, 4),
    Kind("syn_mmbench", "attribute_comparison", _shapes(2, 4), _mmbench_attribute_comparison, 4),
    Kind("syn_pope", "existence", _shapes(2, 4), _pope, 2),
)
EVAL_TASKS = ("syn_mme", "syn_textvqa", "syn_gqa", "syn_mmbench", "syn_pope")


def kinds_of(task: str) -> tuple[Kind, ...]:
    found = tuple(k for k in KINDS if k.task == task)
    if not found:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {', '.join(EVAL_TASKS)}")
    return found
