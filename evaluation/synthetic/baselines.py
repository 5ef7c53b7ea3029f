"""What a model that ignores the image scores on each synthetic task, in lmms-eval's metric units.

Two blind baselines per (task, metric), so reports can print them beside real scores:
- chance: the expected score of a uniform guess among the answers a question admits;
- majority: the score of always giving the most common answer of the question's kind.
Evaluation sets hold the same number of items per kind, so chance depends only on the catalogue
in `questions.py`; majority depends on the drawn answers and is computed from the rows.
"""

from __future__ import annotations

from collections import Counter

from evaluation.synthetic.questions import EVAL_TASKS, kinds_of

MMBENCH_ROTATIONS = 4


def chance_levels() -> dict[str, dict[str, float]]:
    """task -> lmms-eval metric -> expected score of a uniform guess."""
    levels: dict[str, dict[str, float]] = {}
    for task in EVAL_TASKS:
        kinds = kinds_of(task)
        if task == "syn_mme":
            # a pair of independent yes/no guesses: acc 50 % and acc+ 25 % per (perception) category
            levels[task] = {"mme_perception_score": 75.0 * len(kinds)}
        elif task == "syn_mmbench":
            # circular evaluation: right in every rotation, in percent
            hit = sum((1 / k.answers) ** MMBENCH_ROTATIONS for k in kinds) / len(kinds)
            levels[task] = {"gpt_eval_score": 100.0 * hit}
        elif task == "syn_pope":
            levels[task] = {"pope_accuracy": 0.5, "pope_f1_score": 0.5}
        else:
            levels[task] = {"exact_match": sum(1 / k.answers for k in kinds) / len(kinds)}
    return levels


def majority_levels(task: str, answers_by_kind: dict[str, list[str]]) -> dict[str, float]:
    """lmms-eval metric -> score of answering every question with its kind's most common answer.

    answers_by_kind: the reference answer of every evaluation question, grouped by kind.
    """
    if task == "syn_mme":
        return {"mme_perception_score": 50.0 * len(answers_by_kind)}  # always "yes": every pair half right
    if task == "syn_mmbench":
        return {"gpt_eval_score": 0.0}  # one fixed letter is wrong in some rotation of every question
    if task == "syn_pope":
        # always "yes" on a balanced set: precision 1/2, recall 1
        return {"pope_accuracy": 0.5, "pope_f1_score": 2 / 3}
    hits = sum(Counter(answers).most_common(1)[0][1] for answers in answers_by_kind.values())
    return {"exact_match": hits / sum(len(answers) for answers in answers_by_kind.values())}
