"""Scores of hand-written predictions on the syn_* tasks, as the task YAMLs compute them, equal the
benchmarks' definitions worked out by hand and what lmms-eval's own functions give when called directly."""

from __future__ import annotations

import json
from argparse import Namespace
from collections import defaultdict

import pytest
from lmms_eval.tasks import TaskManager, get_task_dict
from lmms_eval.tasks.mmbench.en_utils import mmbench_aggregate_dev_results_static
from lmms_eval.tasks.mme.utils import mme_aggregate_results, mme_process_results
from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score, pope_process_results
from lmms_eval.tasks.textvqa.utils import textvqa_process_results

from evaluation.records import QUESTION_TYPE_FIELD
from evaluation.synthetic import build_world, formats
from evaluation.tasks import DATA_ROOT_ENV, SYNTHETIC_TASKS, TASKS_DIR
from reports.uncertainty import read_sample_scores


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("worlds"), "smoke", seed=0)


@pytest.fixture(scope="module")
def world_rows(world) -> dict[str, list[dict]]:
    """Each task's rows as the generator wrote them."""
    return {
        name: [json.loads(line) for line in (world.eval_root / name / "test.jsonl").read_text().splitlines()]
        for name in SYNTHETIC_TASKS
    }


@pytest.fixture(scope="module")
def tasks(world, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv(DATA_ROOT_ENV, str(world.eval_root))
        env.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path_factory.mktemp("datasets_cache")))
        manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
        yield get_task_dict(list(SYNTHETIC_TASKS), manager)


def _score(task, docs_and_predictions) -> dict[str, float]:
    """What lmms-eval does after generation: process_results per doc, then each metric's aggregation."""
    items = defaultdict(list)
    for doc, prediction in docs_and_predictions:
        for metric, value in task.process_results(doc, [prediction]).items():
            items[metric].append(value)
    return {
        metric: task.aggregation()[metric](values)
        for metric, values in items.items()
        if metric in task.aggregation()
    }


def _flip(answer: str) -> str:
    return "No" if answer == "Yes" else "Yes"


def test_mme_pairs_score_acc_plus_acc_plus(tasks):
    task = tasks["syn_mme"]
    docs = list(task.test_docs())
    pairs = defaultdict(list)
    for doc in docs:
        pairs[(doc["category"], doc["question_id"])].append(doc)
    existence = sorted(key for key in pairs if key[0] == "existence")
    both_wrong, one_wrong = existence[0], existence[1]
    predictions = []
    for key, pair in pairs.items():
        for doc in pair:
            wrong = key == both_wrong or (key == one_wrong and doc["answer"] == "No")
            # formats lmms-eval's parser accepts: "Yes.", "no", "YES, it is"
            answer = _flip(doc["answer"]) if wrong else doc["answer"]
            predictions.append(
                (
                    doc,
                    {"Yes": "Yes.", "No": "no"}[answer]
                    if len(predictions) % 2
                    else answer.upper() + ", it is",
                )
            )
    scores = _score(task, predictions)

    n_existence = len(existence)  # per pair acc (percent) + acc+ (percent), averaged over pairs
    existence_score = (0 + 50 + 200 * (n_existence - 2)) / n_existence
    assert scores["mme_perception_score"] == pytest.approx(existence_score + 2 * 200)  # color, OCR

    direct = defaultdict(list)
    for doc, prediction in predictions:
        for metric, value in mme_process_results(doc, [prediction.strip()]).items():
            direct[metric].append(value)
    assert scores == {metric: mme_aggregate_results(values) for metric, values in direct.items()}


def test_textvqa_ten_answer_accuracy(tasks):
    task = tasks["syn_textvqa"]
    doc = task.test_docs()[0]
    answers = ["cat"] * 7 + ["dog"] * 2 + ["unanswerable"]
    # VQA accuracy: mean over the ten leave-one-out subsets of min(1, matches / 3)
    expected = {"cat": 1.0, "Cat.": 1.0, "dog": 0.6, "unanswerable": 0.3, "fox": 0.0}
    for prediction, accuracy in expected.items():
        ours = task.process_results({**doc, "answers": list(answers)}, [prediction])["exact_match"]
        theirs = textvqa_process_results({**doc, "answers": list(answers)}, [prediction])["exact_match"]
        assert ours == pytest.approx(accuracy) and theirs == pytest.approx(accuracy), prediction
    scores = _score(task, [({**doc, "answers": list(answers)}, p) for p in expected])
    assert scores["exact_match"] == pytest.approx(sum(expected.values()) / len(expected))


