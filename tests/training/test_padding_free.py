"""padding_free: a batch packed into rows trains exactly as the same batch padded."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from transformers import TrainingArguments

from tokenpacker.modeling import IGNORE_INDEX
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_model, build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.collator import ROW_SPAN, MultimodalCollator, pack_rows
from training.data import LlavaDataset
from training.recipe import StageRecipe
from training.stages import MultimodalTrainer, stage_collator

PAD = 3  # the tiny tokenizer's pad id


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
    """The Trainer turns the LLM's KV cache off (TrainingArguments.use_cache); with one, transformers would not mask the
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


def test_under_flash_attention_the_whole_batch_is_one_row(llava):
    """flash attention finds packed samples only in a single row (transformers' _is_packed_sequence)."""
    processor, items = hd_batch(llava)
    settings = StageRecipe(padding_free=True)
    flash = SimpleNamespace(
        language_model=SimpleNamespace(config=SimpleNamespace(_attn_implementation="flash_attention_2"))
    )
    sdpa = build_tiny_model(processor.config)
    assert stage_collator(sdpa, processor, settings) == MultimodalCollator(
        processor.tokenizer.pad_token_id, True
    )
    collator = stage_collator(flash, processor, settings)
    assert collator.one_row
    batch = collator(items)
    assert batch["input_ids"].shape == (1, sum(len(item["input_ids"]) for item in items))
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert starts == [sum(len(item["input_ids"]) for item in items[:k]) for k in range(len(items))]
    crops = [item["pixel_values"] for item in items if item["pixel_values"] is not None]
    assert torch.equal(batch["pixel_values"], torch.cat(crops))


def test_a_sample_never_learns_the_first_token_of_the_next(tmp_path):
    """Every label a target, the first included: packed, it would follow the previous sample's last
    token; it is ignored there as the padded batch's shift ignores it."""
    config = tiny_config("mlp2x_gelu", 1)
    model = build_tiny_model(config).train()
    generator = torch.Generator().manual_seed(0)
    items = []
    for length in (9, 4, 6):
        ids = torch.randint(10, 200, (length,), generator=generator)
        items.append({"input_ids": ids, "labels": ids.clone(), "pixel_values": None})
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", dataloader_pin_memory=False)
    trainer = MultimodalTrainer(model=model, args=args)
    padded, packed = (
        trainer.compute_loss(model, MultimodalCollator(PAD, padding_free)(items)).item()
        for padding_free in (False, True)
    )
    assert packed == pytest.approx(padded, rel=1e-5)
