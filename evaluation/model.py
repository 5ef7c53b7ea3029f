"""The lmms-eval model class for suite checkpoints: batched greedy generation and log-likelihoods.

lmms-eval shards the documents over processes (`accelerate launch`), hands each process its
requests, and scores the answers with the task's own code. This class only turns a request
(context, images) into LLaVA's prompt in the checkpoint's conversation template, runs the model,
and returns text or (negative log-likelihood, is-greedy) pairs in the order it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from lmms_eval.utils import Collator
from loguru import logger as eval_logger
from PIL import Image
from tqdm import tqdm
from transformers import PreTrainedTokenizerBase, StoppingCriteria, StoppingCriteriaList, StopStringCriteria

from tokenpacker.checkpoints import check_suite_checkpoint
from tokenpacker.conversation import IMAGE_PLACEHOLDER, ConversationTemplate, get_template
from tokenpacker.modeling import TokenPackerForCausalLM, default_attn_implementation
from tokenpacker.processing import ImageInput, TokenPackerProcessor, pad_sequences

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_MAX_NEW_TOKENS = 1024  # lmms-eval's built-in models use this when a task sets none


def parse_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype={name!r} is not supported; allowed: {', '.join(DTYPES)}")
    return DTYPES[name]


def parse_batch_size(value: int | str) -> int:
    """lmms-eval's CLI passes the batch size as text; adaptive sizes ('auto') are not supported here."""
    if not str(value).isdigit() or int(value) < 1:
        raise ValueError(f"batch_size={value!r} is not supported; give a positive integer such as 8")
    return int(value)


def question_with_images(context: str, image_count: int) -> str:
    """LLaVA's layout: the images, a newline, then the text, unless the task placed `<image>` itself."""
    if image_count == 0 or IMAGE_PLACEHOLDER in context:
        return context
    return " ".join([IMAGE_PLACEHOLDER] * image_count) + "\n" + context


def truncate_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """Text up to the first stop string, as lmms-eval's scorers expect (generation may run past it)."""
    for stop in stop_strings:
        text = text.split(stop)[0]
    return text


@dataclass(frozen=True)
class GenerationSettings:
    """A task's `generation_kwargs`, resolved; keys other models use but this one does not are ignored."""

    until: tuple[str, ...]
    max_new_tokens: int
    temperature: float
    top_p: float | None
    num_beams: int

    @classmethod
    def from_task(cls, gen_kwargs: dict, eos_text: str) -> GenerationSettings:
        until = gen_kwargs.get("until", [eos_text])
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, list):
            raise ValueError(f"generation_kwargs until={until!r} must be a string or a list of strings")
        return cls(
            until=tuple(stop for stop in until if stop),
            max_new_tokens=int(gen_kwargs.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)),
            temperature=float(gen_kwargs.get("temperature", 0.0)),
            top_p=gen_kwargs.get("top_p"),
            num_beams=int(gen_kwargs.get("num_beams", 1)),
        )

    def generate_kwargs(self, tokenizer: PreTrainedTokenizerBase, prompt_length: int) -> dict:
        """Arguments for `model.generate`: greedy at temperature 0, as LLaVA evaluates.
        `prompt_length`: the padded prompt width, where every row's answer starts."""
        sampling = self.temperature > 0
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sampling,
            "temperature": self.temperature if sampling else None,
            "top_p": self.top_p if sampling else None,
            "num_beams": self.num_beams,
            "stopping_criteria": StoppingCriteriaList(
                [AnswerStopStrings(tokenizer, self.until, prompt_length)] if self.until else []
            ),
        }


class AnswerStopStrings(StoppingCriteria):
    """transformers' stop strings, matched on the answer's tokens only. Rows are left-padded to
    `prompt_length`, so every answer starts at that column. The prompt holds the image placeholder,
    a negative id that StopStringCriteria cannot look up; under the plain template (a stage-1
    checkpoint) the placeholder is among the last prompt tokens, inside the window it reads."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, stop_strings: Sequence[str], prompt_length: int):
        self.stop = StopStringCriteria(tokenizer, list(stop_strings))
        self.prompt_length = prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return self.stop(input_ids[:, self.prompt_length :], scores, **kwargs)


@dataclass(frozen=True)
class Prompt:
    """One request's prompt ids (placeholders expanded) and the crops of its images."""

    token_ids: list[int]
    crops: list[torch.Tensor]


