"""Loading originally released LLaVA-TokenPacker files: mm_projector.bin and full checkpoint folders."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import CLIPVisionModel

from tokenpacker.checkpoints import CheckpointError, load_original_checkpoint, projector_from_original
from tokenpacker.tiny import build_tiny_model, tiny_config

# The suite's module names -> the original code's names (DESIGN 1.3), written out independently here.
SUITE_TO_ORIGINAL = {
    "point_query_proj.": "q_proj_1.",
    "key_mlp.": "k_proj_1.",
    "value_mlp.": "v_proj_1.",
    "query_norm.": "ln_q_1.",
    "key_norm.": "ln_k_1.",
    "value_norm.": "ln_v_1.",
    "region_attention.": "clip_attn.",
    "output_mlp.": "mlp.",
}
TINY_LAYERS = (2, 3, 4, 5)


def original_projector_name(name: str) -> str:
    for suite, original in SUITE_TO_ORIGINAL.items():
        if name.startswith(suite):
            return original + name.removeprefix(suite)
    raise AssertionError(f"no original name for {name}")


def original_full_name(name: str) -> str | None:
    """A released LLaVA checkpoint name for a suite parameter (None: not in the released files)."""
    if name.startswith("projector."):
        return "model.mm_projector." + original_projector_name(name.removeprefix("projector."))
    if name.startswith("language_model."):
        return name.removeprefix("language_model.")
    return None  # the frozen CLIP tower ships separately


def features(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, 576, 64, generator=generator), torch.randn(batch, 576, 256, generator=generator)


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny_model(tiny_config("tokenpacker", 3), seed=4).eval()


def released_projector_state(model) -> dict[str, torch.Tensor]:
    return {
        "model.mm_projector." + original_projector_name(k): v for k, v in model.projector.state_dict().items()
    }


def test_mm_projector_bin_file_loads(tmp_path, tiny_model):
    path = tmp_path / "mm_projector.bin"
    torch.save(released_projector_state(tiny_model), path)
    projector = projector_from_original(path, scale_factor=3)
    x, x_multi = features()
    with torch.no_grad():
        torch.testing.assert_close(projector(x, x_multi), tiny_model.projector(x, x_multi), atol=1e-6, rtol=0)


def test_bare_names_and_safetensors_load(tmp_path, tiny_model):
    bare = {
        k.removeprefix("model.mm_projector."): v.contiguous()
        for k, v in released_projector_state(tiny_model).items()
    }
    save_file(bare, tmp_path / "mm_projector.safetensors")
    projector = projector_from_original(tmp_path / "mm_projector.safetensors", scale_factor=3)
    assert projector.num_tokens(24) == 64


def test_missing_and_unexpected_projector_keys_are_named(tiny_model):
    state = released_projector_state(tiny_model)
    without = {k: v for k, v in state.items() if not k.endswith("ln_k_1.weight")}
    with pytest.raises(CheckpointError, match=r"missing keys: key_norm.weight"):
        projector_from_original(without, scale_factor=3)
    with pytest.raises(CheckpointError, match=r"unexpected keys .*model.mm_projector.extra.weight"):
        projector_from_original(state | {"model.mm_projector.extra.weight": torch.zeros(1)}, scale_factor=3)
    wrong_shape = state | {"model.mm_projector.ln_q_1.weight": torch.ones(7)}
    with pytest.raises(CheckpointError, match="shape mismatch"):
        projector_from_original(wrong_shape, scale_factor=3)


def write_released_folder(tmp_path, model) -> tuple:
    """A LLaVA-TokenPacker folder as the original code saves it, plus a separate local CLIP folder."""
    clip_folder = tmp_path / "clip"
    model.vision_tower.clip.save_pretrained(clip_folder)
    folder = tmp_path / "llava-tokenpacker"
    folder.mkdir()
    state = {original_full_name(k): v for k, v in model.state_dict().items() if original_full_name(k)}
    torch.save(state, folder / "pytorch_model.bin")
    text = model.config.text_config.to_dict()
    llava = {
        key: text[key]
        for key in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "vocab_size",
            "max_position_embeddings",
            "rms_norm_eps",
        )
    }
    llava |= {
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama",
        "mm_projector_type": "tokenpacker",
        "scale_factor": 3,
        "mm_vision_select_layer": -2,
        "mm_hidden_size": 64,
        "mm_vision_tower": str(clip_folder),
        "image_aspect_ratio": "pad",
        "mm_use_im_start_end": False,
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(llava))
    return folder, clip_folder


def test_full_released_folder_loads_into_the_suite_model(tmp_path, tiny_model):
    folder, _ = write_released_folder(tmp_path, tiny_model)
    loaded = load_original_checkpoint(folder, multi_level_layers=TINY_LAYERS).eval()
    assert loaded.config.scale_factor == 3 and loaded.config.projector_type == "tokenpacker"
    pixels = torch.randn(1, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    ids = torch.tensor([[1] + [-200] * 64 + [40, 41]])
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(input_ids=ids, pixel_values=pixels).logits,
            tiny_model(input_ids=ids, pixel_values=pixels).logits,
            atol=1e-5,
            rtol=1e-5,
        )


def test_released_folder_without_clip_is_a_clear_error(tmp_path, tiny_model):
    folder, clip_folder = write_released_folder(tmp_path, tiny_model)
    for path in clip_folder.iterdir():
        path.unlink()
    with pytest.raises(CheckpointError, match="vision_tower=PATH"):
        load_original_checkpoint(folder, multi_level_layers=TINY_LAYERS)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_original_checkpoint(tmp_path / "clip")


def test_clip_tower_weights_are_the_clip_folder(tmp_path, tiny_model):
    folder, clip_folder = write_released_folder(tmp_path, tiny_model)
    loaded = load_original_checkpoint(folder, vision_tower=clip_folder, multi_level_layers=TINY_LAYERS)
    reference = CLIPVisionModel.from_pretrained(clip_folder).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.vision_tower.clip.state_dict().items())
