"""Question kinds of the synthetic world, grouped by the benchmark whose format they take.

Each kind has a scene recipe (what `sample_scene` should draw so the kind usually applies) and
an `ask` function that reads the scene record and returns docs in the eval set's schema (minus
image and ids), or None when the scene does not allow an unambiguous question. Training turns and
eval rows come from the same kinds, so they always agree on wording and answer format.

Spatial words are strict: "A is left of B" needs A's centre at least 12% of the image width
left of B's; questions whose answer would hinge on a nearer pair are not asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.synthetic.scene import Scene, Shape
from evaluation.synthetic.vocabulary import (
    COLOR_NAMES,
    COLOR_WEIGHTS,
    LETTERS,
    MME_SUFFIX,
    NUMBERS,
    OPPOSITE,
    QUADRANTS,
    RELATIONS,
    SHAPE_WEIGHTS,
    SHAPES,
    SIZES,
    WORDS,
)

CLEAR_OFFSET = 0.12  # of the image side: how far apart centres must be for a spatial word
SIDE_MARGIN = 0.1  # of the image side: how far from the midline an object must be for "left"/"top"
OPTION_LETTERS = ("A", "B", "C", "D")
ANSWER_NOISE = 0.1  # chance that one TextVQA annotator disagrees
MAX_NOISY_ANSWERS = 3  # so the drawn text always keeps a clear majority of the 10 answers

Recipe = Callable[[np.random.Generator], dict]
Ask = Callable[[Scene, np.random.Generator], "list[dict] | None"]


@dataclass(frozen=True)
class Kind:
    task: str  # the eval set: "syn_mme", "syn_textvqa", "syn_gqa", "syn_mmbench", "syn_pope"
    name: str  # MME / MMBench category, or the question kind
    recipe: Recipe  # keyword arguments for sample_scene (minus rng and size)
    ask: Ask
    chance: float  # score of a uniform guess among the answers this kind admits


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _shapes(lo: int, hi: int, text_kinds: tuple[str, ...] = (), distractor_text: float = 0.3) -> Recipe:
    """n_shapes uniform in [lo, hi]; with probability `distractor_text` an extra text item."""

    def recipe(rng: np.random.Generator) -> dict:
        n = int(rng.integers(lo, hi + 1))
        kinds = text_kinds
        if not kinds and rng.random() < distractor_text:
            kinds = (_pick(rng, ("word", "number", "letter")),)
        return {"n_shapes": n, "text_kinds": kinds}

    return recipe


# ---------------------------------------------------------------- scene reading


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


def _unique_kind_shapes(scene: Scene) -> list[Shape]:
    kinds = [s.kind for s in scene.shapes]
    return [s for s in scene.shapes if kinds.count(s.kind) == 1]


def _absent_names(scene: Scene) -> list[str]:
    present = {s.name for s in scene.shapes}
    return [f"{c} {k}" for c in COLOR_NAMES for k in SHAPES if f"{c} {k}" not in present]


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
    return _pick(rng, pairs) if pairs else None


def _relation_target(scene: Scene, rng: np.random.Generator):
    """A random (reference, relation, target) where target is the only shape <relation> reference."""
    found = [
        (ref, r, t)
        for ref in scene.shapes
        for r in RELATIONS
        if (t := unique_related(scene, ref, r)) is not None
    ]
    return _pick(rng, found) if found else None


def _texts_of(scene: Scene, kind: str):
    return [t for t in scene.texts if t.kind == kind]


# ---------------------------------------------------------------- MME: yes/no pairs


def _mme_pair(category: str, yes: str, no: str) -> list[dict]:
    return [
        {"question": yes + MME_SUFFIX, "answer": "Yes", "category": category},
        {"question": no + MME_SUFFIX, "answer": "No", "category": category},
    ]


def _mme_existence(scene, rng):
    absent = _absent_names(scene)
    if not scene.shapes or not absent:
        return None
    q = "Is there a {} in the image?"
    return _mme_pair("existence", q.format(_pick(rng, scene.shapes).name), q.format(_pick(rng, absent)))


def _mme_count(scene, rng):
    n = len(scene.shapes)
    wrong = n + 1 if n == 1 or rng.random() < 0.5 else n - 1
    q = "Is the number of shapes in the image {}?"
    return _mme_pair("count", q.format(n), q.format(wrong))


def _mme_position(scene, rng):
    pair = _related_pair(scene, rng)
    if pair is None:
        return None
    a, b, r = pair
    q = "Is the {} {} the {}?"
    return _mme_pair(
        "position", q.format(a.name, RELATIONS[r][0], b.name), q.format(a.name, RELATIONS[OPPOSITE[r]][0], b.name)
    )


def _mme_color(scene, rng):
    shapes = _unique_kind_shapes(scene)
    if not shapes:
        return None
    s = _pick(rng, shapes)
    other = _pick(rng, [c for c in COLOR_NAMES if c != s.color])
    return _mme_pair("color", f"Is the {s.kind} {s.color}?", f"Is the {s.kind} {other}?")


def _mme_ocr(scene, rng):
    words = _texts_of(scene, "word")
    if len(words) != 1:
        return None
    other = _pick(rng, [w for w in WORDS if w != words[0].content])
    q = 'Is the word in the image "{}"?'
    return _mme_pair("OCR", q.format(words[0].content), q.format(other))


def _mme_numerical_calculation(scene, rng):
    sums = _texts_of(scene, "sum")
    if len(sums) != 1:
        return None
    a, b = (int(x) for x in sums[0].content.split("+"))
    wrong = a + b + _pick(rng, (-2, -1, 1, 2))
    q = "Is the answer to the arithmetic question in the image {}?"
    return _mme_pair("numerical_calculation", q.format(a + b), q.format(wrong))


# ---------------------------------------------------------------- TextVQA: reading, 10 answers


def _annotator_answers(rng: np.random.Generator, truth: str, content: str, kind_vocabulary) -> list[str]:
    """Ten answers: the truth, with a few annotators writing it upper-case or disagreeing."""
    answers = []
    noisy = 0
    for _ in range(10):
        if noisy < MAX_NOISY_ANSWERS and rng.random() < ANSWER_NOISE:
            noisy += 1
            answers.append(_pick(rng, (content, "unanswerable", _pick(rng, kind_vocabulary).lower())))
        else:
            answers.append(truth)
    return answers


def _textvqa_doc(scene, rng, question: str, text) -> list[dict]:
    vocabulary = {"word": WORDS, "number": NUMBERS, "letter": LETTERS}[text.kind]
    return [{"question": question, "answers": _annotator_answers(rng, text.answer, text.content, vocabulary)}]


def _textvqa_read(scene, rng):
    if len(scene.texts) != 1:
        return None
    return _textvqa_doc(scene, rng, "what is written in the image?", scene.texts[0])


def _textvqa_read_kind(kind: str) -> Ask:
    def ask(scene, rng):
        texts = _texts_of(scene, kind)
        if len(texts) != 1:
            return None
        return _textvqa_doc(scene, rng, f"what {kind} is written in the image?", texts[0])

    return ask


def _textvqa_read_color(scene, rng):
    if len(scene.texts) < 2:
        return None
    text = _pick(rng, scene.texts)
    return _textvqa_doc(scene, rng, f"what is written in {text.color}?", text)


def _other_text_kind(first: str) -> Recipe:
    def recipe(rng):
        second = _pick(rng, [k for k in ("word", "number", "letter") if k != first])
        return {"n_shapes": int(rng.integers(0, 3)), "text_kinds": (first, second)}

    return recipe


def _two_texts(rng):
    kinds = tuple(_pick(rng, ("word", "number", "letter")) for _ in range(2))
    return {"n_shapes": int(rng.integers(0, 3)), "text_kinds": kinds}


def _one_text(rng):
    return {"n_shapes": int(rng.integers(0, 3)), "text_kinds": (_pick(rng, ("word", "number", "letter")),)}


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
        select = f"select: {ref.name} ->relate: shape,{phrase},s ->query: {attribute}"
        if attribute == "color":
            q, a, full = f"What color is the shape {phrase} the {ref.name}?", target.color, f"The shape is {target.color}."
        else:
            q, a, full = f"What shape is {phrase} the {ref.name}?", target.kind, f"It is a {target.kind}."
        return _gqa(q, a, full, "query", "rel", f"relate{attribute.capitalize()}", select)

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
    select = f"select: {b.name} ->relate: {a.name},{phrase},s ->exist: ?"
    return _gqa(f"Is the {a.name} {phrase} the {b.name}?", answer, full, "verify", "rel", "relVerify", select)


def _gqa_side(scene, rng):
    sided = [(s, side) for s in scene.shapes if (side := side_of(scene, s))]
    if not sided:
        return None
    s, side = _pick(rng, sided)
    return _gqa(
        f"On which side of the image is the {s.name}?",
        side,
        f"The {s.name} is on the {side} of the image.",
        "query",
        "rel",
        "positionQuery",
        f"select: {s.name} ->query: hposition",
    )


def _gqa_choose_color(scene, rng):
    shapes = _unique_kind_shapes(scene)
    if not shapes:
        return None
    s = _pick(rng, shapes)
    other = _pick(rng, [c for c in COLOR_NAMES if c != s.color])
    first, second = (s.color, other) if rng.random() < 0.5 else (other, s.color)
    return _gqa(
        f"Is the {s.kind} {first} or {second}?",
        s.color,
        f"The {s.kind} is {s.color}.",
        "choose",
        "attr",
        "chooseAttr",
        f"select: {s.kind} ->choose color: {first}|{second}",
    )


def _gqa_choose_size(scene, rng):
    if not scene.shapes:
        return None
    s = _pick(rng, scene.shapes)
    first, second = SIZES if rng.random() < 0.5 else SIZES[::-1]
    return _gqa(
        f"Is the {s.name} {first} or {second}?",
        s.size,
        f"The {s.name} is {s.size}.",
        "choose",
        "attr",
        "chooseSize",
        f"select: {s.name} ->choose size: {first}|{second}",
    )


def _gqa_both(scene, rng):
    if not scene.shapes:
        return None
    present = [s.name for s in scene.shapes]
    if rng.random() < 0.5 and len(present) >= 2:
        first, second = (str(x) for x in rng.choice(present, size=2, replace=False))
        answer = "yes"
    else:
        first, second = _pick(rng, present), _pick(rng, _absent_names(scene))
        if rng.random() < 0.5:
            first, second = second, first
        answer = "no"
    full = f"{'Yes' if answer == 'yes' else 'No'}, there {'are both' if answer == 'yes' else 'is not both'} a {first} and a {second}."
    select = f"select: {first} ->exist: ? ->select: {second} ->exist: ? ->and: "
    return _gqa(f"Are there both a {first} and a {second} in the image?", answer, full, "logical", "obj", "existAndC", select)


# ---------------------------------------------------------------- MMBench: 4 options, circular


def _mmbench(question: str, correct: str, distractors: list[str], rng, category: str, l2: str) -> list[dict]:
    options = [correct, *distractors[:3]]
    order = rng.permutation(4)
    options = [options[i] for i in order]
    return [{"question": question, "options": options, "answer_index": options.index(correct), "category": category, "L2-category": l2}]


def _distinct_distractors(rng, pool: list[str], exclude: set[str], n: int = 3) -> list[str] | None:
    pool = [p for p in dict.fromkeys(pool) if p not in exclude]
    if len(pool) < n:
        return None
    return [str(x) for x in rng.choice(pool, size=n, replace=False)]


INSTANCE = "finegrained_perception (instance-level)"
CROSS_INSTANCE = "finegrained_perception (cross-instance)"


def _mmbench_attribute_recognition(scene, rng):
    shapes = _unique_kind_shapes(scene)
    if not shapes:
        return None
    s = _pick(rng, shapes)
    distractors = _distinct_distractors(rng, list(COLOR_NAMES), {s.color})
    return _mmbench(f"What color is the {s.kind}?", s.color, distractors, rng, "attribute_recognition", INSTANCE)


def _mmbench_object_localization(scene, rng):
    placed = [(s, q) for s in scene.shapes if (q := quadrant_of(scene, s))]
    if not placed:
        return None
    s, quadrant = _pick(rng, placed)
    distractors = [q for q in QUADRANTS if q != quadrant]
    return _mmbench(f"Where is the {s.name} in the image?", quadrant, distractors, rng, "object_localization", INSTANCE)


def _mmbench_ocr(scene, rng):
    words = _texts_of(scene, "word")
    if len(words) != 1:
        return None
    distractors = _distinct_distractors(rng, list(WORDS), {words[0].content})
    return _mmbench("Which word is written in the image?", words[0].content, distractors, rng, "ocr", INSTANCE)


def _object_distractors(scene, rng, exclude: set[str]) -> list[str] | None:
    """Other objects of the scene first, then absent ones: an option list a reader must check."""
    present = [s.name for s in scene.shapes if s.name not in exclude]
    rng.shuffle(present)
    absent = _absent_names(scene)
    rng.shuffle(absent)
    return _distinct_distractors(rng, (present + absent)[:3], exclude)


def _mmbench_spatial_relationship(scene, rng):
    found = _relation_target(scene, rng)
    if found is None:
        return None
    ref, r, target = found
    distractors = _object_distractors(scene, rng, {ref.name, target.name})
    q = f"Which object is {RELATIONS[r][0]} the {ref.name}?"
    return _mmbench(q, target.name, distractors, rng, "spatial_relationship", "relation_reasoning")


def _mmbench_attribute_comparison(scene, rng):
    large = [s for s in scene.shapes if s.size == "large"]
    if len(large) != 1 or len(scene.shapes) < 2:
        return None
    distractors = _object_distractors(scene, rng, {large[0].name})
    q = "Which object is the largest in the image?"
    return _mmbench(q, large[0].name, distractors, rng, "attribute_comparison", CROSS_INSTANCE)


# ---------------------------------------------------------------- POPE: existence, three samplings

POPE_CATEGORIES = ("random", "popular", "adversarial")
POPE_POPULAR_TOP = 6  # the "popular" negatives come from the split's most frequent objects


def pope_docs(scene: Scene, rng: np.random.Generator, popular: list[str]) -> list[dict]:
    """Per category one present and one absent object, absent ones sampled the POPE way:
    random (uniform), popular (among the split's most frequent objects), adversarial (sharing a
    colour or a shape with an object that is there)."""
    present = [s.name for s in scene.shapes]
    absent = _absent_names(scene)
    colors, kinds = {s.color for s in scene.shapes}, {s.kind for s in scene.shapes}
    negatives = {
        "random": absent,
        "popular": [n for n in popular[:POPE_POPULAR_TOP] if n in absent] or [n for n in popular if n in absent],
        "adversarial": [n for n in absent if n.split()[0] in colors or n.split()[1] in kinds] or absent,
    }
    docs = []
    for category in POPE_CATEGORIES:
        for answer, name in (("yes", _pick(rng, present)), ("no", _pick(rng, negatives[category]))):
            docs.append({"question": f"Is there a {name} in the image?", "answer": answer, "category": category})
    return docs


# Every object name, most frequent under the world's prior first.
OBJECTS_BY_PRIOR = tuple(
    f"{COLOR_NAMES[i]} {SHAPES[j]}"
    for i, j in sorted(
        ((i, j) for i in range(len(COLOR_NAMES)) for j in range(len(SHAPES))),
        key=lambda ij: -COLOR_WEIGHTS[ij[0]] * SHAPE_WEIGHTS[ij[1]],
    )
)


def _pope_single(scene, rng):
    """Training turns: one POPE-style question; "popular" negatives follow the object prior."""
    if not scene.shapes:
        return None
    return [_pick(rng, pope_docs(scene, rng, list(OBJECTS_BY_PRIOR)))]


# ---------------------------------------------------------------- the catalogue

KINDS: tuple[Kind, ...] = (
    Kind("syn_mme", "existence", _shapes(1, 4), _mme_existence, 0.5),
    Kind("syn_mme", "count", _shapes(1, 4), _mme_count, 0.5),
    Kind("syn_mme", "position", _shapes(2, 3), _mme_position, 0.5),
    Kind("syn_mme", "color", _shapes(1, 3), _mme_color, 0.5),
    Kind("syn_mme", "OCR", _shapes(0, 2, ("word",)), _mme_ocr, 0.5),
    Kind("syn_mme", "numerical_calculation", _shapes(0, 2, ("sum",)), _mme_numerical_calculation, 0.5),
    Kind("syn_textvqa", "read", _one_text, _textvqa_read, 1 / 145),
    Kind("syn_textvqa", "read_word", _other_text_kind("word"), _textvqa_read_kind("word"), 1 / 20),
    Kind("syn_textvqa", "read_number", _other_text_kind("number"), _textvqa_read_kind("number"), 1 / 100),
    Kind("syn_textvqa", "read_color", _two_texts, _textvqa_read_color, 1 / 145),
    Kind("syn_gqa", "relate_color", _shapes(2, 4), _gqa_relate("color"), 1 / 6),
    Kind("syn_gqa", "relate_shape", _shapes(2, 4), _gqa_relate("shape"), 1 / 4),
    Kind("syn_gqa", "verify_relation", _shapes(2, 4), _gqa_verify_relation, 1 / 2),
    Kind("syn_gqa", "side", _shapes(1, 3), _gqa_side, 1 / 2),
    Kind("syn_gqa", "choose_color", _shapes(1, 3), _gqa_choose_color, 1 / 2),
    Kind("syn_gqa", "choose_size", _shapes(1, 3), _gqa_choose_size, 1 / 2),
    Kind("syn_gqa", "both", _shapes(1, 3), _gqa_both, 1 / 2),
    Kind("syn_mmbench", "attribute_recognition", _shapes(1, 3), _mmbench_attribute_recognition, 1 / 4),
    Kind("syn_mmbench", "object_localization", _shapes(1, 3), _mmbench_object_localization, 1 / 4),
    Kind("syn_mmbench", "ocr", _shapes(0, 2, ("word",)), _mmbench_ocr, 1 / 4),
    Kind("syn_mmbench", "spatial_relationship", _shapes(3, 4), _mmbench_spatial_relationship, 1 / 4),
    Kind("syn_mmbench", "attribute_comparison", _shapes(2, 4), _mmbench_attribute_comparison, 1 / 4),
    Kind("syn_pope", "existence", _shapes(2, 4), _pope_single, 1 / 2),
)
EVAL_TASKS = ("syn_mme", "syn_textvqa", "syn_gqa", "syn_mmbench", "syn_pope")


def kinds_of(task: str) -> tuple[Kind, ...]:
    found = tuple(k for k in KINDS if k.task == task)
    if not found:
        raise ValueError(f"unknown synthetic task {task!r}; expected one of {EVAL_TASKS}")
    return found
