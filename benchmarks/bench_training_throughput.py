"""Stage-2 training throughput of the tiny model: MLP projector vs TokenPacker at s = 2, 3, 4.

Each variant trains as in stage 2 (vision tower frozen, projector + LLM trained; forward,
backward, AdamW step) on the same LLaVA-format samples, built by the suite's own data code.
The variants take turns, step by step, so load from other processes hits all of them alike;
throughput is batch size / fastest step time (as `timeit` advises: slower repeats measure the
other processes on the machine, not the code). Prints samples/s and each speed-up over the MLP
beside its visual-token ratio.

Run: `.venv/bin/python benchmarks/bench_training_throughput.py [--steps 12] [--threads 1]`.
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

VARIANTS = (("mlp2x_gelu", 1), ("tokenpacker", 2), ("tokenpacker", 3), ("tokenpacker", 4))
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


@dataclass
class Variant:
    label: str
    visual_tokens: int
    sequence_length: int
    model: TokenPackerForCausalLM
    optimizer: torch.optim.Optimizer
    batch: dict[str, torch.Tensor]
    step_seconds: list[float]

    def train_step(self) -> None:
        started = time.perf_counter()
        self.model(**self.batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step_seconds.append(time.perf_counter() - started)


def write_instruction_data(folder: Path, samples: int) -> Path:
    """Stage-2 style LLaVA JSON: one 48 px image and a two-turn chat per sample."""
    (folder / "images").mkdir(parents=True)
    records = []
    for index in range(samples):
        colour = list(COLOURS)[index % len(COLOURS)]
        image = Image.new("RGB", (48, 48), (250, 250, 250))
        ImageDraw.Draw(image).ellipse((8 + index % 8, 10, 36, 40), fill=COLOURS[colour])
        image.save(folder / "images" / f"{index}.png")
        records.append(
            {
                "id": str(index),
                "image": f"{index}.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is the colour of the shape in the image?"},
                    {"from": "gpt", "value": f"The shape is {colour}."},
                    {"from": "human", "value": "How many shapes are there?"},
                    {"from": "gpt", "value": "There is one shape."},
                ],
            }
        )
    path = folder / "stage2.json"
    path.write_text(json.dumps(records))
    return path


def prepare(projector_type: str, scale_factor: int, data: Path, batch_size: int) -> Variant:
    model, processor = build_model(ModelRecipe(projector_type=projector_type, scale_factor=scale_factor))
    set_trained_parts(model, stage=2)
    model.train()
    dataset = LlavaDataset(data, data.parent / "images", processor, "vicuna_v1", 4096)
    batch = MultimodalCollator(processor.tokenizer.pad_token_id)([dataset[i] for i in range(batch_size)])
    return Variant(
        label=projector_type if projector_type == "mlp2x_gelu" else f"{projector_type} s={scale_factor}",
        visual_tokens=model.config.tokens_per_crop(),
        sequence_length=batch["input_ids"].shape[1],
        model=model,
        optimizer=torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5),
        batch=batch,
        step_seconds=[],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        data = write_instruction_data(Path(folder), args.batch_size)
        variants = [prepare(name, scale, data, args.batch_size) for name, scale in VARIANTS]
    for _ in range(args.warmup):
        for variant in variants:
            variant.train_step()
    for variant in variants:
        variant.step_seconds.clear()
    for _ in tqdm(range(args.steps), desc="timed rounds"):
        for variant in variants:
            variant.train_step()
    speeds = [args.batch_size / min(v.step_seconds) for v in variants]
    mlp = variants[0]
    print(
        f"stage-2 training throughput, tiny model, batch {args.batch_size}, {args.threads} CPU threads, "
        f"fastest of {args.steps} steps"
    )
    print(
        f"{'projector':<17}{'visual tokens':>14}{'token ratio':>13}{'seq len':>9}{'samples/s':>11}{'speed-up':>10}"
    )
    for variant, speed in zip(variants, speeds, strict=True):
        print(
            f"{variant.label:<17}{variant.visual_tokens:>14}{variant.visual_tokens / mlp.visual_tokens:>13.3f}"
            f"{variant.sequence_length:>9}{speed:>11.2f}{speed / speeds[0]:>9.2f}x"
        )


if __name__ == "__main__":
    main()
