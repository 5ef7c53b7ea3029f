"""The sweep spec: a YAML file naming axes, tasks and options, expanded into validated cells.

A spec's `groups` are Cartesian products of axis values; `axes` are shared by every group (a group's
own value wins). Every cell is checked before any cell runs, and an error names the cell.

    name: tiny
    recipe: tiny                  # training recipe (training/recipes/NAME.yaml, or a path) for cells that train
    recipe_overrides: {stage2.max_steps: 200}     # recipe keys set for every training cell
    world: {preset: default, seed: 0}   # the synthetic world (null: none, e.g. for real benchmarks)
    tasks: [syn_all]
    axes: {seed: 0}
    groups:
      - {projector: mlp2x_gelu}
      - {projector: [tokenpacker, avgpool], scale_factor: [2, 3, 4]}
      - {projector: tokenpacker, scale_factor: 4, patch_num: 9}
      - {checkpoint: /ckpts/llava-tokenpacker}   # evaluate as given, no training

Axes: projector, scale_factor, patch_num, seed, checkpoint, `model.<field>` (the recipe's model
section) and `recipe.<key>` (any recipe key, e.g. `recipe.stage2.learning_rate`); the recipe keys are
checked by the training recipe loader before any cell runs. A list gives several values; a value that
is itself a list is written inside a list (`model.multi_level_layers: [[2, 3, 4, 5]]`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.resources
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evaluation.sweep.language import recorded_weights
from evaluation.synthetic.world import SHIPPED_TOWER, check_preset, tower_digest, world_key
from evaluation.tasks import scoring_digest
from tokenpacker.hd import check_patch_num
from tokenpacker.projectors import FULL_TOKEN_PROJECTORS, check_projector_name, check_scale_factor

BUILTIN_SPECS_PACKAGE = "evaluation.sweeps"
DEFAULT_SPEC = "tiny"
BASELINE_SUFFIX = "_baseline"
# Patch grid of the CLIP ViT-L/14-336 tower (DESIGN 1.1). A tiny recipe may use a smaller grid
# (model.tiny_patch_size); its recipe checks scale_factor against that grid when each cell is checked.
VISION_GRID = 24

IDENTITY_AXES = ("projector", "scale_factor", "patch_num", "seed", "checkpoint")
MODEL_PREFIX, RECIPE_PREFIX = "model.", "recipe."
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "recipe",
    "recipe_overrides",
    "world",
    "tasks",
    "evaluation",
    "efficiency",
    "report",
    "slurm",
    "jobs",
    "axes",
    "groups",
)


class SweepSpecError(ValueError):
    """A sweep spec that cannot run; the message names the file, the cell or key, and the fix."""


def check_count(name: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")


@dataclass(frozen=True)
class WorldSpec:
    """The synthetic world the cells train and evaluate on, generated once per sweep folder."""

    preset: str = "default"
    seed: int = 0

    def __post_init__(self) -> None:
        check_preset(self.preset)
        check_count("world seed", self.seed, minimum=0)


@dataclass(frozen=True)
class EvaluationOptions:
    """Arguments of `evaluation.evaluate.evaluate` that a spec may set."""

    limit: int | None = None
    batch_size: int = 8
    device: str = "cpu"
    dtype: str = "float32"
    data_root: str | None = None  # task data folder when there is no synthetic world

    def __post_init__(self) -> None:
        if self.limit is not None:
            check_count("evaluation limit", self.limit)
        check_count("evaluation batch_size", self.batch_size)


@dataclass(frozen=True)
class ReportOptions:
    """How the report is written at the end of a sweep."""

    baseline: str = "mlp2x_gelu"
    reference: bool = False  # print the quoted paper rows (real benchmarks only)


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of each cell's Slurm job (`--launcher slurm`). More than one GPU trains via `accelerate launch`."""

    partition: str | None = None
    gpus_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: int | None = None
    time_min: int = 60
    additional: Mapping[str, Any] = field(default_factory=dict)  # extra sbatch options, e.g. {account: lab}

    def __post_init__(self) -> None:
        check_count("slurm gpus_per_node", self.gpus_per_node, minimum=0)
        check_count("slurm time_min", self.time_min)


