"""Stage-2 training throughput of the tiny model: MLP projector vs TokenPacker at s = 2, 3, 4.

Each variant trains (forward, backward, AdamW step; vision tower frozen, projector + LLM
trained, as in stage 2) on the same LLaVA-format batches built by the suite's own data code,
after warm-up steps. Prints samples/s and each speed-up over the MLP beside its visual-token
ratio. Run: `.venv/bin/python benchmarks/bench_training_throughput.py [--steps 10]`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from training.collator import MultimodalCollator
from training.data import LlavaDataset
from training.model import build_model, set_trained_parts
from training.recipe import ModelRecipe

VARIANTS = (("mlp2x_gelu", 1), ("tokenpacker", 2), ("tokenpacker", 3), ("tokenpacker", 4))
COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def write_instruction_data(folder: Path, samples: int) -> Path:
    """A stage-2 style LLaVA JSON: one 48 px image and a two-turn chat per sample."""
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


def samples_per_second(projector_type: str, scale_factor: int, data: Path, batch_size: int, steps: int,
                       warmup: int) -> tuple[float, int]:
    """(samples/s over `steps` timed steps, sequence length of a sample)."""
    model, processor = build_model(ModelRecipe(projector_type=projector_type, scale_factor=scale_factor))
    set_trained_parts(model, stage=2)
    model.train()
    dataset = LlavaDataset(data, data.parent / "images", processor, "vicuna_v1", 4096)
    collate = MultimodalCollator(processor.tokenizer.pad_token_id)
    batches = [collate([dataset[(step * batch_size + i) % len(dataset)] for i in range(batch_size)])
               for step in range(warmup + steps)]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-5)
    for step, batch in enumerate(tqdm(batches, desc=f"{projector_type} s={scale_factor}", leave=False)):
        if step == warmup:
            started = time.perf_counter()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * batch_size / (time.perf_counter() - started), dataset.lengths[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        data = write_instruction_data(Path(folder), args.batch_size * 2)
        results = {
            (name, scale): samples_per_second(name, scale, data, args.batch_size, args.steps, args.warmup)
            for name, scale in VARIANTS
        }
    mlp_speed, _ = results[VARIANTS[0]]
    mlp_tokens = ModelRecipe(projector_type="mlp2x_gelu")
    print(f"stage-2 training throughput, tiny model, batch {args.batch_size}, {args.threads} CPU threads, "
          f"{args.steps} timed steps")
    print(f"{'projector':<16}{'visual tokens':>14}{'token ratio':>13}{'seq len':>9}{'samples/s':>11}{'speed-up':>10}")
    for (name, scale), (speed, length) in results.items():
        tokens = visual_tokens(name, scale)
        label = name if name == "mlp2x_gelu" else f"{name} s={scale}"
        print(f"{label:<16}{tokens:>14}{tokens / visual_tokens('mlp2x_gelu', 1):>13.3f}{length:>9}"
              f"{speed:>11.2f}{speed / mlp_speed:>9.2f}x")
    del mlp_tokens


def visual_tokens(projector_type: str, scale_factor: int) -> int:
    from tokenpacker.tiny import tiny_config

    return tiny_config(projector_type, scale_factor).tokens_per_crop()


if __name__ == "__main__":
    main()
