"""The frozen vision tower's forward, running only the layers whose hidden states are read, against
CLIPVisionModel's full forward with output_hidden_states (LLaVA's way), for the tiny tower the sweep
uses and for CLIP ViT-L/14 at 336 px (random weights: the cost does not depend on them).

With select layer -2 and multi-level layers that stop at it, the last layer's output is never read:
one layer of 6 in the tiny tower, one of 24 in CLIP-L. The two ways take turns, so load from other
processes hits both alike; each figure is the fastest of the repeats. Also checks the features are the
same, bit for bit.

Run: `.venv/bin/python benchmarks/bench_vision_tower.py [--repeats 10] [--clip-repeats 3] [--threads 1]`
(under a minute on 2 cores, most of it CLIP-L's 4 s forwards).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from transformers import CLIPVisionConfig

from tokenpacker.tiny import tiny_config
from tokenpacker.vision import CLIP_VIT_L_14_336, VisionTower

Features = tuple[torch.Tensor, torch.Tensor]


def full_forward(tower: VisionTower, pixels: torch.Tensor) -> Features:
    """Every layer run, as CLIPVisionModel(..., output_hidden_states=True) does."""
    return tower.features(tower.clip(pixels, output_hidden_states=True).hidden_states)


def fastest_seconds(runs: dict[str, Callable[[], Features]], repeats: int) -> dict[str, float]:
    """Fastest of `repeats` calls of each run, the runs taking turns after one warm-up call each."""
    best = dict.fromkeys(runs, float("inf"))
    for run in runs.values():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def measure(label: str, config: CLIPVisionConfig, layers: list[int], batch: int, repeats: int) -> None:
    torch.manual_seed(0)
    tower = VisionTower(config, -2, layers).eval()
    pixels = torch.randn(batch, 3, config.image_size, config.image_size)
    same = all(torch.equal(a, b) for a, b in zip(tower(pixels), full_forward(tower, pixels), strict=True))
    best = fastest_seconds(
        {"read": lambda: tower(pixels), "full": lambda: full_forward(tower, pixels)}, repeats
    )
    print(
        f"{label}: {tower.depth} of {config.num_hidden_layers} layers run, batch {batch}: "
        f"{best['read'] * 1e3:.1f} ms against {best['full'] * 1e3:.1f} ms for every layer "
        f"({best['read'] / best['full']:.2f}x the time; features identical: {same})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of each way, tiny tower")
    parser.add_argument("--clip-repeats", type=int, default=3, help="timed calls of each way, CLIP-L")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a sweep cell uses 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tiny = tiny_config("tokenpacker", 2, patch_size=4)
    measure("tiny tower (12x12 patches)", tiny.vision_config, tiny.multi_level_layers, 16, args.repeats)
    measure(
        "CLIP ViT-L/14-336", CLIPVisionConfig(**CLIP_VIT_L_14_336), [12, 16, 22, 23], 1, args.clip_repeats
    )


if __name__ == "__main__":
    main()
