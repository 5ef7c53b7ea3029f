"""The tiny tower's pretraining on synthetic scenes, and the tower the suite ships."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import CLIPVisionModel

from evaluation.sweep.spec import recipe_path
from evaluation.synthetic.questions import KINDS, draw_scene
from evaluation.synthetic.scene import render_scene
from evaluation.synthetic.tower import (
    NO_WORD,
    TAGS,
    TOWER_PATCH_SIZE,
    partial_state,
    pretrain_tower,
    scene_targets,
    tower_image,
)
from evaluation.synthetic.vocabulary import WORDS
from evaluation.synthetic.world import SHIPPED_TOWER, weights_digest
from tokenpacker.cli import main
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.model import build_model
from training.recipe import ModelRecipe, load_recipe


def scene_of(task: str, seed: int):
    kind = next(k for k in KINDS if k.task == task)
    return draw_scene(kind, np.random.default_rng(seed))[0]


def test_targets_name_the_word_or_none_and_each_shape_s_colour_kind_and_size():
    word_scene, shape_scene = scene_of("syn_textvqa", 0), scene_of("syn_gqa", 0)
    word, tags = scene_targets(word_scene)
    assert word == WORDS.index(word_scene.texts[0].content) and not tags.any()
    word, tags = scene_targets(shape_scene)
    (shape,) = shape_scene.shapes
    assert word == NO_WORD
    assert {TAGS[i] for i in np.flatnonzero(tags)} == {shape.color, shape.kind, shape.size}


def test_the_tower_sees_a_scene_as_the_tiny_processor_shows_it():
    scene = scene_of("syn_textvqa", 1)
    image = tower_image(scene)
    processor = TokenPackerProcessor(
        build_tiny_tokenizer(), tiny_image_processor(), tiny_config(patch_size=4)
    )
    expected = processor.preprocess_image(render_scene(scene)).crops[0]
    mean, std = (
        torch.tensor(v).view(3, 1, 1)
        for v in (processor.image_processor.image_mean, processor.image_processor.image_std)
    )
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert torch.allclose(
        (torch.from_numpy(image.copy()).permute(2, 0, 1) / 255 - mean) / std, expected, atol=1e-5
    )


def test_pretraining_writes_a_tower_a_tiny_model_loads_and_replaces_only_its_own(tmp_path):
    out = tmp_path / "tower"
    result = pretrain_tower(out, steps=3, batch_size=4, samples=20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tower"]  # no staging folder left behind
    assert json.loads((out / "pretraining.json").read_text()) == result
    assert set(result["held_out"]) == {"word_accuracy", "tag_accuracy"}
    assert result["weights_sha256"] == weights_digest(out)
    model, _ = build_model(ModelRecipe(tiny_patch_size=4, vision_tower=str(out)))
    assert model.vision_tower.clip.config.patch_size == 4
    # its own folder is replaced; 20 steps once made a one-step warm-up, which OneCycleLR divides by
    replaced = pretrain_tower(out, steps=20, batch_size=4, samples=8)
    assert replaced["settings"]["steps"] == 20
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is not a tower written by tokenpacker synth-tower"):
        pretrain_tower(tmp_path / "data", steps=3, batch_size=4, samples=8)
    assert (tmp_path / "data" / "keep.txt").read_text() == "mine"


def test_a_stopped_pretraining_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys):
    settings = {"steps": 6, "batch_size": 4, "samples": 12, "checkpoint_every": 4}
    straight = pretrain_tower(tmp_path / "straight", **settings)
    assert not partial_state(tmp_path / "straight").exists()  # removed once the tower is written

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr("evaluation.synthetic.tower.write_tower", stop)
    with pytest.raises(KeyboardInterrupt):
        pretrain_tower(tmp_path / "stopped", **settings)
    assert partial_state(tmp_path / "stopped").is_file() and not (tmp_path / "stopped").exists()
    monkeypatch.undo()
    resumed = pretrain_tower(tmp_path / "stopped", **settings)
    assert "resuming after step 4 of 6" in capsys.readouterr().out
    assert resumed["weights_sha256"] == straight["weights_sha256"]
    # a saved state of other settings is not resumed from
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr("evaluation.synthetic.tower.write_tower", stop)
        pretrain_tower(tmp_path / "other", **settings)
    monkeypatch.undo()
    pretrain_tower(tmp_path / "other", **(settings | {"learning_rate": 5e-4}))
    assert "holds a run with other settings, device or code; starting afresh" in capsys.readouterr().out


def test_the_tower_is_pretrained_at_the_tiny_recipe_s_patch_size():
    assert load_recipe(recipe_path("tiny")).model.tiny_patch_size == TOWER_PATCH_SIZE


def test_the_shipped_tower_fits_the_tiny_recipe_and_reads_held_out_words():
    result = json.loads((SHIPPED_TOWER / "pretraining.json").read_text())
    assert weights_digest(SHIPPED_TOWER) == result["weights_sha256"]  # the weights the figures are of
    assert result["held_out"]["word_accuracy"] >= 0.95 and result["held_out"]["tag_accuracy"] >= 0.95
    model, _ = build_model(
        ModelRecipe(tiny_patch_size=result["settings"]["patch_size"], vision_tower=str(SHIPPED_TOWER))
    )
    shipped = CLIPVisionModel.from_pretrained(SHIPPED_TOWER).state_dict()
    hd, _ = build_model(ModelRecipe(patch_num=9, tiny_patch_size=4, vision_tower=str(SHIPPED_TOWER)))
    assert torch.equal(
        hd.vision_tower.clip.state_dict()["post_layernorm.weight"], shipped["post_layernorm.weight"]
    )
    assert all(
        torch.equal(value, shipped[name]) for name, value in model.vision_tower.clip.state_dict().items()
    )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--steps=2", "--steps must be at least 3"),
        ("--learning-rate=nan", "--learning-rate"),
        ("--out=.", "--out . exists and is not a tower written by tokenpacker synth-tower"),
    ],
)
def test_bad_settings_are_refused_in_one_line_before_any_work(tmp_path, capsys, option, message):
    assert main(["synth-tower", "--out", str(tmp_path / "t"), option]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1
    assert not (tmp_path / "t").exists()
