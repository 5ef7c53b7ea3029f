"""LLaVA's `group_by_modality_length`: every global batch is all image samples or all text-only
samples, and holds samples of similar length, so padding is small and (under DeepSpeed) every
rank runs the vision tower and projector in the same steps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler
from transformers.trainer_pt_utils import get_length_grouped_indices


def modality_length_grouped_indices(
    lengths: Sequence[int], has_image: Sequence[bool], group_size: int, generator: torch.Generator
) -> list[int]:
    """A permutation of range(len(lengths)) cut into groups of `group_size` of one modality and
    similar length (HF's length grouping per modality); the groups are shuffled and any
    incomplete group (at most one per modality) goes last."""
    groups: list[list[int]] = []
    for modality in (True, False):
        members = [i for i, flag in enumerate(has_image) if flag == modality]
        if not members:
            continue
        order = get_length_grouped_indices([lengths[i] for i in members], group_size, generator=generator)
        ordered = [members[i] for i in order]
        groups += [ordered[start : start + group_size] for start in range(0, len(ordered), group_size)]
    full = [group for group in groups if len(group) == group_size]
    partial = [group for group in groups if len(group) < group_size]
    shuffled = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    return [index for group in shuffled + partial for index in group]


class ModalityLengthGroupedSampler(Sampler[int]):
    """Deterministic per (seed, epoch), so a resumed run replays the same order."""

    def __init__(self, lengths: Sequence[int], has_image: Sequence[bool], group_size: int, seed: int) -> None:
        if len(lengths) != len(has_image):
            raise ValueError(
                f"{len(lengths)} lengths but {len(has_image)} modality flags; give one of each per sample"
            )
        self.lengths = list(lengths)
        self.has_image = list(has_image)
        self.group_size = group_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_length_grouped_indices(self.lengths, self.has_image, self.group_size, generator))
