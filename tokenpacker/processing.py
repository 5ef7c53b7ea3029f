"""Turns prompts with `<image>` and PIL images into model inputs, expanding each placeholder.

Each `<image>` becomes exactly the ids the image occupies in the LLM input: the
`image_token_id` placeholder once per visual token and, for TokenPacker-HD, the real ","
and "\\n" token ids between crops and rows. The model then only fills placeholders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, BaseImageProcessor, PreTrainedTokenizerBase

from tokenpacker.conversation import IMAGE_PLACEHOLDER
from tokenpacker.hd import hd_layout_index, slice_image
from tokenpacker.modeling import TokenPackerConfig


@dataclass(frozen=True)
class ImageInput:
    """One image ready for the model: its crops (n, 3, S, S) and the ids it occupies in the prompt."""

    crops: torch.Tensor
    token_ids: list[int]


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """LLaVA's `pad` mode: centre the image on a square of the processor's mean colour."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def last_token_id(tokenizer: PreTrainedTokenizerBase, text: str) -> int:
    """Id of `text` as it ends a tokenised piece (sentencepiece may prefix a bare space id)."""
    return tokenizer.encode(text, add_special_tokens=False)[-1]


@dataclass(frozen=True)
class TokenPackerProcessor:
    tokenizer: PreTrainedTokenizerBase
    image_processor: BaseImageProcessor
    config: TokenPackerConfig

    @classmethod
    def from_pretrained(cls, path: str | Path) -> TokenPackerProcessor:
        return cls(
            tokenizer=AutoTokenizer.from_pretrained(path),
            image_processor=AutoImageProcessor.from_pretrained(path),
            config=TokenPackerConfig.from_pretrained(path),
        )

    @property
    def image_size(self) -> int:
        return self.config.vision_config.image_size

    @cached_property
    def tokens_per_crop(self) -> int:
        """Asked of the config once per processor, not per image."""
        return self.config.tokens_per_crop()

    @cached_property
    def separator_ids(self) -> tuple[int, int]:
        """The "," and "\\n" ids HD puts between crops and after rows, tokenised once."""
        return last_token_id(self.tokenizer, ","), last_token_id(self.tokenizer, "\n")

    def preprocess_image(self, image: Image.Image) -> ImageInput:
        image = image.convert("RGB")
        placeholder = self.config.image_token_id
        tokens = self.tokens_per_crop
        if not self.config.is_hd:
            fill = tuple(int(round(255 * m)) for m in self.image_processor.image_mean)
            square = expand_to_square(image, fill).resize((self.image_size, self.image_size), Image.BICUBIC)
            pixels = self.image_processor(images=square, return_tensors="pt")["pixel_values"]
            return ImageInput(crops=pixels, token_ids=[placeholder] * tokens)
        sliced = slice_image(
            image,
            self.config.patch_num,
            cell_size=self.image_size,
            image_mean=self.image_processor.image_mean,
            image_std=self.image_processor.image_std,
        )
        index = hd_layout_index(sliced.rows, sliced.cols, tokens)
        visual = sliced.crops.shape[0] * tokens
        comma, newline = self.separator_ids
        ids = torch.where(index < visual, placeholder, torch.where(index == visual, comma, newline))
        return ImageInput(crops=sliced.crops, token_ids=ids.tolist())

    def tokenize(self, text: str, images: Sequence[ImageInput]) -> list[int]:
        """Token ids of one prompt (BOS first), each `<image>` replaced by its image's ids."""
        pieces = text.split(IMAGE_PLACEHOLDER)
        if len(pieces) - 1 != len(images):
            raise ValueError(
                f"prompt has {len(pieces) - 1} {IMAGE_PLACEHOLDER} placeholders but {len(images)} images were given; "
                f"put one {IMAGE_PLACEHOLDER} in the text per image"
            )
        ids = self.tokenizer.encode(pieces[0], add_special_tokens=True)
        for image, piece in zip(images, pieces[1:], strict=True):
            ids += image.token_ids + self.tokenizer.encode(piece, add_special_tokens=False)
        return ids

    def __call__(
        self,
        texts: Sequence[str],
        images: Sequence[Sequence[Image.Image]],
        padding_side: str = "left",
    ) -> dict[str, torch.Tensor | None]:
        """A padded batch: input_ids, attention_mask and all crops of all images in order."""
        if len(texts) != len(images):
            raise ValueError(
                f"{len(texts)} texts but {len(images)} image lists; give one (possibly empty) list per text"
            )
        prepared = [[self.preprocess_image(image) for image in sample] for sample in images]
        sequences = [self.tokenize(text, sample) for text, sample in zip(texts, prepared, strict=True)]
        crops = [image.crops for sample in prepared for image in sample]
        batch = pad_sequences(sequences, self.tokenizer.pad_token_id, padding_side)
        batch["pixel_values"] = torch.cat(crops) if crops else None
        return batch


def pad_sequences(sequences: Sequence[list[int]], pad_id: int, padding_side: str) -> dict[str, torch.Tensor]:
    """Pad to the longest; left padding keeps the last prompt token last, as generation needs."""
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side={padding_side!r}; allowed: left, right")
    longest = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        span = slice(longest - len(sequence), longest) if padding_side == "left" else slice(0, len(sequence))
        input_ids[row, span] = torch.tensor(sequence, dtype=torch.long)
        attention_mask[row, span] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}
