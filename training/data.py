"""LLaVA's JSON training data: validation up front, lazy image loading, label masking.

A data file is a JSON list of `{"id", "image", "conversations": [{"from": "human", "value":
"<image>\\n..."}, {"from": "gpt", "value": "..."}]}`; `image` (a path relative to the image
folder, or a list of them) is absent for text-only samples. An optional `"template"` names the
conversation template of one sample instead of the stage's (a text corpus can hold stage-1
captions in `plain` beside stage-2 chats in `vicuna_v1`). Everything that can be checked
without decoding pixels (JSON shape, `<image>` counts, turn order, image files, token
lengths) is checked when the data set is built, so a bad file fails in seconds, not hours in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path

import torch
from PIL import Image
from tqdm.auto import tqdm

from tokenpacker.conversation import IMAGE_PLACEHOLDER, ConversationTemplate, get_template
from tokenpacker.hd import select_grid, tokens_for_grid
from tokenpacker.modeling import IGNORE_INDEX
from tokenpacker.processing import ImageInput, TokenPackerProcessor

logger = logging.getLogger(__name__)
TOKENIZE_CHUNK = 4096  # text pieces per batched tokenizer call when measuring lengths


class DataError(ValueError):
    """Training data that cannot be used as given; the message names the file and sample."""


@dataclass(frozen=True)
class LlavaSample:
    """One validated record: image paths (relative to the image folder) and (role, text) turns."""

    id: str
    images: tuple[str, ...]
    turns: tuple[tuple[str, str], ...]
    template: str | None = None  # None: the stage's template


@dataclass(frozen=True)
class EncodedConversation:
    """Token ids and labels of one conversation; `labels` is IGNORE_INDEX wherever no loss is taken."""

    input_ids: list[int]
    labels: list[int]


def read_llava_json(path: str | Path) -> list[LlavaSample]:
    """Parse and validate a LLaVA JSON file; every problem names the sample and how to fix it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"training data file {path} does not exist; set data_path to a LLaVA JSON file"
        )
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{path} is not valid JSON ({error}); expected a list of LLaVA samples") from None
    if not isinstance(records, list):
        raise DataError(f"{path} holds a JSON {type(records).__name__}; expected a list of LLaVA samples")
    if not records:
        raise DataError(f"{path} holds no samples; a training stage needs at least one")
    return [parse_sample(record, index, path) for index, record in enumerate(records)]


def parse_sample(record: object, index: int, path: Path) -> LlavaSample:
    where = f"{path}: sample {index}"
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        raise DataError(
            f"{where} has no 'conversations' list; each sample needs 'conversations' (and 'image')"
        )
    where = f"{path}: sample {index} (id {record.get('id', index)!r})"
    turns = []
    for turn in record["conversations"]:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or "from" not in turn:
            raise DataError(
                f"{where} has a turn {turn!r}; each turn needs 'from' (human/gpt) and a string 'value'"
            )
        turns.append((turn["from"], turn["value"]))
    if not turns:
        raise DataError(f"{where} has an empty conversation")
    image = record.get("image")
    images = (image,) if isinstance(image, str) else tuple(image or ())
    if not all(isinstance(i, str) for i in images):
        raise DataError(f"{where} has image {image!r}; expected a file path or a list of file paths")
    placeholders = sum(text.count(IMAGE_PLACEHOLDER) for _, text in turns)
    if placeholders != len(images):
        raise DataError(
            f"{where} has {len(images)} image(s) but {placeholders} {IMAGE_PLACEHOLDER} placeholder(s) in its "
            f"conversation; put one {IMAGE_PLACEHOLDER} in a human turn per image"
        )
    template = record.get("template")
    if template is not None:
        try:
            get_template(template)
        except ValueError as error:
            raise DataError(f"{where}: {error}") from None
    return LlavaSample(id=str(record.get("id", index)), images=images, turns=tuple(turns), template=template)