def test_pope_accuracy_and_f1(tasks):
    task = tasks["syn_pope"]
    docs = list(task.test_docs())
    yes = [d for d in docs if d["answer"] == "yes"][:4]
    no = [d for d in docs if d["answer"] == "no"][:4]
    predictions = list(zip(yes, ["yes", "yes", "no", "Yes"], strict=True)) + list(
        zip(no, ["no", "yes", "no", "maybe"], strict=True)
    )
    # true positives 3, false negatives 1, false positives 1; "maybe" is wrong and neither
    scores = _score(task, predictions)
    assert scores["pope_accuracy"] == pytest.approx(5 / 8)
    assert scores["pope_precision"] == pytest.approx(3 / 4)
    assert scores["pope_recall"] == pytest.approx(3 / 4)
    assert scores["pope_f1_score"] == pytest.approx(3 / 4)
    assert scores["pope_yes_ratio"] == pytest.approx(1 / 2)
    direct = [pope_process_results(doc, [p.strip()])["pope_f1_score"] for doc, p in predictions]
    assert scores["pope_f1_score"] == pope_aggregate_f1_score(direct)


def test_mmbench_circular_evaluation(tasks, tmp_path):
    task = tasks["syn_mmbench"]
    groups = defaultdict(list)
    for doc in task.test_docs():
        groups[doc["index"] % 1_000_000].append(doc)
    questions = sorted(groups)
    assert len(questions) >= 5 and all(len(groups[q]) == 4 for q in questions)

    def wrong_letter(doc):
        return next(letter for letter in "ABCD" if letter != doc["answer"])

    predictions = []
    for number, question in enumerate(questions):
        for rotation, doc in enumerate(groups[question]):
            if number == 0:  # right in every rotation: a hit
                predictions.append((doc, doc["answer"]))
            elif number == 1:  # one rotation names the right option with a wrong letter: a miss
                wrong = f"{doc[doc['answer']]} ({wrong_letter(doc)})"
                predictions.append((doc, wrong if rotation == 2 else doc["answer"]))
            elif number == 2:  # right, in formats the answer extraction reads: a hit
                predictions.append(
                    (doc, f"({doc['answer']})" if rotation % 2 else f"{doc['answer']}. {doc[doc['answer']]}")
                )
            else:  # always the same wrong letter: a miss
                predictions.append((doc, wrong_letter(groups[question][0])))
    expected = 100 * 2 / len(questions)
    scores = _score(task, predictions)
    assert scores["gpt_eval_score"] == pytest.approx(expected)

    items = [task.process_results(doc, [p])["gpt_eval_score"] for doc, p in predictions]
    lmms_eval_static = mmbench_aggregate_dev_results_static(items, Namespace(output_path=str(tmp_path)))
    assert lmms_eval_static == pytest.approx(expected)
    # each rotation's logged hit: the report's circular units give the same score
    hits = {q: [item["hit"] for item in items if item["index"] % 1_000_000 == q] for q in questions}
    assert hits[questions[1]] == [1, 1, 0, 1] and all(hits[questions[0]] + hits[questions[2]])
    lines = [{"doc_id": i, "gpt_eval_score": item} for i, item in enumerate(items)]
    log = tmp_path / "samples.jsonl"
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert read_sample_scores(log, "gpt_eval_score").statistic() == pytest.approx(expected)


def test_gqa_exact_match_ignores_case_and_punctuation(tasks):
    task = tasks["syn_gqa"]
    doc = task.test_docs()[0]
    answer = doc["answer"]
    predictions = [answer, answer.upper() + ".", f"{answer}!", "something else"]
    assert [task.process_results(doc, [p])["exact_match"] for p in predictions] == [1.0, 1.0, 1.0, 0.0]
    # the detailed type is logged beside the score (for the report's per-type split), not aggregated
    assert task.process_results(doc, [answer])[QUESTION_TYPE_FIELD] == doc["types"]["detailed"]
    assert QUESTION_TYPE_FIELD not in task.aggregation()


def test_the_trained_reply_scores_full_marks(tasks, world_rows):
    """formats.answer (what training teaches) is what lmms-eval's scorers count as right."""
    perfect = {
        "syn_mme": {"mme_perception_score": 600.0},
        "syn_textvqa": {"exact_match": 1.0},
        "syn_gqa": {"exact_match": 1.0},
        "syn_mmbench": {"gpt_eval_score": 100.0},
        "syn_pope": {"pope_accuracy": 1.0, "pope_f1_score": 1.0},
    }
    for name, expected in perfect.items():
        task = tasks[name]
        docs = list(task.test_docs())
        scores = _score(
            task, [(doc, formats.answer(name, row)) for doc, row in zip(docs, world_rows[name], strict=True)]
        )
        for metric, value in expected.items():
            assert scores[metric] == pytest.approx(value), (name, metric)
