"""Training recipes: YAML files turned into typed dataclasses, with `--key value` overrides.

A recipe names the model to start from (`model:`), the two stages' data and
hyper-parameters (`stage1:`, `stage2:`), an optional stage 0 that pretrains a tiny model's LLM on
text alone (`stage0:`, the tiny analogue of starting from Vicuna), an optional second text phase after it
(`stage0_anneal:`) and where to write (`output_dir`). Overrides are
flat or dotted keys: `scale_factor` (the model field), `stage2.learning_rate` (one stage),
`learning_rate` (every stage), `output_dir` / `data_root` (top level). Strings are converted to each
field's type, so YAML's `1e-3` (a string to PyYAML) and CLI text both work.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tokenpacker.conversation import get_template
from tokenpacker.tiny import TINY_PATCH_SIZE, tiny_config

MODEL_SOURCES = ("tiny", "pretrained")
DTYPES = ("float32", "bfloat16", "float16")
STAGES = ("stage0", "stage0_anneal", "stage1", "stage2")


class RecipeError(ValueError):
    """A recipe file or override that cannot describe a run."""


@dataclass(frozen=True)
class ModelRecipe:
    """The model a run starts from: a tiny model built from a seed, or local CLIP + LLM folders.

    `pretrained` reads `vision_tower` (e.g. clip-vit-large-patch14-336) and `language_model`
    (e.g. vicuna-7b-v1.5) from local folders; the projector starts from its own init.
    `tiny` with `language_model` takes its LLM weights from that suite checkpoint (a stage-0 `final/`),
    and with `vision_tower` its tower's from a tiny CLIP folder (`tokenpacker synth-tower`'s).
    """

    source: str = "tiny"
    projector_type: str = "tokenpacker"
    scale_factor: int = 2
    patch_num: int | None = None  # 9 / 16 / 25 turns on TokenPacker-HD (image_aspect_ratio "slice")
    init_seed: int = 0  # tiny only: seed of the random weights
    tiny_patch_size: int = TINY_PATCH_SIZE  # tiny only: CLIP patch side in px (2: 24x24 grid, 4: 12x12)
    vision_tower: str | None = None
    language_model: str | None = None
    # TokenPacker's multi-level hidden states; None: the paper's [12, 16, 22, 23], tiny [2, 3, 4, 5]
    multi_level_layers: list[int] | None = None
    dtype: str = "float32"
    attn_implementation: str | None = (
        None  # pretrained only; None: flash_attention_2 on CUDA if installed, else sdpa
    )

    def __post_init__(self) -> None:
        if self.source not in MODEL_SOURCES:
            raise RecipeError(
                f"model.source={self.source!r} is not supported; allowed: {', '.join(MODEL_SOURCES)}"
            )
        if self.dtype not in DTYPES:
            raise RecipeError(f"model.dtype={self.dtype!r} is not supported; allowed: {', '.join(DTYPES)}")
        # the tiny model's own checks: patch size, scale_factor on its grid, layer indices
        if self.source == "tiny":
            try:
                tiny_config(self.projector_type, self.scale_factor, **self.tiny_settings())
            except ValueError as error:
                raise RecipeError(f"model: {error}") from None
        if self.source == "pretrained" and self.tiny_patch_size != TINY_PATCH_SIZE:
            raise RecipeError(
                f"model.tiny_patch_size={self.tiny_patch_size} applies to tiny models only; a pretrained vision "
                "tower brings its own patch size: drop the key"
            )
        if self.source == "pretrained" and not (self.vision_tower and self.language_model):
            raise RecipeError(
                "model.source='pretrained' needs model.vision_tower and model.language_model: local folders of a "
                "CLIP vision model and a causal LM (e.g. --vision_tower /ckpt/clip-vit-large-patch14-336)"
            )

    def tiny_settings(self) -> dict[str, object]:
        """The keywords of tokenpacker.tiny.tiny_config this recipe sets (a list left out keeps its default)."""
        settings: dict[str, object] = {"patch_num": self.patch_num, "patch_size": self.tiny_patch_size}
        if self.multi_level_layers is not None:
            settings["multi_level_layers"] = self.multi_level_layers
        return settings


@dataclass(frozen=True)
class StageRecipe:
    """One training stage: its data, template and HF TrainingArguments-style hyper-parameters."""

    data_path: str | None = None  # LLaVA JSON list
    image_folder: str | None = None  # the JSON's "image" paths are relative to it
    conversation_template: str = "vicuna_v1"
    model_max_length: int = 2048
    learning_rate: float = 2e-5
    # stage 2 only, LLaVA's mm_projector_lr: the projector's own lr beside the LLM's (null: learning_rate)
    projector_learning_rate: float | None = None
    per_device_train_batch_size: int = 16
    gradient_accumulation_steps: int = 1
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides num_train_epochs
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler_type: str = "cosine"
    max_grad_norm: float = 1.0
    group_by_modality_length: bool = False
    # pack each batch's samples into rows instead of padding them (training/collator.py)
    padding_free: bool = False
    gradient_checkpointing: bool = False
    bf16: bool = False
    tf32: bool | None = None
    deepspeed: str | None = None  # a DeepSpeed JSON, e.g. training/deepspeed/zero2.json
    lora_r: int = 0  # > 0: stage 2 trains LoRA adapters of this rank instead of the full LLM
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    save_steps: int = 500
    save_total_limit: int | None = 1
    logging_steps: int = 1
    dataloader_num_workers: int = 0
    # keep each image's crops and frozen-tower features in memory after their first use: a small world
    # seen for several epochs (the tiny stage 1) skips decoding and the tower; LLaVA's data would not fit
    cache_images: bool = False
    seed: int = 42
    report_to: str = "none"

    def __post_init__(self) -> None:
        get_template(self.conversation_template)
        for name in ("learning_rate", "projector_learning_rate"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise RecipeError(f"{name}={value!r} is not a learning rate; give a finite number >= 0")
        if self.max_steps != -1 and self.max_steps < 1:
            raise RecipeError(
                f"max_steps={self.max_steps!r} is not a step count; give a number >= 1, or -1 to train num_train_epochs"
            )
        if not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise RecipeError(f"num_train_epochs={self.num_train_epochs!r} must be a finite number > 0")
        for name in (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "save_steps",
            "logging_steps",
        ):
            if getattr(self, name) < 1:
                raise RecipeError(f"{name}={getattr(self, name)!r} must be >= 1")
        if not 0 <= self.warmup_ratio < 1:  # HF reads a warm-up of 1 or more as a step count
            raise RecipeError(
                f"warmup_ratio={self.warmup_ratio!r} must lie in [0, 1): a share of the stage's steps"
            )


@dataclass(frozen=True)
class Recipe:
    model: ModelRecipe = field(default_factory=ModelRecipe)
    # stage 0 trains only a tiny model's LLM on text-only conversations; no data_path: no stage 0
    stage0: StageRecipe = field(default_factory=lambda: StageRecipe(learning_rate=1e-3))
    # a second text-only phase from stage 0's LLM, at a lower lr, on a corpus that weights up what stage 0
    # learns last (the synthetic world's option letters); no data_path, or no stage 0: none
    stage0_anneal: StageRecipe = field(default_factory=lambda: StageRecipe(learning_rate=3e-4))
    stage1: StageRecipe = field(
        default_factory=lambda: StageRecipe(conversation_template="plain", learning_rate=1e-3)
    )
    stage2: StageRecipe = field(default_factory=StageRecipe)
    output_dir: str | None = None
    data_root: str | None = None  # relative data_path / image_folder values are read from here
    projector_file: str | None = None  # stage 2 starts from this stage-1 projector file; stage 1 is skipped

    def __post_init__(self) -> None:
        for name in ("stage0", "stage0_anneal", "stage1"):
            if getattr(self, name).projector_learning_rate is not None:
                raise RecipeError(
                    f"{name}.projector_learning_rate is set, but only stage 2 trains the projector beside the "
                    f"LLM; set stage2.projector_learning_rate (stage 1: stage1.learning_rate)"
                )
        if self.stage1.lora_r:
            raise RecipeError(
                f"stage1.lora_r={self.stage1.lora_r}: stage 1 trains only the projector, LoRA applies to stage 2; "
                "set stage2.lora_r instead"
            )

    def stage(self, number: int) -> StageRecipe:
        if number not in (0, 1, 2):
            raise ValueError(f"stage {number} does not exist; the stages are 0, 1 and 2")
        return getattr(self, f"stage{number}")

    def data_location(self, path: str | None) -> Path | None:
        """A stage's data_path or image_folder, taken relative to data_root when that is set."""
        if path is None:
            return None
        return Path(self.data_root) / path if self.data_root else Path(path)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def field_types(cls: type) -> dict[str, object]:
    return typing.get_type_hints(cls)


