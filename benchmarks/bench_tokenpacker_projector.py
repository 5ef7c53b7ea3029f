"""TokenPacker projector forward at the real 7B shapes: the suite's batched region attention
against straightforward formulations, timed in one run.

Shapes: batch 8, 576 single-level features of width 1024, 576 multi-level features of width
4096 (four CLIP-L layers), LLM width 4096, fp32 on the CPU. Baselines, same weights:
  per-region  -- the original algorithm with one nn.MultiheadAttention call per (image, region);
  unfolded    -- one nn.MultiheadAttention call over all regions unfolded into its batch.
Prints median times, speed ratios and the max absolute difference of the outputs.

    python benchmarks/bench_tokenpacker_projector.py [--batch 8] [--scale 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tokenpacker.projectors import ProjectorSpec
from tokenpacker.projectors.base import to_grid
from tokenpacker.projectors.tokenpacker import TokenPackerProjector, regions_to_batch

GRID = 24


def multihead_attention_from(projector: TokenPackerProjector) -> nn.MultiheadAttention:
    """The original's nn.MultiheadAttention holding the projector's attention weights."""
    width = projector.spec.vision_width
    attention = nn.MultiheadAttention(width, projector.region_attention.num_heads)
    attention.load_state_dict(projector.region_attention.state_dict())
    return attention.eval()


def queries_keys_values(projector: TokenPackerProjector, x: torch.Tensor, x_multi: torch.Tensor):
    coarse = GRID // projector.spec.scale_factor
    points = F.interpolate(to_grid(x, GRID), size=(coarse, coarse), mode="bilinear", align_corners=False)
    query = projector.query_norm(projector.point_query_proj(points.flatten(2).transpose(1, 2)))
    key = projector.key_norm(projector.key_mlp(x_multi))
    value = projector.value_norm(projector.value_mlp(x_multi))
    return query, key, value


def per_region(projector: TokenPackerProjector, attention: nn.MultiheadAttention) -> Callable:
    scale = projector.spec.scale_factor

    def forward(x: torch.Tensor, x_multi: torch.Tensor) -> torch.Tensor:
        query, key, value = queries_keys_values(projector, x, x_multi)
        keys, values = regions_to_batch(key, GRID, scale), regions_to_batch(value, GRID, scale)
        flat_query = query.reshape(-1, 1, query.shape[-1])
        packed = torch.stack(
            [
                attention(flat_query[r].unsqueeze(1), keys[r].unsqueeze(1), values[r].unsqueeze(1))[0][0, 0]
                for r in range(flat_query.shape[0])
            ]
        )
        return projector.output_mlp(packed.reshape(query.shape))

    return forward


def unfolded(projector: TokenPackerProjector, attention: nn.MultiheadAttention) -> Callable:
    scale = projector.spec.scale_factor

    def forward(x: torch.Tensor, x_multi: torch.Tensor) -> torch.Tensor:
        query, key, value = queries_keys_values(projector, x, x_multi)
        keys = regions_to_batch(key, GRID, scale).transpose(0, 1)  # (s*s, R, C), sequence first
        values = regions_to_batch(value, GRID, scale).transpose(0, 1)
        packed = attention(query.reshape(1, -1, query.shape[-1]), keys, values)[0]
        return projector.output_mlp(packed.reshape(query.shape))

    return forward


def median_seconds(
    forward: Callable, inputs: tuple[torch.Tensor, ...], runs: int
) -> tuple[float, torch.Tensor]:
    output = forward(*inputs)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        output = forward(*inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    spec = ProjectorSpec(
        vision_width=1024, multi_level_width=4096, llm_width=4096, grid=GRID, scale_factor=args.scale
    )
    projector = TokenPackerProjector(spec).eval()
    attention = multihead_attention_from(projector)
    inputs = (torch.randn(args.batch, GRID * GRID, 1024), torch.randn(args.batch, GRID * GRID, 4096))
    print(
        f"TokenPacker s={args.scale}, batch {args.batch}, 576x1024 + 576x4096 -> {projector.num_tokens(GRID)}x4096, "
        f"fp32, {torch.get_num_threads()} threads, median of {args.runs}"
    )
    with torch.inference_mode():
        suite_time, suite_out = median_seconds(projector, inputs, args.runs)
        print(f"  suite (batched SDPA)        {suite_time * 1e3:9.1f} ms")
        for name, build in (("per-region nn.MHA loop", per_region), ("unfolded nn.MHA", unfolded)):
            seconds, output = median_seconds(build(projector, attention), inputs, args.runs)
            difference = (output - suite_out).abs().max().item()
            print(
                f"  {name:<27} {seconds * 1e3:9.1f} ms   suite is {seconds / suite_time:5.2f}x faster, "
                f"max |diff| {difference:.2e}"
            )


if __name__ == "__main__":
    main()
