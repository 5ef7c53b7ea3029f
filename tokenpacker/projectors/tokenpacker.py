"""TokenPacker: coarse point queries attend to their fine multi-level region (DESIGN 1.2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tokenpacker.projectors.base import Projector, ProjectorSpec, gelu_mlp, to_grid, weight_std


def attention_heads(width: int) -> int:
    """C/128 heads as in the original (8 at C=1024); at least one for tiny widths."""
    return max(1, width // 128)


def regions_to_batch(tokens: torch.Tensor, grid: int, scale: int) -> torch.Tensor:
    """(B, g*g, C) -> (B * g'^2, s*s, C): each region's s x s tokens in row-major order."""
    batch, _, channels = tokens.shape
    coarse = grid // scale
    regions = tokens.reshape(batch, coarse, scale, coarse, scale, channels)
    return regions.permute(0, 1, 3, 2, 4, 5).reshape(batch * coarse * coarse, scale * scale, channels)


class RegionToPointAttention(nn.Module):
    """Multi-head attention with nn.MultiheadAttention's packed parameters, run on all regions at once."""

    def __init__(self, width: int, num_heads: int) -> None:
        super().__init__()
        if width % num_heads != 0:
            raise ValueError(f"attention width {width} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """query (R, 1, C), key/value (R, s*s, C) -> (R, 1, C), R = batch * regions."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        q, k, v = (
            self.split_heads(F.linear(x, w, b))
            for x, w, b in ((query, w_q, b_q), (key, w_k, b_k), (value, w_v, b_v))
        )
        attended = F.scaled_dot_product_attention(q, k, v)  # (R, heads, 1, d)
        regions, heads, length, head_dim = attended.shape
        return self.out_proj(attended.transpose(1, 2).reshape(regions, length, heads * head_dim))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        regions, length, width = x.shape
        return x.reshape(regions, length, self.num_heads, width // self.num_heads).transpose(1, 2)


class TokenPackerProjector(Projector):
    """Emits (g/s)^2 tokens: each a point query refined by attention over its s x s fine region."""

    def __init__(self, spec: ProjectorSpec, num_heads: int | None = None) -> None:
        super().__init__(spec)
        width = spec.vision_width
        self.point_query_proj = nn.Linear(width, width, bias=False)
        self.key_mlp = gelu_mlp(spec.multi_level_width, width)
        self.value_mlp = gelu_mlp(spec.multi_level_width, width)
        self.query_norm = nn.LayerNorm(width, eps=1e-6)
        self.key_norm = nn.LayerNorm(width, eps=1e-6)
        self.value_norm = nn.LayerNorm(width, eps=1e-6)
        self.region_attention = RegionToPointAttention(width, num_heads or attention_heads(width))
        self.output_mlp = gelu_mlp(width, spec.llm_width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        weights = self.region_attention.in_proj_weight
        nn.init.trunc_normal_(weights, std=weight_std(self.spec, weights.shape[1], attention=True))
        nn.init.zeros_(self.region_attention.in_proj_bias)

    def project(self, features: torch.Tensor, multi_level_features: torch.Tensor) -> torch.Tensor:
        grid, scale = self.spec.grid, self.spec.scale_factor
        coarse = grid // scale
        batch = features.shape[0]
        # Coarse point queries: bilinear downsampling in float32, as the original does.
        points = F.interpolate(
            to_grid(features, grid).float(), size=(coarse, coarse), mode="bilinear", align_corners=False
        )
        points = points.flatten(2).transpose(1, 2).to(features.dtype)  # (B, g'^2, C)
        query = self.query_norm(self.point_query_proj(points))
        key = self.key_norm(self.key_mlp(multi_level_features))  # (B, g*g, C)
        value = self.value_norm(self.value_mlp(multi_level_features))
        packed = self.region_attention(
            query.reshape(batch * coarse * coarse, 1, -1),
            regions_to_batch(key, grid, scale),
            regions_to_batch(value, grid, scale),
        )
        return self.output_mlp(packed.reshape(batch, coarse * coarse, -1))
