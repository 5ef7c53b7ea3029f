"""Both stages end to end on the tiny model: the hand-off, learning, determinism, resume, LoRA,
DeepSpeed ZeRO-2 on the CPU, and the API's skip-what-is-done behaviour."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, TrainerCallback

from tokenpacker.checkpoints import CheckpointError, read_state_dict
from tokenpacker.conversation import get_template
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_model, tiny_config
from training.api import absolute_tower, language_folder, train_language_model, train_two_stages
from training.model import build_model
from training.projector_file import PROJECTOR_FILE, ProjectorMismatchError, save_projector_file
from training.recipe import ModelRecipe, RecipeError, StageRecipe, load_recipe
from training.stages import check_stage_inputs, run_stage, training_arguments


class ProjectorAtStart(TrainerCallback):
    """Records the projector weights the Trainer starts from."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = {
            f"projector.{k}": v.detach().cpu().clone() for k, v in model.projector.state_dict().items()
        }


class KillAfterSave(TrainerCallback):
    """Simulates a job killed right after its checkpoint at `step` was written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"killed after checkpoint-{self.step}")


def losses(stage_dir: Path) -> list[float]:
    history = json.loads((stage_dir / "trainer_state.json").read_text())["log_history"]
    return [entry["loss"] for entry in history if "loss" in entry]


def total_flos(stage_dir: Path) -> float:
    return json.loads((stage_dir / "trainer_state.json").read_text())["total_flos"]


def base_weights() -> dict[str, torch.Tensor]:
    """The tiny model the test recipe starts from (s=4, seed 0)."""
    return build_tiny_model(tiny_config("tokenpacker", 4), seed=0).state_dict()


def test_stage1_trains_only_the_projector_and_stage2_starts_from_it(llava, tmp_path):
    recipe = load_recipe(llava.recipe(max_steps=2))
    stage1 = run_stage(recipe, 1, tmp_path / "stage1")
    base, trained = base_weights(), read_state_dict(stage1 / "model.safetensors")
    changed = {name for name, tensor in base.items() if not torch.equal(tensor, trained[name])}
    assert changed and all(name.startswith("projector.") for name in changed)
    handed_over = load_file(stage1 / PROJECTOR_FILE)
    assert set(handed_over) == {name for name in trained if name.startswith("projector.")}
    assert all(torch.equal(tensor, trained[name]) for name, tensor in handed_over.items())

    start = ProjectorAtStart()
    stage2 = run_stage(
        recipe, 2, tmp_path / "stage2", projector_file=stage1 / PROJECTOR_FILE, callbacks=[start]
    )
    assert start.weights.keys() == handed_over.keys()
    assert all(torch.equal(start.weights[name], tensor) for name, tensor in handed_over.items())

    final = read_state_dict(stage2 / "model.safetensors")
    vision = [name for name in base if name.startswith("vision_tower.")]
    assert all(torch.equal(final[name], base[name]) for name in vision)
    assert not torch.equal(final["language_model.lm_head.weight"], base["language_model.lm_head.weight"])


class GroupRates(TrainerCallback):
    """Records after each step each parameter's (lr, weight decay), by parameter name."""

    def __init__(self) -> None:
        self.steps: list[dict[str, tuple[float, float]]] = []

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        names = {id(p): name for name, p in model.named_parameters()}
        self.steps.append(
            {
                names[id(p)]: (group["lr"], group["weight_decay"])
                for group in optimizer.param_groups
                for p in group["params"]
            }
        )


