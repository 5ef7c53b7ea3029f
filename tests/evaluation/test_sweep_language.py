"""The shipped tiny LLM: which sweeps start from it, what it holds, and `tokenpacker synth-llm`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from evaluation.sweep.language import ShippedModelError, shipped_key, write_language_model
from evaluation.sweep.spec import load_spec
from evaluation.sweep.stages import (
    WorldPaths,
    build_world,
    language_key,
    language_root,
    ready_language_model,
    shared_language_recipe,
)
from evaluation.synthetic.world import SHIPPED_LANGUAGE_MODEL
from tokenpacker.checkpoints import read_state_dict
from tokenpacker.cli import main
from tokenpacker.tiny import build_tiny_model, tiny_config
from training.model import load_language_model


def text_world(folder: Path, words: str = "a red circle") -> WorldPaths:
    """A world with only the corpora the stage-0 key reads."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("language.json", "language_anneal.json"):
        (folder / name).write_text(json.dumps([{"id": "0", "conversations": [words]}]), encoding="utf-8")
    return WorldPaths(
        folder,
        folder / "stage1.json",
        folder / "stage2.json",
        folder / "language.json",
        folder / "language_anneal.json",
        folder / "images",
        folder / "eval",
    )


def tiny_recipe(folder: Path, world: WorldPaths):
    spec = folder / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"name": "t", "recipe": "tiny", "tasks": ["syn_all"], "axes": {"projector": "mlp2x_gelu"}}
        ),
        encoding="utf-8",
    )
    [cell] = load_spec(spec).cells
    return shared_language_recipe(cell, world)


@pytest.fixture
def suite_checkpoint(tmp_path) -> Path:
    model = build_tiny_model(tiny_config("mlp2x_gelu", 1), seed=1)
    model.save_pretrained(tmp_path / "final")
    return tmp_path / "final"


def test_only_the_llm_weights_are_shipped_and_they_load_as_they_were(suite_checkpoint, tmp_path):
    record = write_language_model(suite_checkpoint, "stage0-abc/anneal-def", tmp_path / "llm", {"spec": "t"})
    shipped = read_state_dict(tmp_path / "llm")
    assert shipped and all(name.startswith("language_model.") for name in shipped)
    assert shipped_key(tmp_path / "llm") == record["key"] == "stage0-abc/anneal-def"

    model = build_tiny_model(tiny_config("mlp2x_gelu", 1), seed=0)
    load_language_model(model, tmp_path / "llm")
    original = read_state_dict(suite_checkpoint)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[name], original[name]) for name in shipped)


def test_weights_that_are_not_the_recorded_ones_are_refused(suite_checkpoint, tmp_path):
    write_language_model(suite_checkpoint, "stage0-abc", tmp_path / "llm", {})
    weights = tmp_path / "llm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ShippedModelError, match="not the file .*pretraining.json records.*synth-llm"):
        shipped_key(tmp_path / "llm")
    assert shipped_key(tmp_path / "nothing") is None


def test_a_sweep_starts_from_its_own_llm_else_the_shipped_one_of_its_key(suite_checkpoint, tmp_path):
    world = text_world(tmp_path / "world")
    recipe = tiny_recipe(tmp_path, world)
    key = language_key(recipe, world)
    assert key.startswith("stage0-") and "/anneal-" in key

    shipped = tmp_path / "shipped"
    write_language_model(suite_checkpoint, key, shipped, {})
    assert ready_language_model(recipe, world, shipped) == shipped

    other = text_world(tmp_path / "other", words="a blue square")  # another corpus: another key
    assert ready_language_model(tiny_recipe(tmp_path, other), other, shipped) is None

    own = language_root(world) / key / "final"  # trained by this sweep before: kept
    own.mkdir(parents=True)
    assert ready_language_model(recipe, world, shipped) == own
    shutil.rmtree(own)
    assert ready_language_model(recipe, world, tmp_path / "nothing") is None


@pytest.mark.slow
def test_the_default_sweep_starts_from_the_shipped_llm(tmp_path):
    """Fails when the default world, its corpora or the tiny recipe's text phases change and the shipped
    LLM is not trained again (`tokenpacker synth-llm`): every default sweep would train its own."""
    spec = load_spec("tiny")
    world = build_world(tmp_path, spec.world)
    recipes = [shared_language_recipe(cell, world) for cell in spec.cells]
    assert recipes and all(ready_language_model(r, world) == SHIPPED_LANGUAGE_MODEL for r in recipes)
    assert json.loads((SHIPPED_LANGUAGE_MODEL / "pretraining.json").read_text())["world"] == {
        "preset": spec.world.preset,
        "seed": spec.world.seed,
    }


def test_synth_llm_needs_a_spec_with_a_world(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "recipe": "tiny",
                "tasks": ["syn_all"],
                "world": None,
                "axes": {"projector": "mlp2x_gelu"},
            }
        ),
        encoding="utf-8",
    )
    assert main(["synth-llm", "--spec", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "has no synthetic world" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
