"""Builders for the model a stage trains: tiny from a seed or from local CLIP + LLM folders,
which parts train in which stage, and optional LoRA for stage 2."""

from __future__ import annotations

from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import (
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionConfig,
    CLIPVisionModel,
)

from tokenpacker.checkpoints import CheckpointError, read_state_dict
from tokenpacker.modeling import TokenPackerConfig, TokenPackerForCausalLM, default_attn_implementation
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.projectors import build_projector
from tokenpacker.tiny import build_tiny_model, build_tiny_tokenizer, tiny_config, tiny_image_processor
from training.recipe import ModelRecipe

# The submodules each stage trains (DESIGN 2); the vision tower is always frozen. Stage 0 (tiny
# models only) pretrains the LLM on text, as Vicuna was before LLaVA started from it.
TRAINED_PARTS = {0: ("language_model",), 1: ("projector",), 2: ("projector", "language_model")}
LANGUAGE_PREFIX = "language_model."


def build_model(recipe: ModelRecipe) -> tuple[TokenPackerForCausalLM, TokenPackerProcessor]:
    """The untrained starting point of both stages and the processor that feeds it."""
    model, processor = build_tiny(recipe) if recipe.source == "tiny" else build_pretrained(recipe)
    return model.to(getattr(torch, recipe.dtype)), processor


def build_tiny(recipe: ModelRecipe) -> tuple[TokenPackerForCausalLM, TokenPackerProcessor]:
    config = tiny_config(recipe.projector_type, recipe.scale_factor, **recipe.tiny_settings())
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    model = build_tiny_model(config, seed=recipe.init_seed)
    if recipe.vision_tower is not None:  # a pretrained tiny CLIP (`tokenpacker synth-tower`'s)
        check_vision_tower(recipe)
        load_vision_tower(model, Path(recipe.vision_tower))
    if recipe.language_model is not None:
        load_language_model(model, Path(recipe.language_model))
    return model, processor


# what a tower's config must share with the tiny model's for its weights to mean the same there
TOWER_SHAPE_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "hidden_act",
    "image_size",
    "patch_size",
    "num_channels",
)


def check_vision_tower(recipe: ModelRecipe) -> None:
    """A tiny model's pretrained tower must be a CLIP folder that fits it; checked before any stage starts."""
    if recipe.source != "tiny" or recipe.vision_tower is None:
        return
    folder = Path(recipe.vision_tower)
    if not ((folder / "config.json").is_file() and (folder / "model.safetensors").is_file()):
        raise CheckpointError(
            f"model.vision_tower {folder} is not a CLIP vision model folder (config.json and model.safetensors); "
            "give the folder `tokenpacker synth-tower` writes (`tokenpacker synth` prints the shipped one) or drop the key"
        )
    theirs = CLIPVisionConfig.from_pretrained(folder)
    ours = tiny_config(patch_size=recipe.tiny_patch_size).vision_config
    differing = [
        f"{name} {getattr(theirs, name)} vs {getattr(ours, name)}"
        for name in TOWER_SHAPE_FIELDS
        if getattr(theirs, name) != getattr(ours, name)
    ]
    if differing:
        raise CheckpointError(
            f"the vision tower in {folder} does not fit this tiny model ({', '.join(differing)}); "
            "pretrain one for it with tokenpacker synth-tower, or set model.tiny_patch_size to the tower's"
        )


def load_vision_tower(model: TokenPackerForCausalLM, folder: Path) -> None:
    """A checked tower's weights into the tiny model; weights that do not match its config are refused."""
    try:
        model.vision_tower.clip.load_state_dict(CLIPVisionModel.from_pretrained(folder).state_dict())
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"the weights in {folder} do not fit its config ({first}); pretrain it again"
        ) from None


def load_language_model(model: TokenPackerForCausalLM, checkpoint: Path) -> None:
    """Replace the LLM's weights with those of a suite checkpoint (e.g. a stage-0 `final/`)."""
    state = read_state_dict(checkpoint)
    weights = {k.removeprefix(LANGUAGE_PREFIX): v for k, v in state.items() if k.startswith(LANGUAGE_PREFIX)}
    if not weights:
        raise CheckpointError(
            f"{checkpoint} holds no {LANGUAGE_PREFIX}* weights; model.language_model of a tiny model must be a "
            "suite checkpoint folder such as a stage-0 final/"
        )
    try:
        model.language_model.load_state_dict(weights)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise CheckpointError(
            f"the LLM in {checkpoint} does not fit this tiny model ({first}); pretrain it with the same tiny config"
        ) from None


def build_pretrained(recipe: ModelRecipe) -> tuple[TokenPackerForCausalLM, TokenPackerProcessor]:
    """LLaVA's starting point: pretrained CLIP and LLM weights, a freshly initialised projector.

    The composite is made on the meta device and its three parts replaced by the loaded ones,
    so a 7B model is never randomly initialised just to be overwritten.
    """
    dtype = getattr(torch, recipe.dtype)
    attention = recipe.attn_implementation or default_attn_implementation(
        "cuda" if torch.cuda.is_available() else "cpu"
    )
    language_model = AutoModelForCausalLM.from_pretrained(
        recipe.language_model, dtype=dtype, attn_implementation=attention
    )
    clip = CLIPVisionModel.from_pretrained(recipe.vision_tower, dtype=dtype)
    config = TokenPackerConfig(
        vision_config=clip.config.to_dict(),
        text_config=language_model.config.to_dict(),
        projector_type=recipe.projector_type,
        scale_factor=recipe.scale_factor,
        image_aspect_ratio="slice" if recipe.patch_num is not None else "pad",
        patch_num=recipe.patch_num,
        multi_level_layers=recipe.multi_level_layers,
    )
    with torch.device("meta"):
        model = TokenPackerForCausalLM(config)
    model.language_model = language_model
    model.vision_tower.clip = clip.requires_grad_(False)
    with torch.random.fork_rng():
        torch.manual_seed(recipe.init_seed)
        model.projector = build_projector(config.projector_type, config.projector_spec()).to(dtype)
    tokenizer = AutoTokenizer.from_pretrained(recipe.language_model)
    if tokenizer.pad_token is None:  # LLaMA/Vicuna ship none; LLaVA pads with unk
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    processor = TokenPackerProcessor(
        tokenizer, AutoImageProcessor.from_pretrained(recipe.vision_tower), config
    )
    return model, processor


def set_trained_parts(model: TokenPackerForCausalLM, stage: int) -> None:
    """Freeze everything, then unfreeze what `stage` trains."""
    model.requires_grad_(False)
    for name in TRAINED_PARTS[stage]:
        getattr(model, name).requires_grad_(True)


def lora_target_modules(model: TokenPackerForCausalLM) -> list[str]:
    """Every linear layer of the LLM except its output head, as LLaVA's LoRA recipe does."""
    head = model.get_output_embeddings()
    return [
        f"language_model.{name}"
        for name, module in model.language_model.named_modules()
        if isinstance(module, nn.Linear) and module is not head
    ]


def add_lora(model: TokenPackerForCausalLM, rank: int, alpha: int, dropout: float) -> PeftModel:
    """LoRA adapters on the LLM; the projector trains fully and is saved with the adapters."""
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=lora_target_modules(model),
        modules_to_save=["projector"],
    )
    return get_peft_model(model, config)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]
