"""padding_free: a batch packed into rows trains exactly as the same batch padded."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainingArguments

from tokenpacker.modeling import IGNORE_INDEX
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_model, build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.collator import ROW_SPAN, MultimodalCollator, pack_rows
from training.data import LlavaDataset
from training.stages import MultimodalTrainer


def test_rows_take_every_sample_once_first_fit_decreasing():
    lengths = [5, 3, 8, 2, 7]
    rows = pack_rows(lengths)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= ROW_SPAN * max(lengths) for row in rows)
    assert rows == [[2, 4], [0, 1, 3]]  # 8 then 7 fill the first 16-wide row; 5, 3 and 2 the second


def hd_batch(llava) -> tuple[TokenPackerProcessor, list[dict]]:
    """Text-only and image samples of several lengths; HD gives each image several crops."""
    config = tiny_config("tokenpacker", 4, patch_num=9)
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    dataset = LlavaDataset(llava.stage2, llava.image_folder, processor, "vicuna_v1", 4096)
    text = [i for i, image in enumerate(dataset.has_image) if not image][:2]
    return processor, [dataset[i] for i in (0, text[0], 1, 2, text[1])]


def test_packed_rows_restart_positions_and_keep_crops_in_placeholder_order(llava):
    processor, items = hd_batch(llava)
    batch = MultimodalCollator(processor.tokenizer.pad_token_id, padding_free=True)(items)
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] < len(items)
    rows = pack_rows([len(item["input_ids"]) for item in items])
    crops = []
    for row, members in enumerate(rows):
        start = 0
        for index in members:
            length = len(items[index]["input_ids"])
            span = slice(start, start + length)
            assert batch["input_ids"][row, span].tolist() == items[index]["input_ids"].tolist()
            assert batch["position_ids"][row, span].tolist() == list(range(length))
            assert batch["labels"][row, start] == IGNORE_INDEX
            assert (
                batch["labels"][row, start + 1 : start + length].tolist()
                == items[index]["labels"][1:].tolist()
            )
            start += length
            if items[index]["pixel_values"] is not None:
                crops.append(items[index]["pixel_values"])
        assert (batch["labels"][row, start:] == IGNORE_INDEX).all()
    assert torch.equal(batch["pixel_values"], torch.cat(crops))


def test_a_packed_batch_gives_the_padded_loss_and_gradients_through_the_trainer(llava, tmp_path):
    """The Trainer's loss turns the LLM's KV cache off; with one, transformers would not mask the
    packed rows and each sample would attend to the one before it."""
    processor, items = hd_batch(llava)
    model = build_tiny_model(processor.config).train()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", dataloader_pin_memory=False)
    trainer = MultimodalTrainer(model=model, args=args)
    results = {}
    for padding_free in (False, True):
        batch = MultimodalCollator(processor.tokenizer.pad_token_id, padding_free)(items)
        model.zero_grad()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        results[padding_free] = (
            loss.detach(),
            [p.grad.clone() for p in model.parameters() if p.grad is not None],
        )
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results[False], results[True]
    assert packed_loss == pytest.approx(padded_loss.item(), rel=1e-5)
    assert len(packed_grads) == len(padded_grads)
    for padded, packed in zip(padded_grads, packed_grads, strict=True):
        torch.testing.assert_close(packed, padded, rtol=1e-4, atol=1e-6)
    leaking = model(**MultimodalCollator(processor.tokenizer.pad_token_id, True)(items), use_cache=True).loss
    assert leaking.item() != pytest.approx(padded_loss.item(), rel=1e-5)  # what the cache would cost
