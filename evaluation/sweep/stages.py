"""The work a sweep cell does, behind one small interface: world, training, evaluation, efficiency, report.

`REAL_STAGES` calls the suite's own APIs, imported only when a stage runs (so `--dry-run` and the
spec checks stay light). Tests pass a `Stages` of fakes to the runner instead.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.sweep.spec import CellConfig, ReportOptions, WorldSpec, recipe_path
from evaluation.synthetic.world import SHIPPED_LANGUAGE_MODEL, SHIPPED_TOWER


@dataclass(frozen=True)
class WorldPaths:
    """Where the synthetic world's parts are (the fields of `evaluation.synthetic.World`)."""

    root: Path
    stage1_json: Path
    stage2_json: Path
    language_json: Path
    language_anneal_json: Path
    image_folder: Path
    eval_root: Path

    def to_dict(self) -> dict[str, str]:
        """Paths relative to `root`, so a moved sweep folder keeps working."""
        return {
            name: str(Path(path).relative_to(self.root))
            for name, path in asdict(self).items()
            if name != "root"
        }

    @classmethod
    def from_dict(cls, root: Path, raw: Mapping[str, str]) -> WorldPaths:
        return cls(root=root, **{name: root / path for name, path in raw.items()})


def no_language_stage(cell: CellConfig, world: WorldPaths) -> tuple[str | None, float]:
    return None, 0.0


@dataclass(frozen=True)
class Stages:
    """One callable per stage. Each writes only under the folder it is given and returns what it made."""

    build_world: Callable[[Path, WorldSpec], WorldPaths]
    check_cell: Callable[[CellConfig], None]  # raise ValueError before any cell runs
    train: Callable[
        [CellConfig, WorldPaths | None, Path, int], Path
    ]  # (cell, world, folder, gpus) -> checkpoint
    evaluate: Callable[
        [Path, CellConfig, WorldPaths | None, Path], Path
    ]  # (checkpoint, ...) -> lmms-eval folder
    measure: Callable[[Path, CellConfig], Mapping[str, float]]  # checkpoint -> EFFICIENCY_METRICS values
    report: Callable[[Path, Path, ReportOptions], Path]  # (results folder, report folder) -> page
    # (cell, world) -> (key, seconds spent now): the cell's shared stage-0 LLM, trained unless there;
    # key None when the cell has no stage 0
    pretrain_language: Callable[[CellConfig, WorldPaths], tuple[str | None, float]] = no_language_stage


def build_world(root: Path, spec: WorldSpec) -> WorldPaths:
    from evaluation.synthetic import build_world as build_synthetic_world

    world = build_synthetic_world(root, preset=spec.preset, seed=spec.seed)
    return WorldPaths(
        root=Path(root),
        stage1_json=Path(world.stage1_json),
        stage2_json=Path(world.stage2_json),
        language_json=Path(world.language_json),
        language_anneal_json=Path(world.language_anneal_json),
        image_folder=Path(world.image_folder),
        eval_root=Path(world.eval_root),
    )


def training_overrides(cell: CellConfig, world: WorldPaths | None) -> dict[str, Any]:
    """Recipe overrides (training.recipe keys) that make the recipe train this cell: model, seeds, data."""
    overrides: dict[str, Any] = {
        "projector_type": cell.projector,
        "scale_factor": cell.scale_factor or 1,
        "patch_num": cell.patch_num,
        "init_seed": cell.seed,
        "seed": cell.seed,
        **{f"model.{name}": value for name, value in cell.model.items()},
    }
    if world is not None:
        for stage, data in (("stage1", world.stage1_json), ("stage2", world.stage2_json)):
            overrides |= {f"{stage}.data_path": str(data), f"{stage}.image_folder": str(world.image_folder)}
        # the world's corpora replace those of the text phases the recipe has; none is added
        corpora = {"stage0": world.language_json, "stage0_anneal": world.language_anneal_json}
        recipe = _cell_recipe(cell)
        overrides |= {
            f"{phase}.data_path": str(corpus)
            for phase, corpus in corpora.items()
            if getattr(recipe, phase).data_path is not None
        }
    overrides |= dict(cell.recipe_overrides)
    if world is not None and cell.vision_tower() == SHIPPED_TOWER and _is_tiny(cell, overrides):
        overrides["model.vision_tower"] = str(SHIPPED_TOWER)  # the tower pretrained on the world's scenes
    return overrides


def _is_tiny(cell: CellConfig, overrides: Mapping[str, Any]) -> bool:
    from training.recipe import load_recipe

    return load_recipe(recipe_path(str(cell.recipe)), overrides).model.source == "tiny"


def _cell_recipe(cell: CellConfig) -> Any:
    """The cell's recipe file as written, before any override."""
    from training.recipe import load_recipe

    return load_recipe(recipe_path(str(cell.recipe)))


def language_root(world: WorldPaths) -> Path:
    """Where a sweep's cells share their stage-0 LLMs: beside the world they were trained on."""
    return world.root / "language"


def shared_language_recipe(cell: CellConfig, world: WorldPaths) -> Any:
    """The cell's resolved recipe when it trains a stage-0 LLM that its sweep shares, else None."""
    from training.api import has_language_stage
    from training.recipe import load_recipe

    if not cell.trains:
        return None
    recipe = load_recipe(recipe_path(str(cell.recipe)), training_overrides(cell, world))
    return recipe if has_language_stage(recipe) else None


