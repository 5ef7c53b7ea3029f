"""Batches of LlavaDataset items: right-padded ids and labels, all image crops concatenated.

`padding_free` packs the batch's samples side by side into rows (first-fit decreasing) instead of
padding each to the longest. Rows carry position ids that restart at every
sample and no attention mask, from which transformers builds a block-diagonal causal mask
(masking_utils.find_packed_sequence_indices; only when the model builds no KV cache, which
HF Trainer turns off through TrainingArguments.use_cache), so each sample sees only itself; flash attention finds packed
samples only in a single row (transformers' _is_packed_sequence; in several rows it would let
each sample attend to the one before it), so under it the whole batch is one row: the same batch, the
same loss and gradients, less padding computed. It pays where lengths vary (the tiny world's text
phases: padding is about 40% of a padded batch); where they do not (stages 1-2, whose image tokens
dominate and whose stage 2 is length-grouped) it was slower."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

from tokenpacker.modeling import IGNORE_INDEX

Item = dict[str, torch.Tensor | None]
# Rows this many times as wide as the batch's longest sample. Measured on the tiny world's stage-0 text
# (32 samples of 15-107 tokens, median 62; 2 CPU cores): a padded batch is 3424 token slots; rows one
# sample wide 26 x 107 (forward and backward 0.211 s against 0.234), two wide 10 x 214 (0.179 s);
# three wide gained nothing more.
ROW_SPAN = 2


@dataclass(frozen=True)
class MultimodalCollator:
    """Right padding (training has no generation step); crops stay in the order of their samples'
    placeholders in the flattened batch, which is the order the model fills them in."""

    pad_token_id: int
    padding_free: bool = False
    one_row: bool = False  # packed, the whole batch in one row: what flash attention needs (see above)

    def __call__(self, items: Sequence[Item]) -> dict[str, torch.Tensor]:
        if self.padding_free:
            return self.packed(items)
        input_ids = pad_sequence(
            [item["input_ids"] for item in items], batch_first=True, padding_value=self.pad_token_id
        )
        labels = pad_sequence(
            [item["labels"] for item in items], batch_first=True, padding_value=IGNORE_INDEX
        )
        lengths = torch.tensor([len(item["input_ids"]) for item in items])
        attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        return batch | crops_of(items)

    def packed(self, items: Sequence[Item]) -> dict[str, torch.Tensor]:
        """No attention mask: transformers reads the samples' bounds off the restarting positions."""
        lengths = [len(item["input_ids"]) for item in items]
        rows = [list(range(len(items)))] if self.one_row else pack_rows(lengths)
        ids, labels, positions = [], [], []
        for row in rows:
            ids.append(torch.cat([items[i]["input_ids"] for i in row]))
            labels.append(torch.cat([first_label_ignored(items[i]["labels"]) for i in row]))
            positions.append(torch.cat([torch.arange(len(items[i]["input_ids"])) for i in row]))
        batch = {
            "input_ids": pad_sequence(ids, batch_first=True, padding_value=self.pad_token_id),
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
            # pads get position 0, so each is a one-token segment of its own
            "position_ids": pad_sequence(positions, batch_first=True, padding_value=0),
        }
        return batch | crops_of([items[i] for row in rows for i in row])


def pack_rows(lengths: Sequence[int]) -> list[list[int]]:
    """Sample indices per row, first-fit decreasing into rows ROW_SPAN times the longest sample."""
    width = ROW_SPAN * max(lengths)
    rows: list[list[int]] = []
    free: list[int] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, space in enumerate(free) if lengths[index] <= space), None)
        if row is None:
            rows.append([])
            free.append(width)
            row = len(rows) - 1
        rows[row].append(index)
        free[row] -= lengths[index]
    return rows


def first_label_ignored(labels: torch.Tensor) -> torch.Tensor:
    """Packed, a sample's first label follows the previous sample's last token, which must not
    learn to predict it; padded, that label is never a target either."""
    return torch.cat([labels.new_full((1,), IGNORE_INDEX), labels[1:]])


def crops_of(items: Sequence[Item]) -> dict[str, torch.Tensor]:
    """`items` in the order their image placeholders take in the flattened batch."""
    crops = [item["pixel_values"] for item in items if item["pixel_values"] is not None]
    return {"pixel_values": torch.cat(crops)} if crops else {}
