"""group_by_modality_length: one modality per global batch, similar lengths, replayable order."""

from __future__ import annotations

import torch
from transformers import TrainingArguments

from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_model, build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.collator import MultimodalCollator
from training.data import LlavaDataset
from training.sampling import ModalityLengthGroupedSampler, modality_length_grouped_indices
from training.stages import MultimodalTrainer

LENGTHS = [(i * 37) % 101 + 5 for i in range(50)]
HAS_IMAGE = [i % 3 != 0 for i in range(50)]  # 33 image samples, 17 text-only


def groups(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order), size)]


def test_order_is_a_permutation_with_single_modality_groups():
    order = modality_length_grouped_indices(LENGTHS, HAS_IMAGE, 4, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(50))
    mixed = [g for g in groups(order, 4) if len({HAS_IMAGE[i] for i in g}) > 1]
    assert len(mixed) <= 1 and (not mixed or mixed[0] == groups(order, 4)[-1])  # only the leftover tail mixes


def test_groups_hold_similar_lengths():
    """HF's length grouping sorts within mega-batches of up to 50 groups: big data sets group tightly."""
    lengths = torch.randint(10, 1000, (4000,), generator=torch.Generator().manual_seed(1)).tolist()
    has_image = [i % 4 != 0 for i in range(4000)]
    order = modality_length_grouped_indices(lengths, has_image, 4, torch.Generator().manual_seed(0))
    spread = sum(max(lengths[i] for i in g) - min(lengths[i] for i in g) for g in groups(order, 4))
    shuffled = torch.randperm(4000, generator=torch.Generator().manual_seed(0)).tolist()
    random_spread = sum(max(lengths[i] for i in g) - min(lengths[i] for i in g) for g in groups(shuffled, 4))
    assert spread < random_spread / 10


def test_sampler_replays_an_epoch_and_varies_between_epochs():
    sampler = ModalityLengthGroupedSampler(LENGTHS, HAS_IMAGE, 4, seed=7)
    first = list(sampler)
    assert list(ModalityLengthGroupedSampler(LENGTHS, HAS_IMAGE, 4, seed=7)) == first
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == sorted(first)


def test_trainer_batches_are_single_modality(llava, tmp_path):
    config = tiny_config("tokenpacker", 4)
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 512)
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, report_to="none", dataloader_pin_memory=False
    )
    trainer = MultimodalTrainer(
        model=build_tiny_model(config),
        args=args,
        train_dataset=dataset,
        data_collator=MultimodalCollator(processor.tokenizer.pad_token_id),
        group_by_modality_length=True,
    )
    batches = list(trainer.get_train_dataloader())
    assert isinstance(trainer._get_train_sampler(), ModalityLengthGroupedSampler)
    assert sum(len(b["input_ids"]) for b in batches) == len(dataset)
    for batch in batches:
        images = (batch["input_ids"] == config.image_token_id).any(dim=1)
        assert images.all() or not images.any()