@dataclass(frozen=True)
class CellConfig:
    """Everything one cell runs with; its JSON form is the `config_json` of its records."""

    cell_id: str
    projector: str
    scale_factor: int | None  # None for projectors that keep every token
    patch_num: int | None  # None: single image ("pad"); 9/16/25: TokenPacker-HD
    seed: int
    checkpoint: str | None  # evaluate this checkpoint instead of training
    model: Mapping[str, Any]
    recipe: str | None
    recipe_overrides: Mapping[str, Any]
    tasks: tuple[str, ...]
    evaluation: EvaluationOptions
    efficiency: Mapping[str, Any] | None  # keyword arguments of the efficiency probe; None: not measured
    world: WorldSpec | None

    @property
    def trains(self) -> bool:
        return self.checkpoint is None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def train_fingerprint(self) -> str:
        """Key of the training stage: what the checkpoint depends on."""
        keys = (
            "projector",
            "scale_factor",
            "patch_num",
            "seed",
            "checkpoint",
            "model",
            "recipe",
            "recipe_overrides",
            "world",
        )
        inputs = {key: self.to_dict()[key] for key in keys}
        # what the names stand for: an edited recipe file or world generator retrains the cell; the
        # recipe's settings count, not its bytes, so editing a comment keeps finished cells
        if (settings := self.recipe_settings()) is not None:
            inputs["recipe_file"] = settings
        if self.world is not None:
            inputs["world_key"] = world_key(self.world.preset, self.world.seed)
            inputs["shipped_language_model"] = recorded_weights()  # which the cell may start from
        if (tower := self.vision_tower()) is not None:  # its weights, not its name
            inputs["vision_tower_digest"] = tower_digest(tower)
        return fingerprint(inputs)

    def recipe_settings(self) -> dict[str, Any] | None:
        """The recipe file's settings, or None for a cell without one."""
        if self.recipe is not None and (path := recipe_path(self.recipe)).is_file():
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        return None

    def vision_tower(self) -> Path | None:
        """The tower folder the cell trains through: its overrides', the cell's, the recipe's, else the
        world's. The sweep hands a tiny model exactly this one (stages.training_overrides), so the key
        covers what is trained through."""
        named = ((self.recipe_settings() or {}).get("model") or {}).get("vision_tower")
        named = self.model.get("vision_tower", named)
        for key in ("vision_tower", "model.vision_tower"):
            named = self.recipe_overrides.get(key, named)
        if named is not None:
            return Path(named)
        return SHIPPED_TOWER if self.world is not None else None

    def evaluation_fingerprint(self) -> str:
        return fingerprint([self.train_fingerprint(), self.tasks, asdict(self.evaluation), scoring_digest()])

    def efficiency_fingerprint(self) -> str:
        return fingerprint([self.train_fingerprint(), self.efficiency])

    def fingerprint(self) -> str:
        """Key of the whole cell: a finished cell is reused only while this is unchanged."""
        return fingerprint([self.evaluation_fingerprint(), self.efficiency_fingerprint()])


@dataclass(frozen=True)
class SharedOptions:
    """The spec's sweep-wide settings that every cell carries."""

    source: Path
    recipe: str | None
    recipe_overrides: Mapping[str, Any]
    tasks: tuple[str, ...]
    evaluation: EvaluationOptions
    efficiency: Mapping[str, Any] | None
    world: WorldSpec | None


@dataclass(frozen=True)
class SweepSpec:
    """A parsed spec: its sweep-wide options and the expanded, validated cells in spec order."""

    name: str
    source: Path
    description: str
    world: WorldSpec | None
    tasks: tuple[str, ...]
    report: ReportOptions | None
    slurm: SlurmOptions
    cells: tuple[CellConfig, ...]
    jobs: int | None = 1  # cells at a time with the local launcher; None: one per CPU core

    def cell(self, cell_id: str) -> CellConfig:
        return next(cell for cell in self.cells if cell.cell_id == cell_id)


def recipe_path(recipe: str) -> Path:
    """A recipe YAML path as given, or a bare name from training/recipes/ (e.g. "tiny")."""
    given = Path(recipe)
    if given.suffix in (".yaml", ".yml") or given.is_file():
        return given
    return Path(str(importlib.resources.files("training") / "recipes" / f"{recipe}.yaml"))