def overridable_keys() -> dict[str, object]:
    """Every key an override may name, with its type: bare fields and per-stage (`stage1.KEY`) ones."""
    keys: dict[str, object] = {}
    for name, kind in field_types(Recipe).items():
        if name not in ("model", *STAGES):
            keys[name] = kind
    keys.update(field_types(ModelRecipe))
    stage_fields = field_types(StageRecipe)
    keys.update(stage_fields)
    for stage in STAGES:
        keys.update({f"{stage}.{name}": kind for name, kind in stage_fields.items()})
    keys.update({f"model.{name}": kind for name, kind in field_types(ModelRecipe).items()})
    return keys


def parse_bool(key: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off"):
        return False
    raise RecipeError(f"{key}={value!r} is not a boolean; use true or false")


def parse_int_list(key: str, value: object) -> list[int]:
    items = yaml.safe_load(value) if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in items):
        raise RecipeError(f"{key}={value!r} is not a list of integers; write e.g. [12,16,22,23]")
    return items


def coerce(key: str, value: object, annotation: object) -> object:
    """`value` (from YAML or the command line) as the field's declared type, or a RecipeError."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "~")):
        if type(None) in options:
            return None
        raise RecipeError(f"{key} may not be null; give a value")
    kind = next(k for k in options if k is not type(None))
    if kind is bool:
        return parse_bool(key, value)
    if kind is str:
        return str(value)
    if typing.get_origin(kind) is list:
        return parse_int_list(key, value)
    expected = "an integer" if kind is int else "a number"
    if isinstance(value, bool):
        raise RecipeError(f"{key}={value!r} is a boolean; {expected} is expected")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RecipeError(f"{key}={value!r} is not {expected}") from None
    if kind is int and not number.is_integer():
        raise RecipeError(f"{key}={value!r} is not {expected}")
    return int(number) if kind is int else number


def build_section(cls: type, values: Mapping[str, object], where: str) -> object:
    """A section dataclass from a mapping; unknown keys are an error naming the known ones."""
    types_by_name = field_types(cls)
    unknown = sorted(set(values) - set(types_by_name))
    if unknown:
        raise RecipeError(
            f"unknown key(s) {', '.join(unknown)} in recipe section {where!r}; allowed: {', '.join(types_by_name)}"
        )
    typed = {k: coerce(f"{where}.{k}", v, types_by_name[k]) for k, v in values.items()}
    try:
        return cls(**typed)
    except RecipeError as error:
        message = str(error)
        raise RecipeError(message if message.startswith(where) else f"{where}: {message}") from None


def read_recipe_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe file {path} does not exist; see training/recipes/ for examples")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"recipe {path} is not valid YAML: {error}") from None
    if not isinstance(data, Mapping):
        raise RecipeError(
            f"recipe {path} must be a YAML mapping with model, stage1, stage2 (and optional stage0, stage0_anneal) sections"
        )
    return dict(data)


def nested_overrides(overrides: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """Flat or dotted keys -> {section: {field: value}}; a bare stage field goes to every stage."""
    known = overridable_keys()
    top = {n for n in field_types(Recipe) if n not in ("model", *STAGES)}
    model_fields, stage_fields = set(field_types(ModelRecipe)), set(field_types(StageRecipe))
    nested: dict[str, dict[str, object]] = {"": {}, "model": {}, **{stage: {} for stage in STAGES}}
    for key, value in overrides.items():
        if key not in known:
            raise RecipeError(
                f"unknown override {key!r}; allowed: a field of model ({', '.join(sorted(model_fields))}), of a stage "
                f"({', '.join(sorted(stage_fields))}, optionally as {' / '.join(f'{s}.KEY' for s in STAGES)}) or {', '.join(sorted(top))}"
            )
        section, _, name = key.rpartition(".")
        if section:
            nested[section][name] = value
        elif name in top:
            nested[""][name] = value
        elif name in model_fields:
            nested["model"][name] = value
        else:
            for stage in STAGES:
                nested[stage][name] = value
    return nested


def load_recipe(recipe: str | Path | Mapping, overrides: Mapping[str, object] | None = None) -> Recipe:
    """A validated Recipe from a YAML path or a mapping, with overrides applied on top."""
    data = dict(recipe) if isinstance(recipe, Mapping) else read_recipe_file(recipe)
    unknown = sorted(set(data) - set(field_types(Recipe)))
    if unknown:
        raise RecipeError(
            f"unknown recipe section(s) {', '.join(unknown)}; allowed: {', '.join(field_types(Recipe))}"
        )
    extra = nested_overrides(overrides or {})
    sections = {}
    for name, cls in (("model", ModelRecipe), *((stage, StageRecipe) for stage in STAGES)):
        given = data.get(name) or {}
        if not isinstance(given, Mapping):
            raise RecipeError(f"recipe section {name!r} must be a mapping of keys to values, got {given!r}")
        base = dataclasses.asdict(getattr(Recipe(), name))  # a missing key keeps the stage's paper default
        sections[name] = build_section(cls, {**base, **given, **extra[name]}, name)
    top_types = field_types(Recipe)
    top = {k: coerce(k, v, top_types[k]) for k, v in {**data, **extra[""]}.items() if k not in sections}
    return Recipe(**sections, **top)
