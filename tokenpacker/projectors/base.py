"""The one interface every projector honours, and the shape checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ProjectorSpec:
    """Widths and grid a projector is built for; never hard-coded so tiny models work too.

    vision_width: C of the single-level features; multi_level_width: channels of the
    concatenated multi-level features; llm_width: H of the LLM; grid: g of the g x g patch
    grid; scale_factor: s, the side of the region folded into one token (1 keeps all).
    """

    vision_width: int
    multi_level_width: int
    llm_width: int
    grid: int
    scale_factor: int = 1
    # DESIGN 1.2.5's std for linear weights; None scales it by fan-in (see `weight_std`)
    init_std: float | None = 0.02

    def __post_init__(self) -> None:
        check_scale_factor(self.scale_factor, self.grid)


def allowed_scale_factors(grid: int) -> list[int]:
    return [s for s in range(1, grid + 1) if grid % s == 0]


def check_scale_factor(scale_factor: int, grid: int) -> None:
    """Raise where a bad scale_factor is first seen, naming what would work."""
    if not isinstance(scale_factor, int) or scale_factor < 1 or grid % scale_factor != 0:
        raise ValueError(
            f"scale_factor={scale_factor!r} does not divide the {grid}x{grid} patch grid; "
            f"allowed: {allowed_scale_factors(grid)}"
        )


def weight_std(spec: ProjectorSpec, fan_in: int, attention: bool = False) -> float:
    """DESIGN 1.2.5's fixed std, or with `init_std=None` the scale of PyTorch's own defaults as a
    truncated normal: (3 fan_in)^-1/2 for linear layers, fan_in^-1/2 for attention projections
    (nn.MultiheadAttention's Xavier init)."""
    if spec.init_std is not None:
        return spec.init_std
    return fan_in**-0.5 if attention else (3 * fan_in) ** -0.5


def init_projector_weights(module: nn.Module, spec: ProjectorSpec) -> None:
    """DESIGN 1.2.5: truncated normal linear weights (`weight_std`), zero biases, unit norms."""
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)):
            nn.init.trunc_normal_(sub.weight, std=weight_std(spec, sub.weight[0].numel()))
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, (nn.LayerNorm, nn.GroupNorm)):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)


class Projector(nn.Module, ABC):
    """Maps (single-level (B, g*g, C), multi-level (B, g*g, C_ml)) features to (B, T, H) tokens."""

    def __init__(self, spec: ProjectorSpec) -> None:
        super().__init__()
        self.spec = spec

    def reset_parameters(self) -> None:
        """Projector init of DESIGN 1.2.5; subclasses with bare Parameters extend it."""
        init_projector_weights(self, self.spec)

    @classmethod
    def tokens_for(cls, spec: ProjectorSpec, grid: int) -> int:
        """Tokens emitted for one image whose patch grid is grid x grid: one per s x s region (s = 1 keeps
        all). A class method, so counting needs no built projector."""
        return (grid // spec.scale_factor) ** 2

    def num_tokens(self, grid: int) -> int:
        """Tokens emitted for one image whose patch grid is grid x grid."""
        return self.tokens_for(self.spec, grid)

    @abstractmethod
    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        """The projector's own computation on already-checked inputs."""

    def forward(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        self.check_features(features, multi_level_features)
        return self.project(features, multi_level_features)

    def check_features(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> None:
        g, spec = self.spec.grid, self.spec
        expected = {
            "features": (g * g, spec.vision_width),
            "multi_level_features": (g * g, spec.multi_level_width),
        }
        for name, tensor in (("features", features), ("multi_level_features", multi_level_features)):
            if tensor.dim() != 3 or tuple(tensor.shape[1:]) != expected[name]:
                raise ValueError(
                    f"{type(self).__name__} got {name} of shape {tuple(tensor.shape)}; expected "
                    f"(batch, {expected[name][0]}, {expected[name][1]}) for a {g}x{g} grid"
                )
        if features.shape[0] != multi_level_features.shape[0]:
            raise ValueError(
                f"features batch {features.shape[0]} != multi_level_features batch {multi_level_features.shape[0]}"
            )


def to_grid(tokens: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, g*g, C) row-major tokens -> (B, C, g, g) feature map."""
    batch, _, channels = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, channels, grid, grid)


def from_grid(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) feature map -> (B, h*w, C) row-major tokens."""
    return feature_map.flatten(2).transpose(1, 2)


def gelu_mlp(in_width: int, out_width: int) -> nn.Sequential:
    """LLaVA-1.5's mlp2x_gelu shape: Linear -> GELU -> Linear."""
    return nn.Sequential(nn.Linear(in_width, out_width), nn.GELU(), nn.Linear(out_width, out_width))