def test_stage2_gives_the_projector_its_own_lr_through_the_schedule(llava, tmp_path):
    runs = {}
    for projector_lr in (None, 4e-3):
        settings = llava.recipe(max_steps=3, save_steps=100, weight_decay=0.1)
        settings["stage2"]["projector_learning_rate"] = projector_lr
        recipe = load_recipe(settings)
        runs[projector_lr] = GroupRates()
        run_stage(recipe, 2, tmp_path / str(projector_lr), callbacks=[runs[projector_lr]])
    plain, split = runs[None].steps, runs[4e-3].steps
    assert len(plain) == len(split) == 3
    assert plain[0].keys() == split[0].keys()  # the same parameters are trained
    for before, after in zip(plain, split, strict=True):
        for name, (lr, decay) in after.items():
            factor = 4.0 if name.startswith("projector.") else 1.0  # conftest's stage 2 lr is 1e-3
            assert lr == pytest.approx(before[name][0] * factor) and decay == before[name][1]
    assert {decay for _, decay in split[0].values()} == {0.0, 0.1}  # biases and norms stay undecayed
    assert split[0]["language_model.lm_head.weight"][0] != split[-1]["language_model.lm_head.weight"][0]
    logged = [
        e["learning_rate"]
        for e in json.loads((tmp_path / "0.004" / "trainer_state.json").read_text())["log_history"]
        if "learning_rate" in e
    ]
    # the Trainer logs the lr each step used, the callback sees the next one: the LLM's, not the projector's
    llm = [step["language_model.lm_head.weight"][0] for step in split]
    assert logged == pytest.approx([1e-3, *llm[:-1]])


def test_a_deepspeed_optimizer_beside_a_projector_lr_is_refused_before_training(llava, tmp_path):
    config = tmp_path / "ds.json"
    config.write_text(json.dumps({"optimizer": {"type": "AdamW", "params": {"lr": 1e-3}}}))
    settings = llava.recipe(deepspeed=str(config))
    settings["stage2"]["projector_learning_rate"] = 4e-3
    with pytest.raises(RecipeError, match="stage2.projector_learning_rate is set, but the DeepSpeed config"):
        check_stage_inputs(load_recipe(settings), 2)
    settings["stage2"]["projector_learning_rate"] = None
    check_stage_inputs(load_recipe(settings), 2)


def test_stage0_data_that_is_missing_is_named_before_its_key_is_taken(tmp_path):
    recipe = load_recipe({"stage0": {"data_path": str(tmp_path / "language.json")}})
    with pytest.raises(
        FileNotFoundError, match="stage0 data file .*language.json does not exist.*skip stage0"
    ):
        language_folder(recipe, tmp_path)


def test_loss_goes_down(llava, tmp_path):
    recipe = load_recipe(llava.recipe(max_steps=6, save_steps=100))
    run_stage(recipe, 2, tmp_path / "stage2")
    history = losses(tmp_path / "stage2")
    assert len(history) == 6
    assert sum(history[-2:]) / 2 < 0.9 * sum(history[:2]) / 2


def test_a_padding_free_stage_logs_the_padded_stage_losses(llava, tmp_path):
    """Packed batches (training/collator.py) train as padded ones, through the Trainer."""
    chats = [  # one long question to three short ones, as in the tiny world's text phases
        {
            "conversations": [
                {"from": "human", "value": "Is red a colour?" * (8 if i % 4 == 0 else 1)},
                {"from": "gpt", "value": "yes"},
            ]
        }
        for i in range(12)
    ]
    data = str(llava.write("chats.json", chats))
    padded, packed = (
        load_recipe(
            llava.recipe(max_steps=3, per_device_train_batch_size=4), {"stage2.data_path": data, **extra}
        )
        for extra in ({}, {"stage2.padding_free": True})
    )
    run_stage(padded, 2, tmp_path / "padded")
    run_stage(packed, 2, tmp_path / "packed")
    assert losses(tmp_path / "packed") == pytest.approx(losses(tmp_path / "padded"), rel=1e-4)
    # the Trainer counts FLOPs by token slots: fewer of them were computed
    assert total_flos(tmp_path / "packed") < total_flos(tmp_path / "padded")


