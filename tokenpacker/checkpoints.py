"""Loading the originally released LLaVA-TokenPacker weights (DESIGN 1.3) into the suite's modules."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import CLIPVisionConfig, CLIPVisionModel, LlamaConfig

from tokenpacker.modeling import TokenPackerConfig, TokenPackerForCausalLM
from tokenpacker.projectors import ProjectorSpec
from tokenpacker.projectors.tokenpacker import TokenPackerProjector

ORIGINAL_PROJECTOR_PREFIX = "model.mm_projector."
ORIGINAL_VISION_PREFIX = "model.vision_tower.vision_tower.vision_model."
DEFAULT_MULTI_LEVEL_LAYERS = (12, 16, 22, 23)

# Original TokenPacker parameter prefix -> the suite's module name.
PROJECTOR_RENAMES: Mapping[str, str] = {
    "q_proj_1.": "point_query_proj.",
    "k_proj_1.": "key_mlp.",
    "v_proj_1.": "value_mlp.",
    "ln_q_1.": "query_norm.",
    "ln_k_1.": "key_norm.",
    "ln_v_1.": "value_norm.",
    "clip_attn.": "region_attention.",
    "mlp.": "output_mlp.",
}


class CheckpointError(ValueError):
    """A checkpoint whose keys or shapes do not fit the model it is loaded into."""


# What a suite checkpoint folder holds besides its weights: model, tokenizer and image processor configs.
SUITE_CHECKPOINT_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json")


def check_suite_checkpoint(path: str | Path) -> Path:
    """The folder, or one clear error saying why it is not a suite checkpoint (checked before any loading)."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"model folder {str(folder)!r} does not exist, so it is not a checkpoint folder; "
            "pass a checkpoint folder saved by the suite (e.g. `tokenpacker tiny --out FOLDER`)"
        )
    if (folder / "config.json").is_file():
        model_type = json.loads((folder / "config.json").read_text()).get("model_type")
        if model_type != TokenPackerConfig.model_type:
            raise ValueError(
                f"{str(folder)!r} holds a {model_type!r} model, not a suite model (model_type {model_type!r}, "
                f"not {TokenPackerConfig.model_type!r}); convert original LLaVA/TokenPacker weights with "
                "tokenpacker.checkpoints first"
            )
    missing = [name for name in SUITE_CHECKPOINT_FILES if not (folder / name).is_file()]
    if missing:
        raise ValueError(
            f"{str(folder)!r} is not a suite checkpoint: it lacks {', '.join(missing)}; "
            "pass a folder written by `tokenpacker train` or tokenpacker.tiny.save_tiny_checkpoint"
        )
    return folder


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a .bin / .safetensors file or of every weight shard in a folder."""
    path = Path(path)
    if path.is_dir():
        shards = (
            sorted(path.glob("*.safetensors"))
            or sorted(path.glob("pytorch_model*.bin"))
            or sorted(path.glob("*.bin"))
        )
        if not shards:
            raise CheckpointError(f"no *.safetensors or *.bin weight files in {path}")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(read_state_dict(shard))
        return state
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def rename_projector_keys(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original names (with or without `model.mm_projector.`) -> the suite's TokenPacker names."""
    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in weights.items():
        bare = key.removeprefix(ORIGINAL_PROJECTOR_PREFIX)
        prefix = next((p for p in PROJECTOR_RENAMES if bare.startswith(p)), None)
        if prefix is None:
            unknown.append(key)
            continue
        renamed[PROJECTOR_RENAMES[prefix] + bare.removeprefix(prefix)] = tensor
    if unknown:
        raise CheckpointError(
            f"unexpected keys in TokenPacker projector weights: {', '.join(sorted(unknown)[:8])}"
            f"{' ...' if len(unknown) > 8 else ''}; expected names like {', '.join(PROJECTOR_RENAMES)}"
        )
    return renamed


