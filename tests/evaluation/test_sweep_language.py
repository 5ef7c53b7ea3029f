"""The shipped tiny LLM: which sweeps start from it, what it holds, and `tokenpacker synth-llm`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import training.api
from evaluation.sweep import spec as spec_module
from evaluation.sweep.language import ShippedModelError, read_record, shipped_model_for, write_language_model
from evaluation.sweep.spec import load_spec
from evaluation.sweep.stages import (
    WorldPaths,
    build_world,
    language_key,
    language_root,
    pretrain_language,
    ready_language_model,
    shared_language_recipe,
    train,
)
from evaluation.synthetic.world import SHIPPED_LANGUAGE_MODEL
from tokenpacker.checkpoints import read_state_dict
from tokenpacker.cli import main
from tokenpacker.tiny import build_tiny_model, tiny_config
from training.model import load_language_model
from training.recipe import Recipe


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


def write_spec(folder: Path, **fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "name": "t",
        "recipe": "tiny",
        "tasks": ["syn_all"],
        "axes": {"projector": "mlp2x_gelu"},
        **fields,
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return folder / "spec.yaml"


def tiny_recipe(folder: Path, world: WorldPaths) -> Recipe:
    [cell] = load_spec(write_spec(folder)).cells
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
    assert read_record(tmp_path / "llm")["key"] == record["key"] == "stage0-abc/anneal-def"
    assert shipped_model_for("stage0-abc/anneal-def", tmp_path / "llm") == tmp_path / "llm"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final", "llm"]  # no staging folder left

    model = build_tiny_model(tiny_config("mlp2x_gelu", 1), seed=0)
    load_language_model(model, tmp_path / "llm")
    original = read_state_dict(suite_checkpoint)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[name], original[name]) for name in shipped)


def test_weights_that_are_not_the_recorded_ones_are_refused_where_they_would_be_used(
    suite_checkpoint, tmp_path
):
    write_language_model(suite_checkpoint, "stage0-abc", tmp_path / "llm", {})
    weights = tmp_path / "llm" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ShippedModelError, match="not the file .*pretraining.json records.*synth-llm"):
        shipped_model_for("stage0-abc", tmp_path / "llm")
    assert shipped_model_for("stage0-other", tmp_path / "llm") is None  # not used, so not read
    assert shipped_model_for("stage0-abc", tmp_path / "nothing") is None


@pytest.mark.parametrize(
    ("text", "problem"), [("{not json", "JSONDecodeError"), ('{"key": "stage0-abc"}', "KeyError: 'model'")]
)
def test_a_record_that_is_not_synth_llms_is_one_clear_error(suite_checkpoint, tmp_path, text, problem):
    write_language_model(suite_checkpoint, "stage0-abc", tmp_path / "llm", {})
    (tmp_path / "llm" / "pretraining.json").write_text(text)
    with pytest.raises(
        ShippedModelError, match=f"llm/pretraining.json is not a record .*{problem}.*synth-llm"
    ):
        shipped_model_for("stage0-abc", tmp_path / "llm")


def test_weights_of_another_tokenizer_shape_or_template_are_not_used(suite_checkpoint, tmp_path):
    write_language_model(suite_checkpoint, "stage0-abc", tmp_path / "llm", {})
    record = json.loads((tmp_path / "llm" / "pretraining.json").read_text())
    (tmp_path / "llm" / "pretraining.json").write_text(json.dumps(record | {"model": "0123456789ab"}))
    assert shipped_model_for("stage0-abc", tmp_path / "llm") is None


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


def test_a_replaced_shipped_llm_changes_the_keys_of_cells_on_a_synthetic_world(tmp_path, monkeypatch):
    on_world, without = (
        load_spec(write_spec(tmp_path / name, world=world)).cells[0]
        for name, world in (("a", {"preset": "smoke"}), ("b", None))
    )
    before = [cell.train_fingerprint() for cell in (on_world, without)]
    monkeypatch.setattr(spec_module, "recorded_weights", lambda: "retrained")
    after = [cell.train_fingerprint() for cell in (on_world, without)]
    assert [b != a for b, a in zip(before, after, strict=True)] == [True, False]


@pytest.mark.slow
def test_the_default_sweep_starts_from_the_shipped_llm(tmp_path, monkeypatch):
    """Fails when the default world, its corpora, the tiny recipe's text phases, the tokenizer, the LLM's
    shape or the templates change and the shipped LLM is not trained again (`tokenpacker synth-llm`):
    every default sweep would train its own."""
    spec = load_spec("tiny")
    world = build_world(tmp_path, spec.world)
    recipes = [shared_language_recipe(cell, world) for cell in spec.cells]
    assert recipes and all(ready_language_model(r, world) == SHIPPED_LANGUAGE_MODEL for r in recipes)
    assert json.loads((SHIPPED_LANGUAGE_MODEL / "pretraining.json").read_text())["world"] == {
        "preset": spec.world.preset,
        "seed": spec.world.seed,
    }

    def no_training(*args, **kwargs):
        raise AssertionError("the shipped LLM was there to start from")

    handed = {}
    monkeypatch.setattr(training.api, "train_language_model", no_training)
    monkeypatch.setattr(
        training.api, "train_two_stages", lambda recipe, overrides, folder: handed.update(overrides) or folder
    )
    assert pretrain_language(spec.cells[0], world) == (language_key(recipes[0], world), 0.0)
    train(spec.cells[0], world, tmp_path / "cell", gpus=0)
    assert handed["model.language_model"] == str(SHIPPED_LANGUAGE_MODEL)


def test_synth_llm_needs_a_spec_with_a_world(tmp_path, capsys):
    spec = write_spec(tmp_path, world=None)
    assert main(["synth-llm", "--spec", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert "has no synthetic world" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
