"""The two-stage run as one call, for the CLI and the sweep runner.

Layout of `output_dir`: `recipe.yaml` (the resolved recipe), `stage1/` and `stage2/` (see
training.stages), and for a tiny model with a `stage0.data_path`, `stage0-<key>/`: its LLM
pretrained on text first (with a `stage0_anneal.data_path`, then annealed in
`stage0-<key>/anneal-<key>/`). Calling again with the same recipe continues where the last call
stopped: finished stages are skipped, an interrupted stage resumes from its last Trainer checkpoint.

Stage 0 depends only on the LLM's seed, stage 0's own settings and its data's content (not on the
projector, nor on where the data lies), so runs that share them can share one stage-0 folder: see
`train_language_model`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import yaml

from training.model import check_vision_tower
from training.projector_file import PROJECTOR_FILE
from training.recipe import ModelRecipe, Recipe, RecipeError, load_recipe
from training.stages import FINAL, check_stage_inputs, run_stage, stage_data_file

RECIPE_FILE = "recipe.yaml"
# Stage settings added for speed alone: left out of the stage-0 keys, so that a trained (or shipped)
# LLM stays valid, and free to change when a run resumes. (The older ones, such as
# dataloader_num_workers, stay in the keys: taking them out would change every key.)
SPEED_SETTINGS = frozenset({"cache_images"})


def train_two_stages(
    recipe: str | Path | Mapping,
    overrides: Mapping[str, object] | None = None,
    output_dir: Path | None = None,
) -> Path:
    """Stage 1 then stage 2; returns the final stage-2 checkpoint folder (loadable with
    AutoModelForCausalLM.from_pretrained and TokenPackerProcessor.from_pretrained).

    `output_dir` defaults to the recipe's. With `projector_file` set, stage 1 is skipped.
    """
    resolved = load_recipe(recipe, overrides)
    folder = output_dir or resolved.output_dir
    if folder is None:
        raise RecipeError("no output folder: set output_dir in the recipe or pass --output_dir PATH")
    folder = Path(folder)
    resolved = dataclasses.replace(resolved, output_dir=str(folder), model=absolute_tower(resolved.model))
    stages = (2,) if resolved.projector_file else (1, 2)
    for stage in (0, *stages) if has_language_stage(resolved) else stages:
        check_stage_inputs(resolved, stage)
    if has_language_stage(resolved) and resolved.stage0_anneal.data_path is not None:
        check_stage_inputs(resolved, 0, "stage0_anneal")
    check_vision_tower(resolved.model)
    claim_output_dir(resolved, folder)
    if has_language_stage(resolved):
        language_model = train_language_model(resolved, folder)
        resolved = dataclasses.replace(
            resolved, model=dataclasses.replace(resolved.model, language_model=str(language_model))
        )
    if resolved.projector_file:
        projector = Path(resolved.projector_file)
    else:
        projector = run_stage(resolved, 1, folder / "stage1") / PROJECTOR_FILE
    return run_stage(resolved, 2, folder / "stage2", projector_file=projector)


def absolute_tower(model: ModelRecipe) -> ModelRecipe:
    """A tiny model's tower path made absolute, so a resumed run from another folder finds the same one."""
    if model.source != "tiny" or model.vision_tower is None:
        return model
    return dataclasses.replace(model, vision_tower=str(Path(model.vision_tower).absolute()))


def has_language_stage(recipe: Recipe) -> bool:
    """Stage 0 runs for a tiny model with stage-0 data, unless its LLM is already given."""
    return (
        recipe.model.source == "tiny"
        and recipe.stage0.data_path is not None
        and recipe.model.language_model is None
    )


def section_key(recipe: Recipe, section: str, **depends_on: object) -> str:
    """A text phase's folder key: its settings and data (and what else it starts from). The data counts
    by content, not by path, so a sweep folder that is moved or copied keeps its stage-0 LLM."""
    phase = getattr(recipe, section)
    with stage_data_file(recipe, section).open("rb") as data:
        digest = hashlib.file_digest(data, "sha256").hexdigest()
    settings = {key: value for key, value in dataclasses.asdict(phase).items() if key not in SPEED_SETTINGS}
    settings |= {"data_path": digest, "image_folder": None}
    payload = json.dumps({**depends_on, section: settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def language_stage_key(recipe: Recipe) -> str:
    """What the stage-0 LLM depends on: the seed of the tiny weights and stage 0's settings and data."""
    return section_key(recipe, "stage0", init_seed=recipe.model.init_seed)


def language_folder(recipe: Recipe, root: Path) -> Path:
    return Path(root) / f"stage0-{language_stage_key(recipe)}"


def language_model_path(recipe: Recipe, root: Path) -> Path:
    """The `final/` checkpoint `train_language_model` returns: stage 0's, or its anneal's when there is one."""
    folder = language_folder(recipe, root)
    if recipe.stage0_anneal.data_path is not None:
        folder = folder / f"anneal-{section_key(recipe, 'stage0_anneal')}"
    return folder / FINAL


def train_language_model(recipe: Recipe, root: Path) -> Path:
    """Stage 0 into `root/stage0-<key>/` (then its anneal into `anneal-<key>/` inside it), or the ones
    already there; returns the LLM's `final/` checkpoint.

    Concurrent callers with the same key (cells of a sweep) wait on a lock, so one trains and the
    others reuse its result. The model is built with a fixed projector, so the LLM's initial
    weights do not depend on the projector a later stage uses. The anneal is keyed apart from
    stage 0, so changing only the anneal reuses the stage-0 LLM.
    """
    folder = language_folder(recipe, root)
    folder.mkdir(parents=True, exist_ok=True)
    text_only = dataclasses.replace(  # no tower either: the LLM alone, in words
        recipe,
        model=dataclasses.replace(
            recipe.model, projector_type="mlp2x_gelu", scale_factor=1, patch_num=None, vision_tower=None
        ),
    )
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pretrained = run_stage(text_only, 0, folder)
        if recipe.stage0_anneal.data_path is None:
            return pretrained
        annealing = dataclasses.replace(
            text_only,
            stage0=recipe.stage0_anneal,
            model=dataclasses.replace(text_only.model, language_model=str(pretrained)),
        )
        return run_stage(annealing, 0, language_model_path(recipe, root).parent)


def claim_output_dir(recipe: Recipe, folder: Path) -> None:
    """Record the recipe in `folder`, or check that a run already there used the same one, so a
    resumed run never mixes settings."""
    path = folder / RECIPE_FILE
    wanted = recipe.to_dict()
    if path.is_file():
        previous = flatten(yaml.safe_load(path.read_text()) or {})
        current = flatten(wanted)
        changed = sorted(
            key
            for key in previous.keys() | current.keys()
            if previous.get(key) != current.get(key) and key.rpartition(".")[2] not in SPEED_SETTINGS
        )
        if changed:
            raise RecipeError(
                f"{folder} already holds a run with a different recipe (changed: {', '.join(changed)}); "
                "resume with the same settings or choose a new output_dir"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=folder, suffix=".yaml")
    with os.fdopen(handle, "w") as stream:
        yaml.safe_dump(wanted, stream, sort_keys=False)
    os.replace(temporary, path)  # atomic: ranks of a distributed run may all get here


def flatten(nested: Mapping, prefix: str = "") -> dict[str, object]:
    """{"stage1": {"learning_rate": x}} -> {"stage1.learning_rate": x}."""
    flat: dict[str, object] = {}
    for key, value in nested.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