def test_fixed_seed_gives_identical_losses_and_weights(llava, tmp_path):
    recipe = load_recipe(llava.recipe(max_steps=2))
    first, second = run_stage(recipe, 1, tmp_path / "a"), run_stage(recipe, 1, tmp_path / "b")
    assert losses(tmp_path / "a") == losses(tmp_path / "b")
    assert load_file(first / PROJECTOR_FILE).keys() == load_file(second / PROJECTOR_FILE).keys()
    for name, tensor in load_file(first / PROJECTOR_FILE).items():
        assert torch.equal(tensor, load_file(second / PROJECTOR_FILE)[name])


class TowerPasses(TrainerCallback):
    """Counts the crops the tower's first layer runs on, and the memo's size when training ends."""

    def __init__(self) -> None:
        self.crops = 0
        self.remembered: int | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.tower = model.vision_tower
        self.tower.clip.encoder.layers[0].register_forward_hook(self.count)

    def count(self, module, args, output) -> None:
        self.crops += len(args[0])

    def on_train_end(self, args, state, control, **kwargs):
        self.remembered = None if self.tower.memo is None else len(self.tower.memo)


def test_a_stage_that_caches_images_passes_each_through_the_tower_once_and_trains_the_same(llava, tmp_path):
    """Three epochs of stage 1's captions: the later two read crops and features from the cache."""
    images = len(json.loads(llava.stage1.read_text()))
    plain, cached = (
        load_recipe(llava.recipe(max_steps=images * 3 // 2, save_steps=100, cache_images=cache))  # batch 2
        for cache in (False, True)
    )
    passes = {"plain": TowerPasses(), "cached": TowerPasses()}
    run_stage(plain, 1, tmp_path / "plain", callbacks=[passes["plain"]])
    run_stage(cached, 1, tmp_path / "cached", callbacks=[passes["cached"]])
    assert (passes["plain"].crops, passes["plain"].remembered) == (3 * images, None)
    assert (passes["cached"].crops, passes["cached"].remembered) == (images, images)
    assert passes["cached"].tower.memo is None  # forgotten once the stage is over
    assert losses(tmp_path / "cached") == pytest.approx(losses(tmp_path / "plain"), rel=1e-5)


def test_caching_images_leaves_the_language_model_key_as_it_was(tmp_path):
    (tmp_path / "language.json").write_text("[]")
    stage0 = {"data_path": str(tmp_path / "language.json")}
    recipes = [load_recipe({"stage0": stage0 | {"cache_images": cache}}) for cache in (False, True)]
    keys = {str(language_folder(recipe, tmp_path)) for recipe in recipes}
    assert len(keys) == 1


def test_resumed_run_equals_uninterrupted_run(llava, tmp_path):
    recipe = load_recipe(llava.recipe(max_steps=3, save_steps=1, group_by_modality_length=True))
    whole = run_stage(recipe, 2, tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        run_stage(recipe, 2, tmp_path / "resumed", callbacks=[KillAfterSave(1)])
    assert not (tmp_path / "resumed" / "final").exists()
    resumed = run_stage(recipe, 2, tmp_path / "resumed")
    assert losses(tmp_path / "resumed") == losses(tmp_path / "whole")
    expected, actual = (
        read_state_dict(whole / "model.safetensors"),
        read_state_dict(resumed / "model.safetensors"),
    )
    assert all(torch.equal(actual[name], tensor) for name, tensor in expected.items())


def test_api_writes_a_loadable_checkpoint_and_skips_finished_stages(llava, tmp_path):
    recipe = llava.recipe(max_steps=1)
    final = train_two_stages(recipe, {}, tmp_path / "run")
    model = AutoModelForCausalLM.from_pretrained(final)
    processor = TokenPackerProcessor.from_pretrained(final)
    assert model.config.conversation_template == "vicuna_v1"
    stage1_config = json.loads((tmp_path / "run" / "stage1" / "final" / "config.json").read_text())
    assert stage1_config["conversation_template"] == "plain"
    prompt = get_template(model.config.conversation_template).prompt("<image>\nWhat colour is the shape?")
    batch = processor([prompt], [[Image.open(llava.image_folder / "red_square.png")]])
    output = model.generate(**batch, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert output.shape[1] == batch["input_ids"].shape[1] + 3

    written = (final / "model.safetensors").stat().st_mtime_ns
    assert train_two_stages(recipe, {}, tmp_path / "run") == final
    assert (final / "model.safetensors").stat().st_mtime_ns == written
    with pytest.raises(RecipeError, match=r"different recipe \(changed: model.scale_factor\)"):
        train_two_stages(recipe, {"scale_factor": "2"}, tmp_path / "run")
    # a speed setting may change on resume (say, the cache turned off after running out of memory)
    assert train_two_stages(recipe, {"stage1.cache_images": "true"}, tmp_path / "run") == final


def test_lora_stage2_writes_a_merged_plain_checkpoint(llava, tmp_path):
    recipe = llava.recipe(max_steps=1, gradient_checkpointing=True)
    recipe["stage2"].update(lora_r=4, lora_alpha=8)
    final = run_stage(load_recipe(recipe), 2, tmp_path / "stage2")
    weights = read_state_dict(final / "model.safetensors")
    assert not any("lora" in name or "modules_to_save" in name for name in weights)
    base = base_weights()
    assert weights.keys() == base.keys()
    changed = {name for name, tensor in base.items() if not torch.equal(tensor, weights[name])}
    assert any(name.startswith("projector.") for name in changed)
    assert any(name.startswith("language_model.model.layers.") for name in changed)  # adapters merged in
    assert not any(name.startswith("vision_tower.") or "embed_tokens" in name for name in changed)
    AutoModelForCausalLM.from_pretrained(final)


def test_mismatched_projector_file_stops_stage2(llava, tmp_path):
    other = build_tiny_model(tiny_config("tokenpacker", 2))  # the recipe's model uses scale_factor 4
    path = save_projector_file(other.state_dict(), other.config, tmp_path / PROJECTOR_FILE)
    with pytest.raises(ProjectorMismatchError, match=r"scale_factor 2 \(file\) vs 4 \(model\)"):
        train_two_stages(llava.recipe(max_steps=1), {"projector_file": str(path)}, tmp_path / "run")


DEEPSPEED_RUN = """
import sys
from pathlib import Path
from training.recipe import load_recipe
from training.stages import check_stage_inputs, run_stage
recipe = load_recipe(sys.argv[1], {"deepspeed": "zero2"})
run_stage(recipe, 1, Path(sys.argv[2]))
"""


@pytest.mark.slow
def test_deepspeed_zero2_step_on_cpu_matches_plain_trainer(llava, tmp_path):
    """A real ZeRO-2 engine (CPU accelerator, gloo, one process) beside the plain Trainer run.

    The first run on a machine compiles DeepSpeed's shared-memory op (~1.5 min, then cached)."""
    recipe_path = tmp_path / "recipe.json"  # JSON is YAML
    recipe_path.write_text(json.dumps(llava.recipe(max_steps=2)))
    environment = {
        **os.environ,
        "DS_ACCELERATOR": "cpu",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29533",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", DEEPSPEED_RUN, str(recipe_path), str(tmp_path / "deepspeed")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(
        (tmp_path / "deepspeed").glob("checkpoint-2/global_step2/*optim_states.pt")
    )  # a ZeRO checkpoint

    run_stage(load_recipe(recipe_path), 1, tmp_path / "plain")
    assert losses(tmp_path / "deepspeed") == pytest.approx(losses(tmp_path / "plain"), rel=1e-5)
    deepspeed = load_file(tmp_path / "deepspeed" / "final" / PROJECTOR_FILE)
    plain = load_file(tmp_path / "plain" / "final" / PROJECTOR_FILE)
    for name, tensor in plain.items():
        torch.testing.assert_close(deepspeed[name], tensor, rtol=1e-4, atol=1e-6)


def test_missing_stage2_data_fails_before_stage1_runs(llava, tmp_path):
    with pytest.raises(FileNotFoundError, match="stage2 data file .*nowhere.json does not exist"):
        train_two_stages(llava.recipe(max_steps=1), {"stage2.data_path": "nowhere.json"}, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(RecipeError, match="stage1.data_path is not set"):
        train_two_stages(llava.recipe(max_steps=1), {"stage1.data_path": "null"}, tmp_path / "run")


@pytest.mark.parametrize(
    ("tower", "message"), [("nowhere", "is not a CLIP vision model folder"), ("tower", "patch_size 4 vs 2")]
)
def test_a_vision_tower_that_is_none_or_does_not_fit_fails_before_any_stage(llava, tmp_path, tower, message):
    build_tiny_model(tiny_config(patch_size=4)).vision_tower.clip.save_pretrained(tmp_path / "tower")
    overrides = {"model.vision_tower": str(tmp_path / tower), "model.tiny_patch_size": 2}
    with pytest.raises(CheckpointError, match=message):
        train_two_stages(llava.recipe(max_steps=1), overrides, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_relative_tower_is_kept_as_an_absolute_path_so_a_resume_elsewhere_finds_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = absolute_tower(ModelRecipe(vision_tower="towers/t"))
    assert model.vision_tower == str(tmp_path / "towers" / "t")
    assert absolute_tower(ModelRecipe()).vision_tower is None


def test_lora_with_zero3_is_refused(llava, tmp_path):
    recipe = llava.recipe(max_steps=1)
    recipe["stage2"].update(lora_r=4, deepspeed="zero3")
    with pytest.raises(RecipeError, match="LoRA .* cannot be merged into a ZeRO-3"):
        train_two_stages(recipe, {}, tmp_path / "run")


@pytest.mark.parametrize(
    ("cache", "workers", "persistent"), [(True, 2, True), (True, 0, False), (False, 2, False)]
)
def test_loader_workers_that_cache_images_live_through_every_epoch(tmp_path, cache, workers, persistent):
    settings = StageRecipe(cache_images=cache, dataloader_num_workers=workers)
    assert training_arguments(settings, tmp_path).dataloader_persistent_workers is persistent


def test_cache_images_with_zero3_is_refused(llava, tmp_path):
    recipe = llava.recipe(max_steps=1)
    recipe["stage1"].update(cache_images=True, deepspeed="zero3")
    with pytest.raises(RecipeError, match="stage1: cache_images lets a rank skip the tower.*zero2"):
        train_two_stages(recipe, {}, tmp_path / "run")
    assert not (tmp_path / "run" / "stage1").exists()


def text_only(samples: list[dict]) -> list[dict]:
    """Stage-0 data: the conversations with the image tag replaced by words, as a synthetic world writes them."""
    return [
        {
            "id": sample["id"],
            "conversations": [
                {**turn, "value": turn["value"].replace("<image>", "A picture.")}
                for turn in sample["conversations"]
            ],
        }
        for sample in samples
    ]


def test_stage0_pretrains_the_llm_once_and_later_stages_start_from_it(llava, tmp_path):
    language = llava.write("language.json", text_only(llava.instructions()))
    recipe = llava.recipe(max_steps=1) | {
        "stage0": {
            "data_path": str(language),
            "max_steps": 3,
            "per_device_train_batch_size": 2,
            "save_steps": 2,
        }
    }
    first = train_two_stages(recipe, {}, tmp_path / "run")
    [stage0] = (tmp_path / "run").glob("stage0-*")
    pretrained = read_state_dict(stage0 / "final")
    untrained = build_tiny_model(tiny_config("mlp2x_gelu", 1), seed=0).state_dict()
    language_keys = [k for k in pretrained if k.startswith("language_model.")]
    assert language_keys and not all(torch.equal(pretrained[k], untrained[k]) for k in language_keys)
    assert all(
        torch.equal(pretrained[k], untrained[k]) for k in pretrained if not k.startswith("language_model.")
    )
    stage1 = read_state_dict(tmp_path / "run" / "stage1" / "final")  # stage 1 trains only the projector
    assert all(torch.equal(stage1[k], pretrained[k]) for k in language_keys)
    assert read_state_dict(first)  # a complete stage-2 checkpoint

    # another projector with the same LLM settings shares the stage-0 folder instead of training again
    written = (stage0 / "final" / "model.safetensors").stat().st_mtime_ns
    other = load_recipe(recipe, {"scale_factor": "2"})
    assert train_language_model(other, tmp_path / "run") == stage0 / "final"
    assert (stage0 / "final" / "model.safetensors").stat().st_mtime_ns == written


def test_the_anneal_continues_from_the_stage0_llm_and_is_keyed_apart_from_it(llava, tmp_path):
    language = llava.write("language.json", text_only(llava.instructions()))
    phase = {"data_path": str(language), "max_steps": 2, "per_device_train_batch_size": 2, "save_steps": 2}
    recipe = llava.recipe(max_steps=1) | {"stage0": phase, "stage0_anneal": phase | {"learning_rate": 1e-2}}
    train_two_stages(recipe, {}, tmp_path / "run")
    [stage0] = (tmp_path / "run").glob("stage0-*")
    [anneal] = stage0.glob("anneal-*")
    pretrained, annealed = read_state_dict(stage0 / "final"), read_state_dict(anneal / "final")
    language_keys = [k for k in annealed if k.startswith("language_model.")]
    assert not all(torch.equal(annealed[k], pretrained[k]) for k in language_keys)
    stage1 = read_state_dict(tmp_path / "run" / "stage1" / "final")  # later stages start from the anneal
    assert all(torch.equal(stage1[k], annealed[k]) for k in language_keys)

    # another anneal reuses the stage-0 LLM and trains beside the first one
    written = (stage0 / "final" / "model.safetensors").stat().st_mtime_ns
    other = load_recipe(recipe, {"stage0_anneal.learning_rate": "1e-3"})
    again = train_language_model(other, tmp_path / "run")
    assert again.parent.parent == stage0 and again.parent != anneal and again.is_dir()
    assert (stage0 / "final" / "model.safetensors").stat().st_mtime_ns == written


def test_stage0_is_keyed_by_its_data_content_not_its_path(llava, tmp_path):
    """A sweep folder copied or moved elsewhere finds its stage-0 LLM; other data gets another one."""
    corpus = text_only(llava.instructions())
    here, there = tmp_path / "here" / "language.json", tmp_path / "there" / "language.json"
    for path in (here, there):
        path.parent.mkdir()
        path.write_text(json.dumps(corpus))
    (tmp_path / "other.json").write_text(json.dumps(corpus[:-1]))

    def folder(data: Path) -> Path:
        return language_folder(load_recipe(llava.recipe() | {"stage0": {"data_path": str(data)}}), tmp_path)

    assert folder(here) == folder(there) != folder(tmp_path / "other.json")


def test_missing_anneal_data_fails_before_stage0_runs(llava, tmp_path):
    language = llava.write("language.json", text_only(llava.instructions()))
    recipe = llava.recipe(max_steps=1) | {
        "stage0": {"data_path": str(language)},
        "stage0_anneal": {"data_path": str(tmp_path / "nowhere.json")},
    }
    with pytest.raises(
        FileNotFoundError, match="stage0_anneal data file .*nowhere.json does not exist.*skip stage0_anneal"
    ):
        train_two_stages(recipe, {}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"projector.weight": torch.zeros(2)}, "holds no language_model"),
        ({"language_model.lm_head.weight": torch.zeros(3, 5)}, "does not fit this tiny model"),
    ],
)
def test_a_language_model_that_does_not_fit_is_refused(tmp_path, weights, message):
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=message):
        build_model(ModelRecipe(language_model=str(tmp_path)))
