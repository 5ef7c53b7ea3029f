"""LLaVA-1.5's baseline: every patch token through a 2-layer GELU MLP."""

from __future__ import annotations

import torch

from tokenpacker.projectors.base import Projector, ProjectorSpec, gelu_mlp


class MLPProjector(Projector):
    """mlp2x_gelu: g*g tokens, no compression (scale_factor is ignored and must be 1)."""

    def __init__(self, spec: ProjectorSpec) -> None:
        if spec.scale_factor != 1:
            raise ValueError(f"mlp2x_gelu keeps all tokens: scale_factor must be 1, got {spec.scale_factor}")
        super().__init__(spec)
        self.mlp = gelu_mlp(spec.vision_width, spec.llm_width)
        self.reset_parameters()

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        return self.mlp(features)