def fingerprint(value: Any) -> str:
    """Short stable hash of JSON-able data (keys sorted)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def builtin_spec_names() -> list[str]:
    """The specs in evaluation/sweeps/ (their `--check` baselines, NAME_baseline.yaml, beside them are not specs)."""
    names = (p.name.removesuffix(".yaml") for p in _builtin_folder().glob("*.yaml"))
    return sorted(name for name in names if not name.endswith(BASELINE_SUFFIX))


def _builtin_folder() -> Path:
    return Path(str(importlib.resources.files(BUILTIN_SPECS_PACKAGE)))


def resolve_spec_path(spec: str | Path) -> Path:
    """A YAML path, or the name of a built-in spec (evaluation/sweeps/NAME.yaml)."""
    given = Path(spec)
    if given.is_file():
        return given
    builtin = _builtin_folder() / f"{spec}.yaml"
    if builtin.is_file():
        return builtin
    raise FileNotFoundError(
        f"sweep spec {str(spec)!r}: no such file and no built-in spec of that name; "
        f"built-in specs: {', '.join(builtin_spec_names())}"
    )


def load_spec(spec: str | Path) -> SweepSpec:
    """Read, expand and validate a spec (a path or a built-in name); raises SweepSpecError naming the problem."""
    path = resolve_spec_path(spec)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SweepSpecError(f"sweep spec {path}: not valid YAML ({exc})") from None
    return parse_spec(raw, path)


def parse_spec(raw: Any, source: Path) -> SweepSpec:
    if not isinstance(raw, dict):
        raise SweepSpecError(
            f"sweep spec {source}: the top level must be a mapping of keys {', '.join(TOP_LEVEL_KEYS)}"
        )
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SweepSpecError(
            f"sweep spec {source}: unknown keys {unknown}; allowed: {', '.join(TOP_LEVEL_KEYS)}"
        )
    where = f"sweep spec {source}"
    world = _options(WorldSpec, raw.get("world", {}), f"{where}: world")
    tasks = _tasks(raw.get("tasks"), where)
    evaluation = _options(EvaluationOptions, raw.get("evaluation", {}), f"{where}: evaluation")
    efficiency = _efficiency(raw.get("efficiency", {}), where)
    report = _options(ReportOptions, raw.get("report", {}), f"{where}: report")
    slurm = _options(SlurmOptions, raw.get("slurm", {}), f"{where}: slurm") or SlurmOptions()
    jobs = _jobs(raw.get("jobs", 1), where)
    recipe = _recipe(raw.get("recipe"), source)
    recipe_overrides = raw.get("recipe_overrides") or {}
    if not isinstance(recipe_overrides, dict):
        raise SweepSpecError(
            f"{where}: recipe_overrides must map recipe keys to values, e.g. {{stage1.max_steps: 50}}"
        )
    shared = _axes(raw.get("axes", {}), f"{where}: axes")
    groups = raw.get("groups") or [{}]
    if not isinstance(groups, list):
        raise SweepSpecError(f"{where}: groups must be a list of axis mappings")
    shared_options = SharedOptions(
        source=source,
        recipe=recipe,
        recipe_overrides=recipe_overrides,
        tasks=tasks,
        evaluation=evaluation or EvaluationOptions(),
        efficiency=efficiency,
        world=world,
    )
    cells: list[CellConfig] = []
    for index, group in enumerate(groups):
        own = _axes(group, f"{where}: groups[{index}]")
        axes = own | {name: values for name, values in shared.items() if name not in own}
        cells.extend(build_cell(values, shared_options) for values in expand_axes(axes))
    _check_unique(cells, where)
    return SweepSpec(
        name=str(raw.get("name") or source.stem),
        source=source,
        description=str(raw.get("description") or ""),
        world=world,
        tasks=tasks,
        report=report,
        slurm=slurm,
        cells=tuple(cells),
        jobs=jobs,
    )


def _jobs(raw: Any, where: str) -> int | None:
    if raw == "auto":
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise SweepSpecError(f"{where}: jobs must be a whole number of at least 1 or 'auto', not {raw!r}")
    return raw


def _recipe(raw: Any, source: Path) -> str | None:
    """A recipe name as given; a recipe path relative to the spec's folder made absolute."""
    if raw is None:
        return None
    if not isinstance(raw, str) or not raw:
        raise SweepSpecError(
            f"sweep spec {source}: recipe must be a recipe name or a path to a recipe YAML, not {raw!r}"
        )
    if raw.endswith((".yaml", ".yml")) and not Path(raw).is_absolute():
        return str((source.parent / raw).resolve())
    return raw


