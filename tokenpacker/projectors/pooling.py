"""Parameter-free token reduction followed by the MLP: the simplest baselines at TokenPacker's budgets."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tokenpacker.projectors.base import Projector, ProjectorSpec, from_grid, gelu_mlp, to_grid


class AvgPoolProjector(Projector):
    """Average-pool s x s regions, then mlp2x_gelu: (g/s)^2 tokens."""

    def __init__(self, spec: ProjectorSpec) -> None:
        super().__init__(spec)
        self.mlp = gelu_mlp(spec.vision_width, spec.llm_width)
        self.reset_parameters()

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(to_grid(features, self.spec.grid), self.spec.scale_factor)
        return self.mlp(from_grid(pooled))


class PixelShuffleProjector(Projector):
    """Space-to-depth by s (s*s*C channels per token), then mlp2x_gelu: (g/s)^2 tokens."""

    def __init__(self, spec: ProjectorSpec) -> None:
        super().__init__(spec)
        self.mlp = gelu_mlp(spec.vision_width * spec.scale_factor**2, spec.llm_width)
        self.reset_parameters()

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        stacked = F.pixel_unshuffle(to_grid(features, self.spec.grid), self.spec.scale_factor)
        return self.mlp(from_grid(stacked))
