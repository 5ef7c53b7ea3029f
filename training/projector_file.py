"""The stage-1 -> stage-2 hand-off: projector weights as a standalone safetensors file.

Keys are the suite's full-model names (`projector.point_query_proj.weight`, ...), as in a
saved checkpoint. The file's metadata records what the weights were trained for; TokenPacker
weights have the same shapes at every scale_factor, so without it an s=2 projector would load
silently into an s=3 model.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tokenpacker.checkpoints import CheckpointError, load_strict
from tokenpacker.modeling import TokenPackerConfig, TokenPackerForCausalLM

PROJECTOR_FILE = "mm_projector.safetensors"
PROJECTOR_PREFIX = "projector."


class ProjectorMismatchError(CheckpointError):
    """A projector file trained for another projector setting than the model it is loaded into."""


def projector_metadata(config: TokenPackerConfig) -> dict[str, str]:
    spec = config.projector_spec()
    return {
        "projector_type": config.projector_type,
        "scale_factor": str(spec.scale_factor),
        "grid": str(spec.grid),
        "vision_width": str(spec.vision_width),
        "multi_level_width": str(spec.multi_level_width),
        "llm_width": str(spec.llm_width),
    }


def save_projector_file(weights: dict[str, torch.Tensor], config: TokenPackerConfig, path: Path) -> Path:
    """Write the `projector.*` entries of a full state dict (other keys are left out)."""
    projector = {k: v.contiguous() for k, v in weights.items() if k.startswith(PROJECTOR_PREFIX)}
    if not projector:
        raise CheckpointError(f"no {PROJECTOR_PREFIX}* weights to save into {path}")
    save_file(projector, str(path), metadata=projector_metadata(config))
    return path


def load_projector_file(model: TokenPackerForCausalLM, path: str | Path) -> None:
    """Load a projector file into `model.projector`; any difference in setting, names or shapes
    is a ProjectorMismatchError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"projector file {path} does not exist; run stage 1 or fix projector_file")
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        weights = {key: handle.get_tensor(key) for key in handle.keys()}
    expected = projector_metadata(model.config)
    differences = [
        f"{name} {metadata.get(name, 'unrecorded')} (file) vs {value} (model)"
        for name, value in expected.items()
        if metadata.get(name) != value
    ]
    if differences:
        raise ProjectorMismatchError(
            f"projector file {path} does not match the model's projector: {'; '.join(differences)}; "
            "use the stage-1 file trained with the same projector_type and scale_factor"
        )
    foreign = sorted(k for k in weights if not k.startswith(PROJECTOR_PREFIX))
    if foreign:
        raise ProjectorMismatchError(
            f"projector file {path} holds non-projector keys, e.g. {', '.join(foreign[:3])}"
        )
    state = {k.removeprefix(PROJECTOR_PREFIX): v for k, v in weights.items()}
    try:
        load_strict(model.projector, state, f"projector file {path}")
    except CheckpointError as error:
        raise ProjectorMismatchError(str(error)) from None
