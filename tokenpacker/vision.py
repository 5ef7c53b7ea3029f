"""The frozen CLIP vision tower: single-level and multi-level patch features (DESIGN 1.1)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

# CLIP ViT-L/14 at 336 px, the tower of LLaVA-1.5 and TokenPacker (the released config's fields).
CLIP_VIT_L_14_336: Mapping[str, object] = MappingProxyType(
    {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 336,
        "patch_size": 14,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
    }
)


def patch_grid(vision_config: CLIPVisionConfig) -> int:
    """g of the g x g patch grid (24 for ViT-L/14 at 336 px)."""
    if vision_config.image_size % vision_config.patch_size != 0:
        raise ValueError(
            f"image_size {vision_config.image_size} is not a multiple of patch_size {vision_config.patch_size}"
        )
    return vision_config.image_size // vision_config.patch_size


def check_layer_indices(select_layer: int, multi_level_layers: Sequence[int], num_layers: int) -> None:
    """hidden_states has num_layers + 1 entries (embeddings first); indices must fall inside it."""
    valid = range(-(num_layers + 1), num_layers + 1)
    for name, index in [("vision_select_layer", select_layer)] + [
        ("multi_level_layers", i) for i in multi_level_layers
    ]:
        if index not in valid:
            raise ValueError(
                f"{name} index {index} is outside the {num_layers + 1} hidden states of a "
                f"{num_layers}-layer vision tower; allowed: {valid.start}..{valid.stop - 1}"
            )
    if not multi_level_layers:
        raise ValueError(
            "multi_level_layers is empty; give at least one hidden-state index, e.g. [12, 16, 22, 23]"
        )


class VisionTower(nn.Module):
    """Wraps HF CLIPVisionModel; frozen and run without autograd in both training stages."""

    def __init__(
        self,
        vision_config: CLIPVisionConfig,
        select_layer: int = -2,
        multi_level_layers: Sequence[int] = (12, 16, 22, 23),
    ) -> None:
        super().__init__()
        check_layer_indices(select_layer, multi_level_layers, vision_config.num_hidden_layers)
        self.clip = CLIPVisionModel(vision_config)
        states = vision_config.num_hidden_layers + 1
        self.select_layer = select_layer % states
        self.multi_level_layers = tuple(i % states for i in multi_level_layers)
        self.depth = max(self.select_layer, *self.multi_level_layers)
        self.grid = patch_grid(vision_config)
        self.requires_grad_(False)
        self.memo: dict[bytes, tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def width(self) -> int:
        return self.clip.config.hidden_size

    @property
    def multi_level_width(self) -> int:
        return self.width * len(self.multi_level_layers)

    def remember_features(self, enabled: bool = True) -> None:
        """Keep each crop's features after its first pass, keyed by its pixels (off: forget them).

        The tower is frozen, so a crop seen again (each epoch of a small world's stage 1) needs a
        lookup, not a pass. Memory grows with the crops seen: (1 + levels) * g*g * C floats each,
        0.18 MB for the tiny recipe's tower (2.4 GB for the 13222 crops of TokenPacker-HD's stage 1
        on the default synthetic world), on the tower's device, so this is for small worlds only.
        """
        self.memo = {} if enabled else None

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, S, S) -> single-level (N, g*g, C) and multi-level (N, g*g, C * len(layers)), CLS dropped."""
        if self.memo is None:
            return self.features(self.hidden_states(pixel_values))
        return self.remembered_features(pixel_values)

    def remembered_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward's features through the memo: crops not in it pass through the tower, in one batch."""
        on_host = pixel_values.detach().cpu()  # one copy a batch, not one a crop
        keys = [crop_key(crop, pixel_values.device) for crop in on_host]
        missing = list({key: index for index, key in enumerate(keys) if key not in self.memo}.values())
        if missing:
            single, multi = self.features(self.hidden_states(pixel_values[missing]))
            for index, one, many in zip(missing, single, multi, strict=True):
                self.memo[keys[index]] = (one.clone(), many.clone())
        singles, multis = zip(*(self.memo[key] for key in keys), strict=True)
        return torch.stack(singles), torch.stack(multis)

    def features(self, hidden_states: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The single- and multi-level features read from a list of hidden states, CLS dropped."""
        single = hidden_states[self.select_layer][:, 1:]
        multi = torch.cat([hidden_states[i][:, 1:] for i in self.multi_level_layers], dim=-1)
        return single, multi

    def hidden_states(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """CLIPVisionModel's hidden_states up to the deepest one read (indices made non-negative in
        __init__): the layers after it (CLIP-L's 24th for select layer -2, a sixth of the tiny tower)
        would be computed only to be dropped."""
        clip = self.clip
        dtype = clip.embeddings.patch_embedding.weight.dtype
        states = [clip.pre_layrnorm(clip.embeddings(pixel_values.to(dtype)))]
        for layer in clip.encoder.layers[: self.depth]:
            states.append(layer(states[-1], None))
        return states


def crop_key(crop: torch.Tensor, device: torch.device) -> bytes:
    """A digest of one crop's dtype, shape and pixels (a host copy, made once a batch by the caller),
    and the device its features are kept on (replicas of a data-parallel model share one memo)."""
    pixels = crop.contiguous().flatten().view(torch.uint8).numpy().tobytes()
    header = f"{crop.dtype}{tuple(crop.shape)}{device}".encode()
    return hashlib.blake2b(header + pixels, digest_size=16).digest()