def _efficiency(raw: Any, where: str) -> dict[str, Any] | None:
    """Keyword arguments of the efficiency probe; `true` measures with its defaults, `false` not at all."""
    if raw is False or raw is None:
        return None
    if raw is True:
        return {}
    if not isinstance(raw, dict):
        raise SweepSpecError(
            f"{where}: efficiency must be true, false or a mapping of probe options, not {raw!r}"
        )
    return raw


def _tasks(raw: Any, where: str) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = [raw]
    if not raw or not isinstance(raw, list) or not all(isinstance(t, str) and t for t in raw):
        raise SweepSpecError(
            f"{where}: tasks must be a non-empty list of lmms-eval task names, e.g. [syn_all]"
        )
    return tuple(raw)


def _options(kind: type, raw: Any, where: str) -> Any:
    """A dataclass of options from a mapping; `false`/null turns the section off (None)."""
    if raw is False or raw is None:
        return None
    if raw is True:
        raw = {}
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where}: expected a mapping, got {raw!r}")
    allowed = list(kind.__dataclass_fields__)
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise SweepSpecError(f"{where}: unknown options {unknown}; allowed: {', '.join(allowed)}")
    try:
        return kind(**raw)
    except ValueError as exc:
        raise SweepSpecError(f"{where}: {exc}") from None


def _axes(raw: Any, where: str) -> dict[str, list[Any]]:
    """Axis name -> its list of values (a scalar is one value); unknown axis names are refused."""
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{where}: expected a mapping of axis -> value or list of values, got {raw!r}")
    axes = {}
    for name, values in raw.items():
        check_axis_name(str(name), where)
        values = values if isinstance(values, list) else [values]
        if not values:
            raise SweepSpecError(f"{where}: axis {name!r} has no values")
        axes[str(name)] = values
    return axes


def check_axis_name(name: str, where: str) -> None:
    prefixed = any(
        name.startswith(prefix) and len(name) > len(prefix) for prefix in (MODEL_PREFIX, RECIPE_PREFIX)
    )
    if name not in IDENTITY_AXES and not prefixed:
        raise SweepSpecError(
            f"{where}: unknown axis {name!r}; allowed: {', '.join(IDENTITY_AXES)}, model.<field>, recipe.<key>"
        )


def expand_axes(axes: Mapping[str, list[Any]]) -> Iterable[dict[str, Any]]:
    """Every combination of the axes' values, the last axis varying fastest."""
    names = list(axes)
    for combination in itertools.product(*(axes[name] for name in names)):
        yield dict(zip(names, combination, strict=True))


def cell_id_for(values: Mapping[str, Any], checkpoint_name: str | None = None) -> str:
    """Readable, stable id from a cell's values, e.g. "tokenpacker-s2-hd9-seed0" (safe as a folder name)."""
    projector = values.get("projector", "?")
    parts = [str(projector)]
    scale_factor = values.get("scale_factor")
    if scale_factor is not None and not (projector in FULL_TOKEN_PROJECTORS and scale_factor == 1):
        parts.append(f"s{scale_factor}")
    if values.get("patch_num") is not None:
        parts.append(f"hd{values['patch_num']}")
    parts.append(f"seed{values.get('seed', 0)}")
    parts += [
        f"{name}={json.dumps(value, separators=(',', ':'))}" for name, value in values.items() if "." in name
    ]
    if checkpoint_name is not None:
        parts.append(f"from-{checkpoint_name}")
    return re.sub(r"[^A-Za-z0-9._=+-]", "_", "-".join(parts))


def build_cell(values: dict[str, Any], shared: SharedOptions) -> CellConfig:
    """One validated cell; every error names the cell."""
    checkpoint = values.get("checkpoint")
    if checkpoint is not None:
        values = _checkpoint_values(values, shared.source)
    cell_id = cell_id_for(values, Path(str(checkpoint)).name if checkpoint is not None else None)
    try:
        return _validated_cell(cell_id, values, shared)
    except (ValueError, TypeError) as exc:
        raise SweepSpecError(f"sweep spec {shared.source}: cell {cell_id}: {exc}") from None


