"""Where a sweep's MMBench letters come from: the letter a cell's model writes after "<option> (",
teacher-forced on the world's syn_mmbench rotations (evaluation's prompt, the image in LLaVA's place).

Per finished cell, the share of rotations whose most likely letter (of A-D; chance 0.25) is:
- `own`: the right one, after the right option's text (what MMBench needs);
- `forced: copied` / `forced: looked up`: the forced option's / the true answer's, after another option's
  text (a seeded one of the three): whether the letter is copied from the option just named or worked
  out again from the image;
- `pooled to N`: the right one, with the cell's visual tokens average-pooled on their grid to N
  before the LLM (single-view cells with more than N tokens): whether the count of visual tokens is
  what the letters depend on.

Run: `.venv/bin/python benchmarks/bench_mmbench_letters.py SWEEP_FOLDER [--cells 'mlp*'] [--limit N]`.
Measured on two default sweeps of 2026-11-26 (208 rotations; about 15 s a cell on one core): every
model looks the letter up again rather than copying it (forced: looked up 0.29-0.83, copied
0.05-0.22). With stage 1 of 200 steps the MLP's LLM got the letter 0.29 from its own 144 tokens but
0.58 / 0.50 from them pooled to 36 / 9, and HD 0.42, against 0.67-0.82 for the 9-36-token models;
with 300 steps (the tiny recipe's) the MLP got 0.54 (pooled: 0.51 / 0.39), HD 0.57, the others 0.72-0.80.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import random
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from evaluation.model import question_with_images
from evaluation.sweep.runner import WORLD_FOLDER
from evaluation.sweep.stages import WorldPaths
from evaluation.synthetic.formats import OPTION_LETTERS, prompt
from evaluation.synthetic.world import EVAL_QUESTIONS_FILE
from tokenpacker.conversation import get_template
from tokenpacker.modeling import TokenPackerForCausalLM, default_attn_implementation
from tokenpacker.processing import TokenPackerProcessor, last_token_id
from tokenpacker.projectors.base import from_grid, to_grid

POOLED = (36, 9)
FORCED_SEED = 1


def mmbench_rows(sweep: Path) -> tuple[Path, list[dict]]:
    state = sweep / WORLD_FOLDER / "state.json"
    if not state.is_file():
        raise SystemExit(
            f"{sweep} holds no synthetic world ({state} is missing); give a sweep folder that has one"
        )
    world = WorldPaths.from_dict(sweep / WORLD_FOLDER, json.loads(state.read_text())["paths"])
    folder = Path(world.eval_root) / "syn_mmbench"
    lines = (folder / EVAL_QUESTIONS_FILE).read_text(encoding="utf-8").splitlines()
    return folder, [json.loads(line) for line in lines]


def pooled(tokens: torch.Tensor, count: int) -> torch.Tensor:
    """A square grid of visual tokens (T, H) average-pooled to `count` tokens, as avgpool would."""
    grid = to_grid(tokens[None], math.isqrt(tokens.shape[0]))
    return from_grid(F.adaptive_avg_pool2d(grid, math.isqrt(count)))[0]


class Cell:
    """One finished cell's model, and the teacher-forced next-letter choice it makes."""

    def __init__(self, checkpoint: Path) -> None:
        self.processor = TokenPackerProcessor.from_pretrained(checkpoint)
        self.model = TokenPackerForCausalLM.from_pretrained(
            checkpoint, dtype=torch.float32, attn_implementation=default_attn_implementation("cpu")
        ).eval()
        self.template = get_template(self.model.config.conversation_template)
        self.letters = [last_token_id(self.processor.tokenizer, letter) for letter in OPTION_LETTERS]

    @torch.inference_mode()
    def embeddings(self, row: dict, reply: str, image: Image.Image) -> tuple[torch.Tensor, slice | None]:
        """Input embeddings of evaluation's prompt followed by `reply (`, and where its visual tokens
        are when they are one block (a single view; HD's views are separated, so None)."""
        text = self.template.prompt(question_with_images(prompt("syn_mmbench", row), 1)) + f" {reply} ("
        preprocessed = self.processor.preprocess_image(image)
        ids = torch.tensor([self.processor.tokenize(text, [preprocessed])])
        visual = (ids[0] == self.model.config.image_token_id).nonzero().flatten()
        block = slice(int(visual[0]), int(visual[-1]) + 1)
        whole = block.stop - block.start == len(visual)
        return self.model.embed_multimodal(ids, preprocessed.crops)[0], block if whole else None

    @torch.inference_mode()
    def letter(self, embeddings: torch.Tensor) -> int:
        """The index (0-3) of the most likely letter to come next."""
        output = self.model.language_model(inputs_embeds=embeddings[None], use_cache=False, logits_to_keep=1)
        return int(output.logits[0, -1, self.letters].argmax())


def with_pooled_image(embeddings: torch.Tensor, block: slice, count: int) -> torch.Tensor:
    return torch.cat([embeddings[: block.start], pooled(embeddings[block], count), embeddings[block.stop :]])


def measure(cell: Cell, folder: Path, rows: list[dict]) -> dict[str, float]:
    forced_rng = random.Random(FORCED_SEED)
    counts: dict[str, int] = {}
    for row in rows:
        right = OPTION_LETTERS.index(row["answer"])
        forced = forced_rng.choice([i for i in range(len(OPTION_LETTERS)) if i != right])
        with Image.open(folder / row["image"]) as opened:
            image = opened.convert("RGB")
        embeddings, block = cell.embeddings(row, row[row["answer"]], image)
        forced_letter = cell.letter(cell.embeddings(row, row[OPTION_LETTERS[forced]], image)[0])
        hits = {
            "own": cell.letter(embeddings) == right,
            "forced: copied": forced_letter == forced,
            "forced: looked up": forced_letter == right,
        }
        size = 0 if block is None else block.stop - block.start
        for count in POOLED:
            if math.isqrt(size) ** 2 == size and size > count:
                hits[f"pooled to {count}"] = cell.letter(with_pooled_image(embeddings, block, count)) == right
        for name, hit in hits.items():
            counts[name] = counts.get(name, 0) + int(hit)
    return {name: hits / len(rows) for name, hits in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="a sweep folder on a synthetic world (e.g. runs/tiny)")
    parser.add_argument("--cells", default="*", help="cell ids to measure (shell pattern; default: all)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N rotations")
    args = parser.parse_args()
    folder, rows = mmbench_rows(args.sweep)
    rows = rows[: args.limit]
    checkpoints = sorted(
        final
        for final in args.sweep.glob("cells/*/train/stage2/final")
        if fnmatch.fnmatch(final.parents[2].name, args.cells)
    )
    if not checkpoints:
        raise SystemExit(f"no finished cell matching {args.cells!r} under {args.sweep / 'cells'}")
    torch.manual_seed(0)
    print(f"teacher-forced letters over {len(rows)} rotations (chance 0.25)")
    for checkpoint in checkpoints:
        shares = measure(Cell(checkpoint), folder, rows)
        print(f"{checkpoint.parents[2].name:<28}" + "  ".join(f"{k} {v:.2f}" for k, v in shares.items()))


if __name__ == "__main__":
    main()