def language_key(recipe: Any, world: WorldPaths) -> str:
    """`stage0-<key>[/anneal-<key>]`: what the shared LLM of `recipe` depends on, settings and corpora."""
    from training.api import language_model_path

    root = language_root(world)
    return key_of(language_model_path(recipe, root), root)


def key_of(final: Path, root: Path) -> str:
    """The key of the shared LLM whose `final/` checkpoint is `final`: its folder under `root`."""
    return final.parent.relative_to(root).as_posix()


def ready_language_model(
    recipe: Any, world: WorldPaths, shipped: Path = SHIPPED_LANGUAGE_MODEL
) -> Path | None:
    """The shared LLM a cell of `recipe` can start from without training: the sweep's own, trained
    before, else the one the suite ships when it was trained for the same key and model; None otherwise."""
    from evaluation.sweep.language import shipped_model_for
    from training.api import language_model_path

    root = language_root(world)
    final = language_model_path(recipe, root)  # hashes the corpora: once
    return final if final.is_dir() else shipped_model_for(key_of(final, root), shipped)


def pretrain_language(cell: CellConfig, world: WorldPaths) -> tuple[str | None, float]:
    from training.api import train_language_model

    recipe = shared_language_recipe(cell, world)
    if recipe is None:
        return None, 0.0
    key = language_key(recipe, world)
    if ready_language_model(recipe, world) is not None:
        return key, 0.0
    start = time.perf_counter()
    train_language_model(recipe, language_root(world))
    return key, time.perf_counter() - start


def check_cell(cell: CellConfig) -> None:
    """Check what the other stages will be handed against the code that takes it: the recipe with the
    cell's overrides, and the efficiency options against the probe's keywords."""
    if cell.trains:
        from training.model import check_vision_tower
        from training.recipe import load_recipe

        recipe = load_recipe(recipe_path(str(cell.recipe)), training_overrides(cell, None))
        check_vision_tower(recipe.model)
    if cell.efficiency:
        from evaluation.efficiency import check_options as check_efficiency_options
        from evaluation.efficiency import measure as measure_efficiency

        _check_keywords(measure_efficiency, cell.efficiency, "efficiency")
        check_efficiency_options(cell.efficiency)


def _check_keywords(function: Callable[..., Any], options: Mapping[str, Any], section: str) -> None:
    parameters = inspect.signature(function).parameters
    allowed = [name for name, p in parameters.items() if p.kind == p.KEYWORD_ONLY or p.default is not p.empty]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"{section} options {unknown} are not taken by {function.__qualname__}; allowed: {allowed}"
        )


def train(cell: CellConfig, world: WorldPaths | None, folder: Path, gpus: int) -> Path:
    """Both stages from the cell's recipe into `folder`; returns the final checkpoint.

    With more than one GPU the stages run under `accelerate launch` (one process per GPU, DeepSpeed
    as the recipe says); the call after it finds both stages finished and returns the checkpoint.
    """
    from training.api import train_two_stages

    recipe, overrides = recipe_path(str(cell.recipe)), training_overrides(cell, world)
    if world is not None and (shared := shared_language_recipe(cell, world)) is not None:
        from training.api import train_language_model

        # the sweep's shared stage-0 LLM: shipped, or trained by the runner before the cells (so found here)
        ready = ready_language_model(shared, world)
        overrides["model.language_model"] = str(ready or train_language_model(shared, language_root(world)))
    if gpus > 1:
        arguments = [f"--{key}={'null' if value is None else value}" for key, value in overrides.items()]
        command = [
            sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(gpus),
            "--module", "tokenpacker.cli", "train", "--config", str(recipe), f"--output_dir={folder}", *arguments,
        ]  # fmt: skip
        subprocess.run(command, check=True)
    return Path(train_two_stages(recipe, overrides, folder))


def evaluate(checkpoint: Path, cell: CellConfig, world: WorldPaths | None, folder: Path) -> Path:
    from evaluation.evaluate import evaluate as evaluate_checkpoint

    options = cell.evaluation
    data_root = world.eval_root if world is not None else options.data_root
    return Path(
        evaluate_checkpoint(
            checkpoint,
            list(cell.tasks),
            folder,
            limit=options.limit,
            batch_size=options.batch_size,
            device=options.device,
            dtype=options.dtype,
            data_root=data_root,
            log_samples=True,
        )
    )


def measure(checkpoint: Path, cell: CellConfig) -> Mapping[str, float]:
    from evaluation.efficiency import measure as measure_efficiency

    return measure_efficiency(checkpoint, **dict(cell.efficiency or {}))


def report(results_folder: Path, report_folder: Path, options: ReportOptions) -> Path:
    from reports.build import build_report
    from reports.reference import default_reference_csv

    reference = default_reference_csv() if options.reference else None
    return build_report([results_folder], report_folder, reference_csv=reference, baseline=options.baseline)


REAL_STAGES = Stages(
    build_world=build_world,
    check_cell=check_cell,
    train=train,
    evaluate=evaluate,
    measure=measure,
    report=report,
    pretrain_language=pretrain_language,
)
