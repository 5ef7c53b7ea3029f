"""The LLaVA-style model on tiny configs: splicing, batching, generation, save/load, attention choice."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tokenpacker.conversation import get_template
from tokenpacker.hd import visual_token_count
from tokenpacker.modeling import IGNORE_INDEX, TokenPackerForCausalLM, default_attn_implementation
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import (
    build_tiny_model,
    build_tiny_tokenizer,
    save_tiny_checkpoint,
    tiny_config,
    tiny_image_processor,
)


def gradient_image(width: int, height: int, seed: int) -> Image.Image:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def processor_for(model: TokenPackerForCausalLM) -> TokenPackerProcessor:
    return TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), model.config)


@pytest.fixture(scope="module")
def plain_model() -> TokenPackerForCausalLM:
    return build_tiny_model(tiny_config("tokenpacker", 2), seed=0).eval()


@pytest.fixture(scope="module")
def hd_model() -> TokenPackerForCausalLM:
    return build_tiny_model(tiny_config("tokenpacker", 4, patch_num=9), seed=1).eval()


def test_placeholders_match_visual_tokens(plain_model, hd_model):
    plain = processor_for(plain_model)
    ids = plain.tokenize("<image>\nWhat colour?", [plain.preprocess_image(gradient_image(60, 30, 0))])
    assert ids.count(plain_model.config.image_token_id) == 144

    hd = processor_for(hd_model)
    image = hd.preprocess_image(gradient_image(150, 70, 1))
    placeholders = image.token_ids.count(hd_model.config.image_token_id)
    separators = len(image.token_ids) - placeholders
    # visual_token_count counts the "," and "\n" separators as tokens too.
    assert (
        len(image.token_ids) == visual_token_count(70, 150, 9, 4, cell_size=48) == placeholders + separators
    )
    assert placeholders == image.crops.shape[0] * 36


def test_processor_counts_tokens_per_crop_once(hd_model, monkeypatch):
    """The count builds a projector (2.4 ms): asked per image, it cost a TokenPacker cell about 30 s of training."""
    processor = processor_for(hd_model)
    calls = []
    count = type(hd_model.config).tokens_per_crop
    monkeypatch.setattr(
        type(hd_model.config), "tokens_per_crop", lambda config: calls.append(1) or count(config)
    )
    images = [processor.preprocess_image(gradient_image(150, 70 + i, i)) for i in range(3)]
    assert len(calls) == 1
    assert all(
        image.token_ids.count(hd_model.config.image_token_id) == image.crops.shape[0] * 36 for image in images
    )


def test_padded_batch_equals_single_samples(hd_model):
    """Left padding, masks and image order: each sample's last logits equal its unbatched run."""
    processor = processor_for(hd_model)
    texts = ["<image>\nWhat is it?", "no image here, just text", "<image> and <image> compared"]
    images = [[gradient_image(150, 70, 2)], [], [gradient_image(48, 48, 3), gradient_image(90, 200, 4)]]
    batch = processor(texts, images)
    with torch.no_grad():
        batched = hd_model(**batch).logits[:, -1]
        for row, (text, sample_images) in enumerate(zip(texts, images, strict=True)):
            alone = hd_model(**processor([text], [sample_images])).logits[:, -1]
            torch.testing.assert_close(batched[row : row + 1], alone, atol=2e-4, rtol=1e-4)


def test_labels_ignore_image_positions(plain_model):
    processor = processor_for(plain_model)
    batch = processor(["<image>\nA caption"], [[gradient_image(48, 48, 5)]])
    labels = batch["input_ids"].clone()  # image placeholders (-200) left in on purpose
    out = plain_model(**batch, labels=labels)
    text_only = labels.masked_fill(labels == plain_model.config.image_token_id, IGNORE_INDEX)
    expected = plain_model(**batch, labels=text_only).loss
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, expected)


def test_gradients_reach_projector_and_llm_not_tower(plain_model):
    model = build_tiny_model(tiny_config("tokenpacker", 3), seed=2).train()
    processor = processor_for(model)
    batch = processor(["<image>\nred circle"], [[gradient_image(64, 48, 6)]])
    model(**batch, labels=batch["input_ids"]).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    assert model.language_model.get_input_embeddings().weight.grad is not None
    assert all(not p.requires_grad and p.grad is None for p in model.vision_tower.parameters())


def greedy_without_cache(model: TokenPackerForCausalLM, batch: dict, steps: int) -> list[int]:
    """Reference decoding: re-run the whole sequence every step, no KV cache."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    generated = []
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, pixel_values=batch["pixel_values"]).logits
        token = logits[:, -1].argmax(-1, keepdim=True)
        generated.append(int(token))
        ids, mask = torch.cat([ids, token], 1), torch.cat([mask, torch.ones_like(token)], 1)
    return generated


@pytest.mark.parametrize("which", ["plain_model", "hd_model"])
def test_generate_with_cache_matches_reference(which, request):
    model = request.getfixturevalue(which)
    processor = processor_for(model)
    prompt = get_template("vicuna_v1").prompt("<image>\nWhat is in the image?")
    batch = processor([prompt], [[gradient_image(120, 80, 7)]])
    out = model.generate(**batch, max_new_tokens=6, min_new_tokens=6, do_sample=False, use_cache=True)
    assert out[0, batch["input_ids"].shape[1] :].tolist() == greedy_without_cache(model, batch, 6)


@pytest.mark.parametrize(
    "projector,patch_num", [("tokenpacker", None), ("c_abstractor", None), ("tokenpacker", 16)]
)
def test_save_load_round_trip_gives_identical_logits(tmp_path, projector, patch_num):
    config = tiny_config(projector, 3, patch_num=patch_num)
    model = build_tiny_model(config, seed=3).eval()
    folder = save_tiny_checkpoint(tmp_path / "ckpt", config, seed=3)
    assert (folder / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(folder).eval()
    assert (
        type(loaded) is TokenPackerForCausalLM and AutoConfig.from_pretrained(folder).patch_num == patch_num
    )
    processor = TokenPackerProcessor.from_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == processor.tokenizer.get_vocab()
    batch = processor(["<image>\nhello"], [[gradient_image(100, 60, 8)]])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_wrong_number_of_placeholders_is_an_error(plain_model):
    processor = processor_for(plain_model)
    batch = processor(["<image>\nx"], [[gradient_image(48, 48, 9)]])
    with pytest.raises(ValueError, match="placeholders"):
        plain_model(input_ids=batch["input_ids"][:, 5:], pixel_values=batch["pixel_values"])
    with pytest.raises(ValueError, match="no pixel_values"):
        plain_model(input_ids=batch["input_ids"])
    with pytest.raises(ValueError, match="placeholders but 2 images"):
        processor(["<image>\nx"], [[gradient_image(48, 48, 9)] * 2])


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"projector_type": "qformer"}, "unknown projector 'qformer'"),
        ({"scale_factor": 5}, "scale_factor=5 does not divide the 24x24"),
        ({"patch_num": 7}, "patch_num"),
        ({"conversation_template": "chatml"}, "unknown conversation template"),
    ],
)
def test_bad_config_values_are_rejected(overrides, message):
    kwargs = {"projector_type": "tokenpacker", "scale_factor": 2, "patch_num": None} | overrides
    extra = (
        {"conversation_template": kwargs.pop("conversation_template")}
        if "conversation_template" in kwargs
        else {}
    )
    with pytest.raises(ValueError, match=message):
        tiny_config(kwargs["projector_type"], kwargs["scale_factor"], kwargs["patch_num"], **extra)


def test_attention_implementation_choice():
    assert default_attn_implementation("cpu") == "sdpa"