def encode_conversation(
    processor: TokenPackerProcessor,
    template: ConversationTemplate,
    turns: Sequence[tuple[str, str]],
    images: Sequence[ImageInput],
) -> EncodedConversation:
    """Ids and labels of one conversation rendered with `template`.

    The ids are exactly `processor.tokenize(rendered text, images)`, so training sees the tokens
    inference will (segments tokenised one by one would put extra tokens at segment edges, e.g. a
    lone space before "ASSISTANT:"). A token carries loss iff it starts inside a trainable segment
    (an answer and its end marker); special tokens and image ids never do.
    """
    segments = template.render(turns)
    text = "".join(segment.text for segment in segments)
    trainable = [segment.trainable for segment in segments for _ in segment.text]  # one flag per character
    pieces = text.split(IMAGE_PLACEHOLDER)
    if len(pieces) - 1 != len(images):
        raise DataError(f"conversation has {len(pieces) - 1} {IMAGE_PLACEHOLDER} but {len(images)} images")
    input_ids: list[int] = []
    labels: list[int] = []
    start_of_piece = 0
    for index, piece in enumerate(pieces):
        if index:
            image_ids = images[index - 1].token_ids
            input_ids += image_ids
            labels += [IGNORE_INDEX] * len(image_ids)
            start_of_piece += len(IMAGE_PLACEHOLDER)
        encoding = processor.tokenizer(piece, add_special_tokens=index == 0, return_offsets_mapping=True)
        for token, (start, end) in zip(encoding["input_ids"], encoding["offset_mapping"], strict=True):
            input_ids.append(token)
            labels.append(token if end > start and trainable[start_of_piece + start] else IGNORE_INDEX)
        start_of_piece += len(piece)
    return EncodedConversation(input_ids=input_ids, labels=labels)


def truncate(
    encoded: EncodedConversation, images: Sequence[ImageInput], max_length: int, image_token_id: int
) -> tuple[EncodedConversation, int]:
    """Cut to `max_length` tokens without splitting an image: an image that no longer fits is
    dropped with everything after it. Returns the result and how many images are kept."""
    if len(encoded.input_ids) <= max_length:
        return encoded, len(images)
    placeholder_positions = [i for i, token in enumerate(encoded.input_ids) if token == image_token_id]
    first_placeholder = list(
        accumulate((image.token_ids.count(image_token_id) for image in images), initial=0)
    )
    cut, kept = max_length, len(images)
    for index, image in enumerate(images):
        start = placeholder_positions[first_placeholder[index]]
        if start + len(image.token_ids) > max_length:
            cut, kept = start, index
            break
    return EncodedConversation(encoded.input_ids[:cut], encoded.labels[:cut]), kept


def check_room_for_an_image(processor: TokenPackerProcessor, max_length: int, has_images: bool) -> None:
    """Truncation drops images that do not fit; when not even one fits, every image sample would train
    on nothing, so refuse instead of running a silently image-free training."""
    tokens = processor.tokens_per_crop
    if has_images and not processor.config.is_hd and tokens >= max_length:
        raise DataError(
            f"model_max_length={max_length} cannot hold one image: the {processor.config.projector_type} "
            f"projector emits {tokens} visual tokens per image; set model_max_length above {tokens} "
            f"(e.g. {tokens + 448})"
        )


