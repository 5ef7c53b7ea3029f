"""The real stages' wiring: a cell becomes the training recipe's overrides, and is checked by the real loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evaluation.sweep import spec as spec_module
from evaluation.sweep.spec import load_spec
from evaluation.sweep.stages import WorldPaths, check_cell, recipe_path, training_overrides
from evaluation.synthetic.world import SHIPPED_TOWER
from training.recipe import load_recipe


def spec_cells(folder: Path, **fields):
    spec = {"name": "t", "recipe": "tiny", "tasks": ["syn_all"], **fields}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return load_spec(path).cells


def test_builtin_recipe_names_resolve_to_the_training_recipes():
    assert recipe_path("tiny").is_file() and recipe_path("tiny").parent.name == "recipes"
    assert recipe_path("/some/where/mine.yaml") == Path("/some/where/mine.yaml")


def test_a_cell_becomes_recipe_overrides_that_train_exactly_it(tmp_path):
    world = WorldPaths(
        tmp_path,
        tmp_path / "w/stage1.json",
        tmp_path / "w/stage2.json",
        tmp_path / "w/language.json",
        tmp_path / "w/language_anneal.json",
        tmp_path / "w/images",
        tmp_path / "w/eval",
    )
    groups = [
        {"projector": "mlp2x_gelu", "seed": 3},
        {"projector": "tokenpacker", "scale_factor": 4, "patch_num": 9, "recipe.stage2.learning_rate": 5e-4},
    ]
    mlp, hd = spec_cells(tmp_path, recipe_overrides={"stage1.max_steps": 7}, groups=groups)

    recipe = load_recipe(recipe_path("tiny"), training_overrides(mlp, world))
    assert (recipe.model.projector_type, recipe.model.patch_num, recipe.model.init_seed) == (
        "mlp2x_gelu",
        None,
        3,
    )
    assert (recipe.stage1.seed, recipe.stage2.seed, recipe.stage1.max_steps) == (3, 3, 7)
    assert recipe.stage1.data_path == str(world.stage1_json) and recipe.stage2.data_path == str(
        world.stage2_json
    )
    assert recipe.stage1.image_folder == recipe.stage2.image_folder == str(world.image_folder)
    assert recipe.stage0.data_path == str(world.language_json) and recipe.stage0.image_folder is None
    assert recipe.stage0_anneal.data_path == str(world.language_anneal_json)

    recipe = load_recipe(recipe_path("tiny"), training_overrides(hd, world))
    assert (recipe.model.projector_type, recipe.model.scale_factor, recipe.model.patch_num) == (
        "tokenpacker",
        4,
        9,
    )
    assert recipe.stage2.learning_rate == 5e-4 and recipe.stage1.max_steps == 7
    assert recipe.model.vision_tower == str(SHIPPED_TOWER)  # every cell sees through the world's tower


def test_a_tower_named_by_the_cell_or_its_recipe_is_kept_and_its_weights_are_in_the_cell_key(
    tmp_path, monkeypatch
):
    world = WorldPaths(
        tmp_path, *(tmp_path / name for name in ("s1.json", "s2.json", "l.json", "la.json", "images", "eval"))
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text(recipe_path("tiny").read_text().replace("  vision_tower: null\n", "  vision_tower: /r\n"))
    group = {"projector": "avgpool", "scale_factor": 2}
    (plain,) = spec_cells(tmp_path, world={"preset": "smoke"}, groups=[group])
    (own,) = spec_cells(tmp_path, groups=[group | {"model.vision_tower": "/t"}])
    (in_recipe,) = spec_cells(tmp_path, recipe=str(mine), groups=[group])
    assert training_overrides(own, world)["model.vision_tower"] == "/t"
    assert training_overrides(in_recipe, world).get("model.vision_tower", "/r") == "/r"
    assert load_recipe(mine, training_overrides(in_recipe, world)).model.vision_tower == "/r"
    assert "model.vision_tower" not in training_overrides(plain, None)  # no world, no world's tower

    digests = {SHIPPED_TOWER: "shipped", Path("/t"): "t", Path("/r"): "r"}
    monkeypatch.setattr(spec_module, "tower_digest", lambda folder: digests[folder])
    cells = (plain, own, in_recipe)
    before = [cell.train_fingerprint() for cell in cells]
    digests |= {SHIPPED_TOWER: "replaced", Path("/r"): "retrained"}
    changed = [cell.train_fingerprint() != key for cell, key in zip(cells, before, strict=True)]
    assert changed == [True, False, True]  # the cell with a tower of its own keeps its key


def test_a_cell_naming_a_tower_that_is_none_fails_the_real_checks(tmp_path):
    (cell,) = spec_cells(
        tmp_path, groups=[{"projector": "avgpool", "scale_factor": 2, "model.vision_tower": "/nowhere"}]
    )
    with pytest.raises(ValueError, match="model.vision_tower /nowhere is not a CLIP vision model folder"):
        check_cell(cell)


@pytest.mark.parametrize("corpus", ["language.json", "language_anneal.json"])
def test_a_recipe_without_a_text_phase_gets_none_from_the_sweep(tmp_path, corpus):
    world = WorldPaths(
        tmp_path, *(tmp_path / name for name in ("s1.json", "s2.json", "l.json", "la.json", "images", "eval"))
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text(
        recipe_path("tiny").read_text().replace(f"  data_path: {corpus}\n", "  data_path: null\n")
    )
    (cell,) = spec_cells(tmp_path, recipe=str(mine), groups=[{"projector": "tokenpacker", "scale_factor": 4}])
    recipe = load_recipe(mine, training_overrides(cell, world))
    phases = {"stage0": recipe.stage0.data_path, "stage0_anneal": recipe.stage0_anneal.data_path}
    dropped = "stage0" if corpus == "language.json" else "stage0_anneal"
    kept = next(phase for phase in phases if phase != dropped)
    assert phases[dropped] is None and phases[kept] is not None


def test_the_builtin_specs_pass_the_real_checks():
    for name in ("tiny", "smoke"):
        for cell in load_spec(name).cells:
            check_cell(cell)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {"groups": [{"projector": "mlp2x_gelu", "recipe.stage2.learning_rat": 1e-3}]},
            "unknown override 'stage2.learning_rat'",
        ),
        (
            {"groups": [{"projector": "mlp2x_gelu", "model.dtype": "float8"}]},
            "model.dtype='float8' is not supported",
        ),
        (
            {"groups": [{"projector": "mlp2x_gelu"}], "efficiency": {"repeats": 3}},
            r"efficiency options \['repeats'\]",
        ),
        (
            {"groups": [{"projector": "mlp2x_gelu"}], "efficiency": {"image_size": [0, 192]}},
            r"image_size=\[0, 192\] must be \(height, width\)",
        ),
        ({"groups": [{"projector": "mlp2x_gelu"}], "efficiency": {"runs": 0}}, "runs=0 must be >= 1"),
    ],
)
def test_the_real_checks_reject_what_a_stage_would_fail_on(tmp_path, fields, message):
    (cell,) = spec_cells(tmp_path, **fields)
    with pytest.raises(ValueError, match=message):
        check_cell(cell)
