"""What `cache_images` saves a stage-1 step of the tiny model once its images have been seen.

Stage 1 of the tiny recipe sees the default world's 2000 caption images several times (300 steps
of 16 are 2.4 epochs). With `cache_images` the data set keeps each image's crops and the frozen
tower each crop's features after the first epoch, so a later step skips decoding, resizing and the
tower. For each projector (the MLP, TokenPacker s = 4, TokenPacker-HD patch_num 9 on 192 px images,
its full 3 x 3 grid) both settings train as in stage 1 (projector only: forward, backward, AdamW step) on batches
drawn by the suite's own data code and collator, the data set's items included in the timing. Both
have seen every image once; they then take turns, step by step, so load from other processes hits
both alike; each figure is the fastest step (as `timeit` advises). Prints seconds per step and the
speed-up.

Run: `.venv/bin/python benchmarks/bench_image_cache.py [--steps 10] [--batch_size 16] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from tokenpacker.modeling import TokenPackerForCausalLM
from training.collator import MultimodalCollator
from training.data import LlavaDataset
from training.model import build_model, set_trained_parts
from training.recipe import ModelRecipe

VARIANTS = (("mlp2x_gelu", 1, None), ("tokenpacker", 4, None), ("tokenpacker", 4, 9))
IMAGE_SIDE = 192  # the tiny world's largest canvas
TINY_RECIPE_PATCH = 4  # training/recipes/tiny.yaml's 12 x 12 grid: 144 tokens for the MLP, 9 at s = 4


@dataclass
class Setting:
    model: TokenPackerForCausalLM
    dataset: LlavaDataset
    collate: MultimodalCollator
    optimizer: torch.optim.Optimizer
    step_seconds: list[float]

    def train_step(self, indices: list[int]) -> None:
        started = time.perf_counter()
        batch = self.collate([self.dataset[i] for i in indices])
        self.model(**batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_seconds.append(time.perf_counter() - started)


def write_captions(folder: Path, samples: int) -> Path:
    """Stage-1 style LLaVA JSON: one 192 px image of a shape and a caption per sample."""
    (folder / "images").mkdir(parents=True)
    records = []
    for index in range(samples):
        image = Image.new("RGB", (IMAGE_SIDE, IMAGE_SIDE), (28, 28, 28))
        corner = 10 + 7 * index % 120
        ImageDraw.Draw(image).rectangle((corner, corner, corner + 50, corner + 40), fill=(220, 30, 30))
        image.save(folder / "images" / f"{index}.png")
        records.append(
            {
                "id": str(index),
                "image": f"{index}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nDescribe the image briefly."},
                    {"from": "gpt", "value": "A large red square."},
                ],
            }
        )
    path = folder / "stage1.json"
    path.write_text(json.dumps(records))
    return path


def prepare(recipe: ModelRecipe, data: Path, cache: bool) -> Setting:
    """A fresh tiny model set up for stage 1, with its data set, both caching or neither."""
    model, processor = build_model(recipe)
    set_trained_parts(model, stage=1)
    model.train()
    model.vision_tower.remember_features(cache)
    dataset = LlavaDataset(data, data.parent / "images", processor, "plain", 2048, cache_images=cache)
    return Setting(
        model=model,
        dataset=dataset,
        collate=MultimodalCollator(processor.tokenizer.pad_token_id),
        optimizer=torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3),
        step_seconds=[],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"stage-1 step of the tiny model after one epoch, batch {args.batch_size}, {IMAGE_SIDE} px images, "
        f"{args.threads} CPU threads, fastest of {args.steps} steps"
    )
    print(f"{'projector':<22}{'crops/step':>11}{'plain s':>9}{'cached s':>10}{'speed-up':>10}")
    with tempfile.TemporaryDirectory() as folder:
        data = write_captions(Path(folder), args.batch_size * args.steps)
        batches = [
            list(range(i, i + args.batch_size))
            for i in range(0, args.batch_size * args.steps, args.batch_size)
        ]
        for projector, scale, patch_num in VARIANTS:
            recipe = ModelRecipe(
                projector_type=projector,
                scale_factor=scale,
                patch_num=patch_num,
                tiny_patch_size=TINY_RECIPE_PATCH,
            )
            plain, cached = prepare(recipe, data, cache=False), prepare(recipe, data, cache=True)
            for indices in batches:  # the first epoch, untimed: fills the caches
                cached.train_step(indices)
            cached.step_seconds.clear()
            for indices in tqdm(batches, desc=f"{projector} s={scale} hd={patch_num}", leave=False):
                plain.train_step(indices)
                cached.train_step(indices)
            crops = sum(len(cached.dataset[i]["pixel_values"]) for i in batches[0])
            fastest = min(plain.step_seconds), min(cached.step_seconds)
            label = (
                projector
                if scale == 1
                else f"{projector} s={scale}" + (f" HD {patch_num}" if patch_num else "")
            )
            print(
                f"{label:<22}{crops:>11}{fastest[0]:>9.3f}{fastest[1]:>10.3f}{fastest[0] / fastest[1]:>9.2f}x"
            )


if __name__ == "__main__":
    main()