class LlavaDataset(torch.utils.data.Dataset):
    """LLaVA JSON samples as model inputs; images are opened only when a sample is drawn (and, with
    `cache_images`, kept as crops after that).

    Items are `{"input_ids", "labels", "pixel_values" (crops of all images, or None)}`.
    `lengths` (exact token counts before truncation) and `has_image` drive
    group_by_modality_length; over-long samples are counted and logged once, here.
    """

    def __init__(
        self,
        data_path: str | Path,
        image_folder: str | Path | None,
        processor: TokenPackerProcessor,
        template: str,
        max_length: int,
        cache_images: bool = False,
    ) -> None:
        if not processor.tokenizer.is_fast:
            raise DataError(
                f"label masking needs a fast (tokenizers-backed) tokenizer for character offsets; "
                f"{type(processor.tokenizer).__name__} is not one: load it with AutoTokenizer (use_fast=True)"
            )
        self.samples = read_llava_json(data_path)
        self.image_folder = Path(image_folder) if image_folder is not None else None
        self.processor = processor
        self.template = get_template(template)
        self.max_length = max_length
        # name -> its processed crops, kept after first use when the recipe asks (small worlds only)
        self.image_cache: dict[str, ImageInput] | None = {} if cache_images else None
        self.has_image = [bool(sample.images) for sample in self.samples]
        check_room_for_an_image(processor, max_length, any(self.has_image))
        self.check_templates(data_path)
        self.lengths = self.measure_lengths(data_path)
        too_long = sum(length > max_length for length in self.lengths)
        if too_long:
            logger.warning(
                "%d of %d samples in %s exceed model_max_length=%d tokens and will be truncated "
                "(longest: %d tokens)",
                too_long,
                len(self.samples),
                data_path,
                max_length,
                max(self.lengths),
            )

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | None]:
        sample = self.samples[index]
        images = [self.prepared_image(name) for name in sample.images]
        encoded = encode_conversation(self.processor, self.template_of(sample), sample.turns, images)
        encoded, kept = truncate(encoded, images, self.max_length, self.processor.config.image_token_id)
        crops = [image.crops for image in images[:kept]]
        return {
            "input_ids": torch.tensor(encoded.input_ids, dtype=torch.long),
            "labels": torch.tensor(encoded.labels, dtype=torch.long),
            "pixel_values": torch.cat(crops) if crops else None,
        }

    def prepared_image(self, name: str) -> ImageInput:
        """The processor's crops of one image, from the cache where it is kept."""
        if self.image_cache is None:
            return self.processor.preprocess_image(self.open_image(name))
        if name not in self.image_cache:
            self.image_cache[name] = self.processor.preprocess_image(self.open_image(name))
        return self.image_cache[name]

    def image_path(self, name: str) -> Path:
        if self.image_folder is None:
            raise DataError(
                f"samples name images (e.g. {name!r}) but no image_folder was given; set image_folder"
            )
        return self.image_folder / name

    def open_image(self, name: str) -> Image.Image:
        path = self.image_path(name)
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read image {path}: {error}") from None

    def template_of(self, sample: LlavaSample) -> ConversationTemplate:
        return get_template(sample.template) if sample.template else self.template

    def check_templates(self, data_path: str | Path) -> None:
        """Render every conversation once so turn-order errors name their sample up front."""
        for sample in self.samples:
            try:
                self.template_of(sample).render(sample.turns)
            except ValueError as error:
                raise DataError(f"{data_path}: sample id {sample.id!r}: {error}") from None

    def image_token_counts(self, data_path: str | Path) -> list[int]:
        """Tokens each sample's images occupy; also proves every image file exists before training."""
        per_crop = self.processor.tokens_per_crop
        missing, counts = [], []
        for sample in tqdm(self.samples, desc=f"checking images of {Path(data_path).name}", disable=None):
            total = 0
            for name in sample.images:
                path = self.image_path(name)
                if not path.is_file():
                    missing.append(str(path))
                elif self.processor.config.is_hd:
                    with Image.open(path) as image:
                        rows, cols = select_grid(
                            image.height,
                            image.width,
                            self.processor.config.patch_num,
                            self.processor.image_size,
                        )
                    total += tokens_for_grid(rows, cols, per_crop)
                else:
                    total += per_crop
            counts.append(total)
        if missing:
            raise DataError(
                f"{len(missing)} image file(s) named in {data_path} do not exist under {self.image_folder}, "
                f"e.g. {', '.join(missing[:3])}; fix image_folder or the JSON's image paths"
            )
        return counts

    def measure_lengths(self, data_path: str | Path) -> list[int]:
        """Exact token count of each encoded sample: the text between images tokenised in large
        batches (the first piece with the tokenizer's special tokens, as encode_conversation does)."""
        pieces: dict[bool, list[str]] = {True: [], False: []}  # keyed by "is the first piece"
        owners: dict[bool, list[int]] = {True: [], False: []}
        for index, sample in enumerate(self.samples):
            text = "".join(segment.text for segment in self.template_of(sample).render(sample.turns))
            for position, piece in enumerate(text.split(IMAGE_PLACEHOLDER)):
                pieces[position == 0].append(piece)
                owners[position == 0].append(index)
        lengths = self.image_token_counts(data_path)
        for first in (True, False):
            chunks = range(0, len(pieces[first]), TOKENIZE_CHUNK)
            for start in tqdm(chunks, desc="measuring token lengths", disable=None):
                chunk = pieces[first][start : start + TOKENIZE_CHUNK]
                encoded = self.processor.tokenizer(chunk, add_special_tokens=first)["input_ids"]
                for owner, ids in zip(owners[first][start : start + TOKENIZE_CHUNK], encoded, strict=True):
                    lengths[owner] += len(ids)
        return lengths
