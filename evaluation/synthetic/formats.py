"""How each benchmark lays out its rows, and the prompt and answer lmms-eval expects for a row.

Rows carry the fields of the real data sets (lmms-lab's MME, textvqa, GQA, MMBench and POPE) that
lmms-eval's task code reads, with `image` holding a path relative to the task's folder instead of
an embedded image. `prompt` reproduces lmms-eval's `doc_to_text` with the default
`lmms_eval_specific_kwargs`, so training conversations ask exactly what evaluation asks; the
tests check it against lmms-eval's own functions.
"""

from __future__ import annotations

from collections import Counter

from evaluation.synthetic.questions import MMBENCH_L2, Kind
from evaluation.synthetic.scene import Scene
from evaluation.synthetic.vocabulary import (
    MMBENCH_OPTIONS_HEADER,
    MME_SUFFIX,
    OPTION_LETTER_PROMPT,
    SHORT_ANSWER_PROMPT,
)

OPTION_LETTERS = ("A", "B", "C", "D")
CIRCULAR_OFFSET = 1_000_000  # MMBench: rotation k of question i has index k * offset + i


def mme_rows(category: str, items: list[dict], image: str, image_id: str) -> list[dict]:
    """The pair of one image; both rows share question_id, which MME's aggregation pairs on."""
    question_id = f"{category}/{image_id}.png"
    return [
        {
            "question_id": question_id,
            "image": image,
            "question": it["question"],
            "answer": it["answer"],
            "category": category,
        }
        for it in items
    ]


def textvqa_rows(items: list[dict], image: str, image_id: str, scene: Scene, question_id: int) -> list[dict]:
    return [
        {
            "image_id": image_id,
            "question_id": question_id + offset,
            "question": it["question"],
            "question_tokens": it["question"].rstrip("?").split(),
            "image": image,
            "image_width": scene.width,
            "image_height": scene.height,
            "answers": it["answers"],
            "image_classes": [],
            "set_name": "val",
            "ocr_tokens": [t.content for t in scene.texts],
        }
        for offset, it in enumerate(items)
    ]


def gqa_rows(items: list[dict], image: str, image_id: str, question_id: int) -> list[dict]:
    return [
        {
            "id": str(question_id + offset),
            "imageId": image_id,
            "question": it["question"],
            "answer": it["answer"],
            "fullAnswer": it["fullAnswer"],
            "isBalanced": True,
            "types": it["types"],
            "semanticStr": it["semanticStr"],
            "image": image,
        }
        for offset, it in enumerate(items)
    ]


def mmbench_rows(category: str, item: dict, image: str, index: int) -> list[dict]:
    """One question in all four rotations of its options (MMBench's circular evaluation)."""
    options, correct = item["options"], item["answer_index"]
    rows = []
    for k in range(len(options)):
        rotated = options[k:] + options[:k]
        rows.append(
            {
                "index": k * CIRCULAR_OFFSET + index,
                "question": item["question"],
                "hint": None,
                **dict(zip(OPTION_LETTERS, rotated, strict=True)),
                "answer": OPTION_LETTERS[(correct - k) % len(options)],
                "category": category,
                "L2-category": MMBENCH_L2[category],
                "image": image,
                "source": "synthetic",
                "split": "dev",
                "comment": None,
            }
        )
    return rows


def pope_rows(items: list[dict], image: str, image_id: str, question_id: int) -> list[dict]:
    return [
        {
            "id": str(question_id + offset),
            "question_id": str(question_id + offset),
            "question": it["question"],
            "answer": it["answer"],
            "image_source": image_id,
            "image": image,
            "category": it["category"],
        }
        for offset, it in enumerate(items)
    ]


def rows(kind: Kind, scene: Scene, items: list[dict], image: str, image_id: str, serial: int) -> list[dict]:
    """The benchmark rows of one drawn item group. `serial` (the number of rows before them) makes
    question ids and MMBench indices unique within the task."""
    if kind.task == "syn_mme":
        return mme_rows(kind.name, items, image, image_id)
    if kind.task == "syn_textvqa":
        return textvqa_rows(items, image, image_id, scene, serial)
    if kind.task == "syn_gqa":
        return gqa_rows(items, image, image_id, serial)
    if kind.task == "syn_mmbench":
        return mmbench_rows(kind.name, items[0], image, serial)
    if kind.task == "syn_pope":
        return pope_rows(items, image, image_id, serial)
    raise ValueError(f"unknown synthetic task {kind.task!r}")


def prompt(task: str, row: dict) -> str:
    """The text lmms-eval's task code builds for `row` (default lmms_eval_specific_kwargs)."""
    if task == "syn_mme":
        return row["question"].strip().replace(MME_SUFFIX, "") + SHORT_ANSWER_PROMPT
    if task == "syn_textvqa":
        return row["question"].capitalize() + SHORT_ANSWER_PROMPT
    if task in ("syn_gqa", "syn_pope"):
        return row["question"].strip() + SHORT_ANSWER_PROMPT
    if task == "syn_mmbench":
        options = "\n".join(f"{letter}. {row[letter]}" for letter in OPTION_LETTERS)
        return f"{row['question']} {MMBENCH_OPTIONS_HEADER}\n{options}\n{OPTION_LETTER_PROMPT}"
    raise ValueError(f"unknown synthetic task {task!r}")


def answer(task: str, row: dict) -> str:
    """The reply a model is trained to give to `prompt(task, row)`; yes/no always as "Yes"/"No"
    (every scorer here ignores case), so the tiny model learns one spelling.

    MMBench replies name the option, then its letter: "yellow (B)", which lmms-eval's answer
    extraction reads as B, so a wrong letter is still wrong. Measured on multiple-choice text alone
    (batches of 32, lr 1e-3): bare letters 0.25-0.30 of held-out questions after 600 steps, this reply
    0.71 after 600 and 0.94 after 700. With images, the models do not copy the letter of the option
    they have named but look it up again (benchmarks/bench_mmbench_letters.py)."""
    if task == "syn_textvqa":
        reply = Counter(row["answers"]).most_common(1)[0][0]
    elif task == "syn_mmbench":
        reply = f"{row[row['answer']]} ({row['answer']})"
    else:
        reply = row["answer"]
    return reply.capitalize() if reply.lower() in ("yes", "no") else reply
