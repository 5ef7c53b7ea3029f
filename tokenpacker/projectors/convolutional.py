"""Convolutional baselines that keep locality: Honeybee's C-Abstractor and MobileVLM V2's LDPv2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenpacker.projectors.base import Projector, ProjectorSpec, from_grid, gelu_mlp, to_grid


class ResidualBottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convolutions with a residual: the ResNet block Honeybee stacks."""

    def __init__(self, width: int) -> None:
        super().__init__()
        inner = max(1, width // 4)
        self.body = nn.Sequential(
            nn.Conv2d(width, inner, 1, bias=False),
            nn.GroupNorm(1, inner),
            nn.SiLU(),
            nn.Conv2d(inner, inner, 3, padding=1, bias=False),
            nn.GroupNorm(1, inner),
            nn.SiLU(),
            nn.Conv2d(inner, width, 1, bias=False),
            nn.GroupNorm(1, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x + self.body(x))


class CAbstractorProjector(Projector):
    """ResNet blocks -> adaptive average pool to g/s -> ResNet blocks -> MLP: (g/s)^2 tokens."""

    def __init__(self, spec: ProjectorSpec, depth: int = 3) -> None:
        super().__init__(spec)
        width = spec.vision_width
        self.before_pool = nn.Sequential(*(ResidualBottleneck(width) for _ in range(depth)))
        self.pool = nn.AdaptiveAvgPool2d(spec.grid // spec.scale_factor)
        self.after_pool = nn.Sequential(*(ResidualBottleneck(width) for _ in range(depth)))
        self.output_mlp = gelu_mlp(width, spec.llm_width)
        self.reset_parameters()

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        x = self.after_pool(self.pool(self.before_pool(to_grid(features, self.spec.grid))))
        return self.output_mlp(from_grid(x))


class LDPv2Projector(Projector):
    """MobileVLM V2: MLP to LLM width, average pool to g/s, depthwise 3x3 conv with a residual."""

    def __init__(self, spec: ProjectorSpec) -> None:
        super().__init__(spec)
        self.mlp = gelu_mlp(spec.vision_width, spec.llm_width)
        self.pool = nn.AdaptiveAvgPool2d(spec.grid // spec.scale_factor)
        self.position_conv = nn.Conv2d(spec.llm_width, spec.llm_width, 3, padding=1, groups=spec.llm_width)
        self.reset_parameters()

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(to_grid(self.mlp(features), self.spec.grid))
        return from_grid(pooled + self.position_conv(pooled))