def _checkpoint_values(values: dict[str, Any], source: Path) -> dict[str, Any]:
    """A checkpoint cell's projector, scale_factor and patch_num come from the checkpoint's config.json."""
    checkpoint = values["checkpoint"]
    set_here = sorted(
        name for name in values if name in ("projector", "scale_factor", "patch_num") or "." in name
    )
    if set_here:
        raise SweepSpecError(
            f"sweep spec {source}: checkpoint {checkpoint!r} is evaluated as given, so {set_here} cannot be set "
            "for it (they are read from its config.json); remove them from its group"
        )
    config_file = Path(str(checkpoint)) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"sweep spec {source}: checkpoint {checkpoint!r} has no config.json; give a saved model folder"
        )
    config = json.loads(config_file.read_text(encoding="utf-8"))
    projector = config.get("projector_type", "?")
    full = projector in FULL_TOKEN_PROJECTORS
    hd = config.get("image_aspect_ratio") == "slice"
    return {
        **values,
        "projector": projector,
        "scale_factor": None if full else config.get("scale_factor"),
        "patch_num": config.get("patch_num") if hd else None,
    }


def _validated_cell(cell_id: str, values: dict[str, Any], shared: SharedOptions) -> CellConfig:
    if "projector" not in values:
        raise ValueError("no projector; give the projector axis (or a checkpoint)")
    projector = values["projector"]
    check_projector_name(projector)
    scale_factor = values.get("scale_factor")
    if projector in FULL_TOKEN_PROJECTORS:
        if scale_factor not in (None, 1):
            raise ValueError(
                f"{projector} keeps every token, so scale_factor={scale_factor!r} means nothing; leave it out"
            )
        scale_factor = None
    elif scale_factor is None:
        raise ValueError(
            f"projector {projector} needs a scale_factor; allowed: 2, 3, 4 (any divisor of {VISION_GRID})"
        )
    else:
        check_scale_factor(scale_factor, VISION_GRID)
    patch_num = values.get("patch_num")
    if patch_num is not None:
        check_patch_num(patch_num)
    seed = values.get("seed", 0)
    check_count("seed", seed, minimum=0)
    checkpoint = values.get("checkpoint")
    trains = checkpoint is None
    if trains and not shared.recipe:
        raise ValueError(
            "this cell trains, so the spec needs a recipe (e.g. recipe: tiny), or give a checkpoint"
        )
    axis_overrides = {
        name[len(RECIPE_PREFIX) :]: v for name, v in values.items() if name.startswith(RECIPE_PREFIX)
    }
    return CellConfig(
        cell_id=cell_id,
        projector=projector,
        scale_factor=scale_factor,
        patch_num=patch_num,
        seed=seed,
        checkpoint=None if trains else str(Path(str(checkpoint)).resolve()),
        model={name[len(MODEL_PREFIX) :]: v for name, v in values.items() if name.startswith(MODEL_PREFIX)},
        recipe=shared.recipe if trains else None,
        recipe_overrides={**shared.recipe_overrides, **axis_overrides} if trains else {},
        tasks=shared.tasks,
        evaluation=shared.evaluation,
        efficiency=shared.efficiency,
        world=shared.world,
    )


def _check_unique(cells: list[CellConfig], where: str) -> None:
    seen: set[str] = set()
    for cell in cells:
        if cell.cell_id in seen:
            raise SweepSpecError(
                f"{where}: cell {cell.cell_id} appears twice; remove the repeated axis values"
            )
        seen.add(cell.cell_id)
    if not cells:
        raise SweepSpecError(f"{where}: the spec has no cells")


def select_cells(spec: SweepSpec, patterns: Iterable[str] | None) -> tuple[CellConfig, ...]:
    """Cells whose id matches any shell-style pattern (`--only`); all cells when no pattern is given."""
    patterns = [p for raw in patterns or () for p in raw.split(",") if p]
    if not patterns:
        return spec.cells
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(c.cell_id, p) for c in spec.cells)]
    if unmatched:
        raise SweepSpecError(
            f"--only {', '.join(unmatched)}: matches no cell of {spec.name}; cells: {', '.join(c.cell_id for c in spec.cells)}"
        )
    return tuple(c for c in spec.cells if any(fnmatch.fnmatchcase(c.cell_id, p) for p in patterns))