class TokenPackerLMM(lmms):
    """`lmms-eval --model tokenpacker --model_args pretrained=FOLDER[,dtype=bfloat16,conv_template=vicuna_v1]`.

    Under `accelerate launch` each process holds a full copy on its own device and lmms-eval gives
    it every world_size-th document. An unreadable image is logged with its task and doc id and
    the request is answered with empty text (negative log-likelihood +inf), so it is scored wrong, not dropped.
    """

    def __init__(
        self,
        pretrained: str,
        device: str | None = None,
        dtype: str = "float32",
        batch_size: int | str = 1,
        conv_template: str | None = None,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        folder = check_suite_checkpoint(pretrained)
        torch_dtype = parse_dtype(dtype)
        self.batch_size_per_process = parse_batch_size(batch_size)
        self.accelerator = Accelerator()
        if self.accelerator.num_processes > 1:
            self._device = self.accelerator.device  # one device per process, as accelerate assigned it
        else:
            self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self._rank = self.accelerator.process_index
        self._world_size = self.accelerator.num_processes
        self.processor = TokenPackerProcessor.from_pretrained(folder)
        self.template: ConversationTemplate = get_template(
            conv_template or self.processor.config.conversation_template
        )
        self._model = TokenPackerForCausalLM.from_pretrained(
            folder,
            dtype=torch_dtype,
            attn_implementation=attn_implementation or default_attn_implementation(self._device),
        )
        self._model.to(self._device).eval()
        eval_logger.info(
            f"tokenpacker: {folder} on {self._device} ({dtype}), process {self._rank}/{self._world_size}"
        )

    @property
    def model(self) -> TokenPackerForCausalLM:
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self.processor.tokenizer

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_process

    def load_images(
        self, doc_to_visual: Callable[[dict], list], task: str, split: str, doc_id: int
    ) -> list[ImageInput] | None:
        """The doc's images ready for the model, or None (logged) when one cannot be decoded."""
        try:
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            visuals = [] if visuals is None else visuals if isinstance(visuals, list) else [visuals]
            for visual in visuals:
                if not isinstance(visual, Image.Image):
                    raise TypeError(
                        f"task {task!r} doc {doc_id} gives a {type(visual).__name__} visual; the tokenpacker "
                        "model reads images only (PIL images from doc_to_visual)"
                    )
            return [self.processor.preprocess_image(visual) for visual in visuals]
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"task {task!r} doc {doc_id}: image {error.filename!r} not found; check the data root"
            ) from error
        # PIL's UnidentifiedImageError and truncated files are OSErrors
        except (OSError, ValueError) as error:
            eval_logger.error(
                f"task {task!r} doc {doc_id}: unreadable image ({error}); the sample counts as wrong"
            )
            return None

    def build_prompt(self, context: str, images: list[ImageInput], continuation: str = "") -> Prompt:
        question = question_with_images(context, len(images))
        text = self.template.prompt(question) + continuation
        return Prompt(self.processor.tokenize(text, images), [image.crops for image in images])

    def model_inputs(self, prompts: Sequence[Prompt]) -> dict[str, torch.Tensor | None]:
        """A left-padded batch (input_ids, attention_mask, pixel_values) on the model's device."""
        batch = pad_sequences([p.token_ids for p in prompts], self.tokenizer.pad_token_id, "left")
        crops = [crop for p in prompts for crop in p.crops]
        batch["pixel_values"] = torch.cat(crops).to(self.model.dtype) if crops else None
        return {name: None if value is None else value.to(self.device) for name, value in batch.items()}

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy (temperature 0) answers with KV cache, batched by prompt length and generation settings."""
        collator = Collator(
            [request.args for request in requests], lambda args: (-len(args[0]), args[0]), grouping=True
        )
        answers = []
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="Model Responding")
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            answers.extend(self.generate_chunk(chunk))
            progress.update(len(chunk))
        progress.close()
        return collator.get_original(answers)

    def generate_chunk(self, chunk: Sequence[tuple]) -> list[str]:
        """Answers for requests sharing generation settings; an unreadable image gives an empty answer."""
        settings = GenerationSettings.from_task(chunk[0][1], self.tokenizer.eos_token)
        prompts: list[Prompt | None] = []
        for context, _, doc_to_visual, doc_id, task, split in chunk:
            images = self.load_images(doc_to_visual, task, split, doc_id)
            prompts.append(None if images is None else self.build_prompt(context, images))
        readable = [prompt for prompt in prompts if prompt is not None]
        texts = iter(self.generate_texts(readable, settings) if readable else [])
        answers = [next(texts) if prompt is not None else "" for prompt in prompts]
        for (context, gen_kwargs, *_), answer in zip(chunk, answers, strict=True):
            self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answer)
        return answers

    @torch.inference_mode()
    def generate_texts(self, prompts: Sequence[Prompt], settings: GenerationSettings) -> list[str]:
        inputs = self.model_inputs(prompts)
        prompt_length = inputs["input_ids"].shape[1]
        output = self.model.generate(
            **inputs,
            **settings.generate_kwargs(self.tokenizer, prompt_length),
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        new_tokens = output[:, prompt_length:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        # The template puts a space after "ASSISTANT:"; LLaVA strips the answer the same way.
        return [truncate_at_stop(text, settings.until).strip() for text in texts]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """-log p(continuation | prompt), summed over its tokens, and whether greedy decoding gives it.

        lmms-eval's convention is a loss, not a log-probability: its multiple-choice scoring picks the
        choice with the smallest value (argmin), as its own models return the forward pass's loss.
        """
        collator = Collator([request.args for request in requests], lambda args: (-len(args[0]), args[0]))
        scores = []
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="Model Responding")
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            scores.extend(self.loglikelihood_chunk(chunk))
            progress.update(len(chunk))
        progress.close()
        return collator.get_original(scores)

    def loglikelihood_chunk(self, chunk: Sequence[tuple]) -> list[tuple[float, bool]]:
        prompts: list[tuple[Prompt, int] | None] = []
        for context, target, doc_to_visual, doc_id, task, split in chunk:
            images = self.load_images(doc_to_visual, task, split, doc_id)
            if images is None:
                prompts.append(None)
                continue
            continuation = target if isinstance(target, str) else target(self.task_dict[task][split][doc_id])
            context_length = len(self.build_prompt(context, images).token_ids)
            whole = self.build_prompt(context, images, continuation)
            prompts.append((whole, len(whole.token_ids) - context_length))
        readable = [prompt for prompt in prompts if prompt is not None]
        scored = iter(self.continuation_scores(readable) if readable else [])
        return [next(scored) if prompt is not None else (float("inf"), False) for prompt in prompts]

    @torch.inference_mode()
    def continuation_scores(self, prompts: Sequence[tuple[Prompt, int]]) -> list[tuple[float, bool]]:
        """With left padding every continuation ends the row, so only the last positions' logits are needed."""
        inputs = self.model_inputs([prompt for prompt, _ in prompts])
        position_ids = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)  # count real tokens only
        longest = max(length for _, length in prompts)
        logits = self.model(**inputs, position_ids=position_ids, logits_to_keep=longest + 1).logits
        log_probs = logits[:, :-1].float().log_softmax(-1)  # (B, longest, V): predictions of the last tokens
        input_ids = inputs["input_ids"]
        targets = input_ids[:, input_ids.shape[1] - longest :]
        token_log_probs = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        is_greedy = log_probs.argmax(-1) == targets
        scores = []
        for row, (_, length) in enumerate(prompts):
            span = slice(longest - length, longest)
            scores.append((-float(token_log_probs[row, span].sum()), bool(is_greedy[row, span].all())))
        return scores

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError(
            "the tokenpacker model answers single-round tasks only (generate_until, loglikelihood)"
        )
