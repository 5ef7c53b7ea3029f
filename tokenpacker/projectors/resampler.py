"""Qwen-VL style resampler: learned queries cross-attend to all patch tokens."""

from __future__ import annotations

import torch
from torch import nn

from tokenpacker.projectors.base import Projector, ProjectorSpec, gelu_mlp, weight_std
from tokenpacker.projectors.tokenpacker import attention_heads


def sincos_position_embedding(width: int, grid: int) -> torch.Tensor:
    """Fixed 2D sin-cos embedding (g*g, width), half the channels for rows and half for columns."""
    if width % 4 != 0:
        raise ValueError(f"resampler width {width} must be divisible by 4 for 2D sin-cos positions")
    quarter = width // 4
    frequencies = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)
    coords = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")

    def encode(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * frequencies
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


class ResamplerProjector(Projector):
    """(g/s)^2 learned queries (with 2D positions) attend over all g*g tokens, then the MLP."""

    def __init__(self, spec: ProjectorSpec) -> None:
        super().__init__(spec)
        width, coarse = spec.vision_width, spec.grid // spec.scale_factor
        self.queries = nn.Parameter(torch.empty(coarse * coarse, width))
        self.register_buffer("query_positions", sincos_position_embedding(width, coarse), persistent=False)
        self.register_buffer("key_positions", sincos_position_embedding(width, spec.grid), persistent=False)
        self.kv_proj = nn.Linear(width, width, bias=False)
        self.query_norm = nn.LayerNorm(width, eps=1e-6)
        self.kv_norm = nn.LayerNorm(width, eps=1e-6)
        self.attention = nn.MultiheadAttention(width, attention_heads(width), batch_first=True)
        self.output_norm = nn.LayerNorm(width, eps=1e-6)
        self.output_mlp = gelu_mlp(width, spec.llm_width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        width = self.queries.shape[-1]
        nn.init.trunc_normal_(self.queries, std=weight_std(self.spec, width, attention=True))
        nn.init.trunc_normal_(self.attention.in_proj_weight, std=weight_std(self.spec, width, attention=True))
        nn.init.zeros_(self.attention.in_proj_bias)

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        keys = self.kv_norm(self.kv_proj(features))
        queries = self.query_norm(self.queries).expand(features.shape[0], -1, -1)
        attended, _ = self.attention(
            queries + self.query_positions.to(queries.dtype),
            keys + self.key_positions.to(keys.dtype),
            keys,
            need_weights=False,
        )
        return self.output_mlp(self.output_norm(attended))
