"""Recipes: the shipped YAML files, overrides and their type conversion, and bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.recipe import (
    ModelRecipe,
    Recipe,
    RecipeError,
    StageRecipe,
    field_types,
    load_recipe,
    overridable_keys,
)

RECIPES = Path(__file__).parents[2] / "training" / "recipes"
PAPER_RECIPES = sorted(p for p in RECIPES.glob("*.yaml") if p.name != "tiny.yaml")


@pytest.mark.parametrize("path", PAPER_RECIPES, ids=lambda p: p.stem)
def test_paper_recipes_follow_design_section_2(path):
    recipe = load_recipe(path)
    assert recipe.model.source == "pretrained" and recipe.model.dtype == "bfloat16"
    one, two = recipe.stage1, recipe.stage2
    assert (one.conversation_template, two.conversation_template) == ("plain", "vicuna_v1")
    assert (one.learning_rate, two.learning_rate) == (1e-3, 2e-5)
    assert (one.per_device_train_batch_size * 8, two.per_device_train_batch_size * 8) == (
        256,
        128,
    )  # on 8 GPUs
    for stage in (one, two):
        assert (stage.num_train_epochs, stage.warmup_ratio, stage.weight_decay) == (1.0, 0.03, 0.0)
        assert (
            stage.lr_scheduler_type == "cosine" and stage.bf16 and stage.tf32 and stage.gradient_checkpointing
        )
        assert stage.deepspeed == "zero2"
    assert two.group_by_modality_length and not one.group_by_modality_length


def test_paper_recipes_cover_the_papers_runs():
    settings = {
        (
            r.model.language_model.split("-")[-2],
            r.model.projector_type,
            r.model.scale_factor,
            r.model.patch_num,
        )
        for r in map(load_recipe, PAPER_RECIPES)
    }
    for size in ("7b", "13b"):
        assert {(size, "tokenpacker", s, None) for s in (2, 3, 4)} <= settings
        assert {(size, "tokenpacker", 2, p) for p in (9, 16, 25)} <= settings
    assert ("7b", "mlp2x_gelu", 1, None) in settings


def test_tiny_recipe_is_a_cpu_run():
    recipe = load_recipe(RECIPES / "tiny.yaml", {"data_root": "/worlds/w"})
    assert recipe.model.source == "tiny" and recipe.stage1.deepspeed is None and not recipe.stage2.bf16
    assert recipe.data_location(recipe.stage2.data_path) == Path("/worlds/w/stage2.json")
    assert recipe.data_location("/elsewhere/x.json") == Path("/elsewhere/x.json")


def test_overrides_reach_model_one_stage_or_both():
    recipe = load_recipe(
        RECIPES / "tiny.yaml",
        {
            "scale_factor": "3",
            "stage2.learning_rate": "1e-4",
            "max_steps": "7",
            "output_dir": "runs/x",
            "patch_num": "9",
        },
    )
    assert recipe.model.scale_factor == 3 and recipe.model.patch_num == 9
    assert recipe.stage2.learning_rate == 1e-4 and recipe.stage1.learning_rate == 1e-3
    assert recipe.stage1.max_steps == recipe.stage2.max_steps == 7
    assert recipe.output_dir == "runs/x"


def test_values_are_converted_to_field_types():
    recipe = load_recipe(
        {"stage1": {"learning_rate": "1e-3", "bf16": "false"}},  # PyYAML reads 1e-3 as a string
        {
            "group_by_modality_length": "true",
            "patch_num": "null",
            "tf32": "null",
            "multi_level_layers": "[1,2]",
            "stage2.projector_learning_rate": "5e-4",
        },
    )
    assert recipe.stage2.projector_learning_rate == 5e-4 and recipe.stage1.projector_learning_rate is None
    assert recipe.stage1.learning_rate == 1e-3 and recipe.stage1.bf16 is False
    assert recipe.stage2.group_by_modality_length is True
    assert recipe.model.patch_num is None and recipe.stage1.tf32 is None
    assert recipe.model.multi_level_layers == [1, 2]


def test_missing_sections_take_the_paper_stage_defaults():
    recipe = load_recipe({"stage1": {"data_path": "a.json"}})
    assert recipe.stage1.conversation_template == "plain" and recipe.stage1.learning_rate == 1e-3
    assert recipe.stage2 == StageRecipe()


def test_bare_override_keys_are_unambiguous():
    top = set(field_types(Recipe)) - {"model", "stage1", "stage2"}
    model, stage = set(field_types(ModelRecipe)), set(field_types(StageRecipe))
    assert not (top & model) and not (top & stage) and not (model & stage)
    assert {"scale_factor", "stage1.learning_rate", "model.patch_num", "output_dir"} <= set(
        overridable_keys()
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"scale_factr": "3"}, "unknown override 'scale_factr'; allowed: a field of model"),
        ({"scale_factor": "three"}, "model.scale_factor='three' is not an integer"),
        ({"scale_factor": "2.5"}, "is not an integer"),
        ({"bf16": "maybe"}, "is not a boolean"),
        ({"scale_factor": "null"}, "may not be null"),
        ({"source": "hub"}, "model.source='hub' is not supported; allowed: tiny, pretrained"),
        (
            {"source": "pretrained"},
            "^model.source=.pretrained. needs model.vision_tower and model.language_model",
        ),
        ({"conversation_template": "llama3"}, "unknown conversation template 'llama3'"),
        ({"stage1.lora_r": "8"}, "LoRA applies to stage 2"),
        ({"projector_learning_rate": "1e-3"}, "stage0.projector_learning_rate is set, but only stage 2"),
        ({"stage1.projector_learning_rate": "1e-3"}, "set stage2.projector_learning_rate"),
        (
            {"stage2.projector_learning_rate": "-1e-3"},
            "projector_learning_rate=-0.001 is not a learning rate",
        ),
        ({"stage2.learning_rate": "nan"}, "learning_rate=nan is not a learning rate"),
        ({"stage1.max_steps": "-5"}, "^stage1: max_steps=-5 is not a step count; give a number >= 1, or -1"),
        ({"stage1.max_steps": "0"}, "max_steps=0 is not a step count"),
        ({"stage2.num_train_epochs": "0"}, "num_train_epochs=0.0 must be a finite number > 0"),
        ({"stage2.per_device_train_batch_size": "0"}, "per_device_train_batch_size=0 must be >= 1"),
        ({"stage0.save_steps": "0"}, "save_steps=0 must be >= 1"),
        ({"stage2.warmup_ratio": "1.5"}, r"warmup_ratio=1.5 must lie in \[0, 1\)"),
        (
            {"stage2.warmup_ratio": "1"},
            r"warmup_ratio=1.0 must lie in \[0, 1\): a share of the stage's steps",
        ),
        ({"multi_level_layers": "[a]"}, "not a list of integers"),
        (
            {"multi_level_layers": "[2, 3, 9]"},
            "^model: multi_level_layers index 9 is outside the 7 hidden states of a 6-layer vision tower",
        ),
        (
            {"tiny_patch_size": "5"},
            "model: tiny patch_size 5 does not divide the 48 px image",
        ),
        (
            {"scale_factor": "8", "tiny_patch_size": "4"},
            "model: scale_factor=8 does not divide the 12x12 patch grid",
        ),
        (
            {"source": "pretrained", "vision_tower": "/c", "language_model": "/l", "tiny_patch_size": "4"},
            "model.tiny_patch_size=4 applies to tiny models only",
        ),
    ],
)
def test_bad_overrides_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_recipe({}, overrides)


def test_bad_recipe_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="recipe file .*missing.yaml does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed")
    with pytest.raises(RecipeError, match="is not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "extra.yaml").write_text("model:\n  scale: 2\n")
    with pytest.raises(RecipeError, match=r"unknown key\(s\) scale in recipe section 'model'"):
        load_recipe(tmp_path / "extra.yaml")
    (tmp_path / "list.yaml").write_text("model: [1, 2]\n")
    with pytest.raises(RecipeError, match="recipe section 'model' must be a mapping"):
        load_recipe(tmp_path / "list.yaml")
    (tmp_path / "section.yaml").write_text("stage3: {}\n")
    with pytest.raises(RecipeError, match=r"unknown recipe section\(s\) stage3"):
        load_recipe(tmp_path / "section.yaml")
