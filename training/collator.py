"""Batches of LlavaDataset items: right-padded ids and labels, all image crops concatenated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from tokenpacker.modeling import IGNORE_INDEX


@dataclass(frozen=True)
class MultimodalCollator:
    """Right padding (training has no generation step); crops stay in sample order, which is
    the order the model fills image placeholders in."""

    pad_token_id: int

    def __call__(self, items: Sequence[dict[str, torch.Tensor | None]]) -> dict[str, torch.Tensor]:
        input_ids = pad_sequence(
            [item["input_ids"] for item in items], batch_first=True, padding_value=self.pad_token_id
        )
        labels = pad_sequence(
            [item["labels"] for item in items], batch_first=True, padding_value=IGNORE_INDEX
        )
        lengths = torch.tensor([len(item["input_ids"]) for item in items])
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        crops = [item["pixel_values"] for item in items if item["pixel_values"] is not None]
        if crops:
            batch["pixel_values"] = torch.cat(crops)
        return batch
