"""Which parts train in which stage, building from local CLIP + LLM folders, LoRA targets."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, CLIPVisionModel

from tokenpacker.checkpoints import CheckpointError
from tokenpacker.tiny import build_tiny_model, build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.model import add_lora, build_model, set_trained_parts, trainable_parameter_names
from training.recipe import ModelRecipe


@pytest.fixture(scope="module")
def tiny_model():
    return build_tiny_model(tiny_config("tokenpacker", 4), seed=0)


@pytest.mark.parametrize(
    ("stage", "trained"), [(0, {"language_model"}), (1, {"projector"}), (2, {"projector", "language_model"})]
)
def test_stage_trains_only_its_parts(tiny_model, stage, trained):
    set_trained_parts(tiny_model, stage)
    for name, parameter in tiny_model.named_parameters():
        assert parameter.requires_grad == (name.split(".")[0] in trained), name


def test_lora_trains_adapters_and_projector_only(tiny_model):
    set_trained_parts(tiny_model, 2)
    model = add_lora(build_tiny_model(tiny_config("tokenpacker", 4), seed=0), rank=4, alpha=8, dropout=0.0)
    names = trainable_parameter_names(model)
    assert names and all("lora_" in n or ".projector.modules_to_save." in n for n in names)
    assert any(".projector.modules_to_save." in n for n in names)
    assert not any("vision_tower" in n or "lm_head" in n for n in names)


def test_pretrained_source_loads_both_folders_and_initialises_the_projector(tmp_path):
    source = build_tiny_model(tiny_config("tokenpacker", 4), seed=3)
    source.vision_tower.clip.save_pretrained(tmp_path / "clip")
    tiny_image_processor().save_pretrained(tmp_path / "clip")
    source.language_model.save_pretrained(tmp_path / "llm")
    build_tiny_tokenizer().save_pretrained(tmp_path / "llm")
    recipe = ModelRecipe(
        source="pretrained",
        scale_factor=4,
        vision_tower=str(tmp_path / "clip"),
        language_model=str(tmp_path / "llm"),
        multi_level_layers=[2, 3, 4, 5],
    )
    model, processor = build_model(recipe)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    state, expected = model.state_dict(), source.state_dict()
    for name, tensor in expected.items():
        if not name.startswith("projector."):
            assert torch.equal(state[name], tensor), name
    assert processor.tokenizer.pad_token_id is not None
    assert processor.image_processor.crop_size["height"] == 48
    assert isinstance(model.vision_tower.clip, CLIPVisionModel)
    assert isinstance(model.language_model, type(AutoModelForCausalLM.from_config(source.config.text_config)))


@pytest.mark.parametrize(("patch_size", "grid", "tokens"), [(2, 24, (576, 144, 36)), (4, 12, (144, 36, 9))])
def test_tiny_patch_size_sets_the_grid_and_every_token_count(patch_size, grid, tokens):
    counts = []
    for projector, scale in (("mlp2x_gelu", 2), ("tokenpacker", 2), ("tokenpacker", 4)):
        recipe = ModelRecipe(projector_type=projector, scale_factor=scale, tiny_patch_size=patch_size)
        model, _ = build_model(recipe)
        assert model.config.grid == grid
        with torch.no_grad():
            counts.append(model.get_image_features(torch.zeros(1, 3, 48, 48)).shape[1])
    assert tuple(counts) == tokens


def test_a_tiny_recipes_multi_level_layers_reach_its_model():
    model, _ = build_model(ModelRecipe(multi_level_layers=[1, 3], tiny_patch_size=4))
    assert model.config.multi_level_layers == [1, 3]
    assert model.vision_tower.multi_level_layers == (1, 3)
    assert model.projector.key_mlp[0].in_features == 2 * model.vision_tower.width


def test_a_tiny_model_sees_through_a_pretrained_tower_that_fits_it(tmp_path):
    source = build_tiny_model(tiny_config("mlp2x_gelu", 1, patch_size=4), seed=7).vision_tower.clip
    source.save_pretrained(tmp_path / "tower")
    recipe = ModelRecipe(projector_type="avgpool", tiny_patch_size=4, init_seed=0)
    random = build_model(recipe)[0].vision_tower.clip.state_dict()
    loaded = build_model(dataclasses.replace(recipe, vision_tower=str(tmp_path / "tower")))[0]
    weights = loaded.vision_tower.clip.state_dict()
    assert all(torch.equal(weights[name], value) for name, value in source.state_dict().items())
    assert not torch.equal(
        weights["embeddings.patch_embedding.weight"], random["embeddings.patch_embedding.weight"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("missing", "is not a CLIP vision model folder"),
        ("no weights", "is not a CLIP vision model folder"),
        ("patch_size", r"does not fit this tiny model \(patch_size 4 vs 2\)"),
        ("intermediate_size", r"does not fit this tiny model \(intermediate_size 96 vs 128\)"),
    ],
)
def test_a_tower_that_is_not_one_or_does_not_fit_is_refused_in_one_line(tmp_path, change, message):
    config = tiny_config("mlp2x_gelu", 1, patch_size=4 if change == "patch_size" else 2)
    if change == "intermediate_size":
        config.vision_config.intermediate_size = 96
    build_tiny_model(config).vision_tower.clip.save_pretrained(tmp_path / "tower")
    if change == "no weights":
        (tmp_path / "tower" / "model.safetensors").unlink()
    folder = tmp_path / ("nowhere" if change == "missing" else "tower")
    with pytest.raises(CheckpointError, match=message) as error:
        build_model(ModelRecipe(tiny_patch_size=2, vision_tower=str(folder)))
    assert "\n" not in str(error.value)
