"""The lmms-eval model class on tiny checkpoints, called the way lmms-eval's evaluator calls it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lmms_eval.api.instance import Instance
from loguru import logger
from PIL import Image

from evaluation.lmms_plugin import MODEL_NAME, manifest
from evaluation.model import (
    AnswerStopStrings,
    GenerationSettings,
    TokenPackerLMM,
    check_suite_checkpoint,
    parse_batch_size,
    parse_dtype,
    question_with_images,
    truncate_at_stop,
)
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import save_tiny_checkpoint, tiny_config

TASK, SPLIT = "colours", "test"
BROKEN_PNG = Path(__file__).parent / "fixtures" / "plugin_tasks" / "broken.png"
# Prompts of different lengths and images of different sizes and aspect ratios, so a batch needs padding
# and the HD checkpoint picks different crop grids.
DOCS = [
    {"question": "What colour is it?", "size": (48, 48), "seed": 0},
    {
        "question": "How many objects are there in the image? Answer with a number.",
        "size": (96, 48),
        "seed": 1,
    },
    {"question": "Shape?", "size": (40, 130), "seed": 2},
    {"question": "Is there a red circle left of the square?", "size": (150, 100), "seed": 3},
    {"question": "What does the text say?", "size": (30, 30), "seed": 4},
]


def doc_to_visual(doc: dict) -> list[Image.Image]:
    if "path" in doc:
        return [Image.open(doc["path"])]
    generator = torch.Generator().manual_seed(doc["seed"])
    width, height = doc["size"]
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return [Image.fromarray(pixels.numpy())]


def generate_request(doc_id: int, gen_kwargs: dict, question: str | None = None) -> Instance:
    question = DOCS[doc_id]["question"] if question is None else question
    return Instance(
        request_type="generate_until",
        arguments=(question, dict(gen_kwargs), doc_to_visual, doc_id, TASK, SPLIT),
        idx=0,
        metadata={"task": TASK, "doc_id": doc_id, "repeats": 1},
    )


def loglikelihood_request(doc_id: int, continuation: str) -> Instance:
    return Instance(
        request_type="loglikelihood",
        arguments=(DOCS[doc_id]["question"], continuation, doc_to_visual, doc_id, TASK, SPLIT),
        idx=0,
        metadata={"task": TASK, "doc_id": doc_id, "repeats": 1},
    )


def load_lmm(folder: Path, docs: list[dict], **model_args) -> TokenPackerLMM:
    lmm = TokenPackerLMM(pretrained=str(folder), device="cpu", **model_args)
    lmm.task_dict = {TASK: {SPLIT: docs}}  # what lmms-eval's evaluator sets before calling the model
    return lmm


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("plain"), tiny_config("tokenpacker", 2), seed=0)


@pytest.fixture(scope="module")
def hd_checkpoint(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(
        tmp_path_factory.mktemp("hd"), tiny_config("tokenpacker", 4, patch_num=9), seed=1
    )


def test_entry_point_makes_the_model_known_to_lmms_eval():
    from lmms_eval.models import get_model

    assert manifest().model_id == MODEL_NAME
    assert get_model(MODEL_NAME) is TokenPackerLMM


def test_non_suite_folders_are_rejected_with_the_reason(tmp_path, plain_checkpoint):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_suite_checkpoint(tmp_path / "nowhere")
    with pytest.raises(
        ValueError, match="lacks config.json, tokenizer_config.json, preprocessor_config.json"
    ):
        check_suite_checkpoint(tmp_path)
    for name in ("tokenizer_config.json", "preprocessor_config.json"):
        (tmp_path / name).write_text((plain_checkpoint / name).read_text())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(ValueError, match="holds a 'llava' model, not a suite model"):
        TokenPackerLMM(pretrained=str(tmp_path), device="cpu")
    assert check_suite_checkpoint(plain_checkpoint) == plain_checkpoint


def test_model_args_are_checked():
    assert parse_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match="allowed: float32, bfloat16, float16"):
        parse_dtype("fp8")
    assert parse_batch_size("4") == 4
    with pytest.raises(ValueError, match="positive integer"):
        parse_batch_size("auto")


def test_images_come_first_unless_the_task_placed_them():
    assert question_with_images("Colour?", 1) == "<image>\nColour?"
    assert question_with_images("Colour?", 2) == "<image> <image>\nColour?"
    assert question_with_images("Look: <image> colour?", 1) == "Look: <image> colour?"
    assert question_with_images("Colour?", 0) == "Colour?"


def test_generation_settings_follow_lmms_eval_defaults(plain_checkpoint):
    tokenizer = TokenPackerProcessor.from_pretrained(plain_checkpoint).tokenizer
    settings = GenerationSettings.from_task({"until": "\n", "max_new_tokens": 16, "temperature": 0}, "</s>")
    assert settings.until == ("\n",)
    kwargs = settings.generate_kwargs(tokenizer, prompt_length=7)
    assert kwargs["do_sample"] is False
    assert [type(c) for c in kwargs["stopping_criteria"]] == [AnswerStopStrings]
    defaults = GenerationSettings.from_task({}, "</s>")
    assert defaults.until == ("</s>",) and defaults.max_new_tokens == 1024
    sampled = GenerationSettings.from_task({"temperature": 0.7, "until": []}, "</s>")
    assert sampled.generate_kwargs(tokenizer, 7)["do_sample"] is True
    assert not sampled.generate_kwargs(tokenizer, 7)["stopping_criteria"]
    with pytest.raises(ValueError, match="until"):
        GenerationSettings.from_task({"until": 3}, "</s>")
    assert truncate_at_stop("red\n\nUSER: more", ["USER:", "\n\n"]) == "red"


@pytest.mark.parametrize("checkpoint", ["plain_checkpoint", "hd_checkpoint"])
def test_batched_generation_equals_one_at_a_time(checkpoint, request):
    folder = request.getfixturevalue(checkpoint)
    gen_kwargs = {"until": ["\n\n"], "max_new_tokens": 6, "temperature": 0}
    requests = [generate_request(doc_id, gen_kwargs) for doc_id in range(len(DOCS))]
    batched = load_lmm(folder, DOCS, batch_size=3).generate_until(requests)
    single = load_lmm(folder, DOCS, batch_size=1).generate_until(requests)
    assert batched == single
    assert len(set(batched)) > 1  # different images and prompts give different answers


def test_generation_with_kv_cache_equals_a_full_recompute(plain_checkpoint):
    """The plugin's cached greedy decoding gives the tokens of a plain argmax loop over the whole sequence."""
    lmm = load_lmm(plain_checkpoint, DOCS)
    prompt = lmm.build_prompt(DOCS[1]["question"], lmm.load_images(doc_to_visual, TASK, SPLIT, 1))
    inputs = lmm.model_inputs([prompt])
    ids = inputs["input_ids"]
    with torch.no_grad():
        for _ in range(5):
            logits = lmm.model(input_ids=ids, pixel_values=inputs["pixel_values"]).logits
            ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    expected = lmm.tokenizer.decode(ids[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    settings = GenerationSettings.from_task({"until": [], "max_new_tokens": 5}, "")
    assert lmm.generate_texts([prompt], settings) == [expected.strip()]  # answers are stripped, as LLaVA does


def test_stop_strings_end_the_answer(plain_checkpoint):
    lmm = load_lmm(plain_checkpoint, DOCS, batch_size=5)
    requests = [generate_request(doc_id, {"until": [], "max_new_tokens": 8}) for doc_id in range(len(DOCS))]
    free = lmm.generate_until(requests)
    # A random model's text: stop at its first ASCII letter after the start, so the answer is cut short.
    doc_id, text = next(
        (i, text) for i, text in enumerate(free) if any(c.isascii() and c.isalpha() for c in text[1:])
    )
    stop = next(c for c in text[1:] if c.isascii() and c.isalpha())
    stopped = lmm.generate_until([generate_request(doc_id, {"until": [stop], "max_new_tokens": 8})])[0]
    assert stopped == text.split(stop)[0] and len(stopped) < len(text)


def test_stop_strings_work_when_the_image_ends_the_prompt(plain_checkpoint):
    """Under the plain template (stage 1's) the image placeholder, a negative id, is among the prompt's
    last tokens; stop strings are matched on the answer alone, so it is not looked up."""
    lmm = load_lmm(plain_checkpoint, DOCS, conv_template="plain")
    request = generate_request(0, {"until": ["\n\n"], "max_new_tokens": 4}, question="")
    assert lmm.build_prompt("", [lmm.processor.preprocess_image(doc_to_visual(DOCS[0])[0])]).token_ids[-2] < 0
    free = lmm.generate_until([generate_request(0, {"until": [], "max_new_tokens": 4}, question="")])
    assert lmm.generate_until([request]) == [truncate_at_stop(free[0], ["\n\n"])]


def test_answer_stop_strings_judge_each_row_by_its_answer_alone(plain_checkpoint):
    """Rows left-padded to one prompt width: a row stops once its own answer ends in the stop string,
    and the prompt's negative placeholder ids are never read."""
    tokenizer = TokenPackerProcessor.from_pretrained(plain_checkpoint).tokenizer
    stop = tokenizer.encode("red", add_special_tokens=False)
    other = tokenizer.encode("blue", add_special_tokens=False)[:1]  # one token: the window reaches the prompt
    pad, placeholder = tokenizer.pad_token_id, -200
    prompt_length = 2 + len(stop)
    # row 0's prompt ends in "red"; row 1's in the placeholder, as a plain-template prompt does
    prompt = [[pad, placeholder, *stop], [pad] * (prompt_length - 1) + [placeholder]]
    criteria = AnswerStopStrings(tokenizer, ["red"], prompt_length)
    first = torch.tensor([row + other for row in prompt])
    assert criteria(first, None).tolist() == [False, False]
    second = torch.tensor([prompt[0] + other + stop, prompt[1] + other + [other[0]] * len(stop)])
    assert criteria(second, None).tolist() == [True, False]


def test_prompt_uses_the_checkpoint_template(plain_checkpoint):
    lmm = load_lmm(plain_checkpoint, DOCS)
    prompt = lmm.build_prompt("Colour?", [])
    expected = lmm.tokenizer.encode(lmm.template.prompt("Colour?"))
    assert lmm.template.name == "vicuna_v1" and prompt.token_ids == expected
    assert load_lmm(plain_checkpoint, DOCS, conv_template="plain").template.name == "plain"


def test_loglikelihood_is_the_continuation_nll_of_a_manual_forward(plain_checkpoint):
    lmm = load_lmm(plain_checkpoint, DOCS)
    continuation = " red square"
    images = lmm.load_images(doc_to_visual, TASK, SPLIT, 0)
    text = lmm.template.prompt("<image>\n" + DOCS[0]["question"])
    batch = lmm.processor([text + continuation], [doc_to_visual(DOCS[0])])
    context_length = len(lmm.processor.tokenize(text, images))
    with torch.no_grad():
        logits = lmm.model(input_ids=batch["input_ids"], pixel_values=batch["pixel_values"]).logits[0]
    targets = batch["input_ids"][0, context_length:]
    log_probs = logits[context_length - 1 : -1].log_softmax(-1)
    expected_nll = -float(log_probs.gather(-1, targets[:, None]).sum())
    expected_greedy = bool((log_probs.argmax(-1) == targets).all())

    nll, greedy = lmm.loglikelihood([loglikelihood_request(0, continuation)])[0]
    assert nll == pytest.approx(expected_nll, rel=1e-4)
    assert greedy == expected_greedy


def test_loglikelihood_batched_equals_one_at_a_time(hd_checkpoint):
    requests = [
        loglikelihood_request(i, c) for i, c in enumerate([" yes", " two red circles", " no", " A", " blue"])
    ]
    batched = load_lmm(hd_checkpoint, DOCS, batch_size=4).loglikelihood(requests)
    single = load_lmm(hd_checkpoint, DOCS, batch_size=1).loglikelihood(requests)
    assert [greedy for _, greedy in batched] == [greedy for _, greedy in single]
    assert [nll for nll, _ in batched] == pytest.approx([nll for nll, _ in single], rel=1e-4)
    assert all(nll > 0 for nll, _ in batched)


def test_a_corrupt_image_is_reported_and_answered_empty(plain_checkpoint):
    docs = [DOCS[0], {"question": "Colour?", "path": BROKEN_PNG}, DOCS[2]]
    lmm = load_lmm(plain_checkpoint, docs, batch_size=3)
    gen_kwargs = {"until": ["\n\n"], "max_new_tokens": 4}
    requests = [generate_request(doc_id, gen_kwargs, docs[doc_id]["question"]) for doc_id in range(3)]
    messages: list[str] = []
    sink = logger.add(messages.append, level="ERROR")
    try:
        answers = lmm.generate_until(requests)
        scores = lmm.loglikelihood([loglikelihood_request(1, " red")])
    finally:
        logger.remove(sink)
    assert answers[1] == ""
    assert answers[0] == load_lmm(plain_checkpoint, docs).generate_until(requests[:1])[0]
    assert scores == [(float("inf"), False)]
    assert any("task 'colours' doc 1: unreadable image" in message for message in messages)


def test_a_missing_image_is_an_error_naming_it(plain_checkpoint, tmp_path):
    docs = [{"question": "Colour?", "path": tmp_path / "gone.png"}]
    lmm = load_lmm(plain_checkpoint, docs)
    with pytest.raises(FileNotFoundError, match="task 'colours' doc 0: image .*gone.png.* not found"):
        lmm.generate_until([generate_request(0, {"max_new_tokens": 2}, "Colour?")])


def test_multi_round_generation_is_refused(plain_checkpoint):
    with pytest.raises(NotImplementedError, match="single-round"):
        load_lmm(plain_checkpoint, DOCS).generate_until_multi_round([])