def load_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """load_state_dict with missing/unexpected keys and shape mismatches reported by name."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}")
    if unexpected:
        problems.append(
            f"unexpected keys: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"
        )
    if mismatched:
        problems.append(f"shape mismatch (checkpoint vs model): {', '.join(mismatched[:4])}")
    if problems:
        raise CheckpointError(f"{what} does not fit: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def projector_from_original(
    weights: str | Path | Mapping[str, torch.Tensor],
    *,
    scale_factor: int = 2,
    grid: int = 24,
    vision_width: int | None = None,
    multi_level_width: int | None = None,
    llm_width: int | None = None,
) -> TokenPackerProjector:
    """The suite's TokenPacker projector holding original weights (mm_projector.bin, a full checkpoint or a state dict).

    Widths default to what the weights say (1024 / 4096 / LLM width for the 7B release);
    scale_factor and grid are not stored in the weights and must match the checkpoint's config.
    """
    state = read_state_dict(Path(weights)) if isinstance(weights, (str, Path)) else dict(weights)
    if any(k.startswith(ORIGINAL_PROJECTOR_PREFIX) for k in state):
        state = {k: v for k, v in state.items() if k.startswith(ORIGINAL_PROJECTOR_PREFIX)}
    renamed = rename_projector_keys(state)
    for name in ("point_query_proj.weight", "key_mlp.0.weight", "output_mlp.0.weight"):
        if name not in renamed:
            raise CheckpointError(
                f"TokenPacker projector weights lack {name} (original name: {original_name(name)})"
            )
    spec = ProjectorSpec(
        vision_width=vision_width or renamed["point_query_proj.weight"].shape[0],
        multi_level_width=multi_level_width or renamed["key_mlp.0.weight"].shape[1],
        llm_width=llm_width or renamed["output_mlp.0.weight"].shape[0],
        grid=grid,
        scale_factor=scale_factor,
    )
    projector = TokenPackerProjector(spec)
    load_strict(projector, renamed, "TokenPacker projector checkpoint")
    return projector


def original_name(suite_name: str) -> str:
    for original, suite in PROJECTOR_RENAMES.items():
        if suite_name.startswith(suite):
            return original + suite_name.removeprefix(suite)
    return suite_name


def config_from_original(
    llava_config: Mapping,
    vision_config: CLIPVisionConfig,
    multi_level_layers: Sequence[int] = DEFAULT_MULTI_LEVEL_LAYERS,
) -> TokenPackerConfig:
    """Map a LLaVA-TokenPacker config.json (LLaMA fields at top level plus mm_* fields) to ours.

    The released code fixes the multi-level CLIP layers in code, not in config.json, hence the argument.
    """
    text_fields = {
        k: v
        for k, v in llava_config.items()
        if not k.startswith(("mm_", "_")) and k in LlamaConfig().to_dict()
    }
    text_fields.pop("model_type", None)
    text_fields.pop("architectures", None)
    aspect = llava_config.get("image_aspect_ratio", "pad")
    return TokenPackerConfig(
        vision_config=vision_config.to_dict(),
        text_config={**LlamaConfig(**text_fields).to_dict(), "model_type": "llama"},
        projector_type=llava_config.get("mm_projector_type", "tokenpacker"),
        scale_factor=int(llava_config.get("scale_factor", 2)),
        image_aspect_ratio="slice" if aspect == "slice" else "pad",
        patch_num=llava_config.get("patch_num") if aspect == "slice" else None,
        vision_select_layer=int(llava_config.get("mm_vision_select_layer", -2)),
        multi_level_layers=list(multi_level_layers),
    )


def original_to_suite_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Full LLaVA checkpoint names -> TokenPackerForCausalLM names (rotary buffers dropped)."""
    projector = {k: v for k, v in state.items() if k.startswith(ORIGINAL_PROJECTOR_PREFIX)}
    suite = {f"projector.{k}": v for k, v in rename_projector_keys(projector).items()}
    for key, tensor in state.items():
        if key.startswith(ORIGINAL_PROJECTOR_PREFIX) or key.endswith("rotary_emb.inv_freq"):
            continue
        if key.startswith(ORIGINAL_VISION_PREFIX):
            suite["vision_tower.clip." + key.removeprefix(ORIGINAL_VISION_PREFIX)] = tensor
        elif key.startswith("model."):
            suite["language_model." + key] = tensor
        elif key.startswith("lm_head."):
            suite["language_model." + key] = tensor
        else:
            suite[key] = tensor
    return suite


def clip_vision_weights(clip_folder: Path) -> dict[str, torch.Tensor]:
    """Vision weights of a local HF CLIP checkpoint (e.g. clip-vit-large-patch14-336), as our keys.

    Loaded through CLIPVisionModel so that transformers maps full-CLIP and vision-only layouts alike.
    """
    clip = CLIPVisionModel.from_pretrained(clip_folder)
    return {"vision_tower.clip." + k: v for k, v in clip.state_dict().items()}


def load_original_checkpoint(
    folder: str | Path,
    vision_tower: str | Path | None = None,
    multi_level_layers: Sequence[int] = DEFAULT_MULTI_LEVEL_LAYERS,
) -> TokenPackerForCausalLM:
    """A released LLaVA-TokenPacker folder (config.json + weights) as the suite's model.

    Released LLaVA folders usually omit the frozen CLIP weights; they come from `vision_tower`
    (a local CLIP folder), defaulting to the config's `mm_vision_tower` when that is a local path.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{folder} has no config.json; expected a LLaVA-TokenPacker checkpoint folder")
    llava_config = json.loads(config_path.read_text())
    state = original_to_suite_keys(read_state_dict(folder))
    has_vision = any(k.startswith("vision_tower.") for k in state)
    clip_folder = Path(vision_tower or llava_config.get("mm_vision_tower", ""))
    if not has_vision and not (clip_folder / "config.json").exists():
        raise CheckpointError(
            f"{folder} holds no vision tower weights and the CLIP folder {str(clip_folder)!r} is not a local "
            "checkpoint; pass vision_tower=PATH to a local clip-vit-large-patch14-336 folder"
        )
    if (clip_folder / "config.json").exists():
        vision_config = CLIPVisionConfig.from_pretrained(clip_folder)
        if not has_vision:
            state.update(clip_vision_weights(clip_folder))
    else:
        vision_config = TokenPackerConfig().vision_config
    config = config_from_original(llava_config, vision_config, multi_level_layers)
    dtype = getattr(
        torch, str(llava_config.get("torch_dtype", "float32")).removeprefix("torch."), torch.float32
    )
    model = TokenPackerForCausalLM._from_config(config, dtype=dtype)
    load_strict(model, state, f"original checkpoint {folder}")
    return model
