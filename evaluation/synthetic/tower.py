"""Pretrain the tiny CLIP tower on synthetic scenes, as LLaVA's tower comes pretrained.

LLaVA freezes a CLIP that has already learnt, from web images, to see colours, shapes and printed
words. The tiny tower starts from random weights, and stages 1-2 alone do not teach it to read: a
word probe on the frozen random tower, given their budget (1500 word images, 100 steps of 16), stays
at chance (0.16-0.17 against 0.17) at every pooling, and every model of the default sweep scored
TextVQA at chance. This is the tiny stand-in for CLIP's pretraining, though not CLIP's method: the
whole tower, under an attention-pooling head, is supervised on the world's own labels, the scene's
word (one of TextVQA's six answers, or none) and its shapes' colours, kinds and sizes, on scenes of
the world's kinds drawn from a seed stream of their own (TOWER_STREAM).

Measured on one H200 (batches of 256): the word head alone reaches held-out 0.23 / 0.77 / 0.985
after 400 / 1200 / 3200 steps, and tagging the caption's words alone only 0.41 after 4000. The
shipped tower (both heads, 4000 steps, 60000 scenes, 88 s there) names held-out words 0.975, and
every tag is right on 0.998 of the held-out scenes; benchmarks/bench_tower_probe.py reads words
0.98 from it at poolings 1-4, and colours 0.98. On 2 CPU cores a step takes about 1 s (about 70
minutes in all), which is why the suite ships the result (world.SHIPPED_TOWER); `tokenpacker
synth-tower` runs the same pretraining (another device gives other weights in the last bits), and
run again after a stop it resumes from its last saved state (every CHECKPOINT_EVERY steps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm
from transformers import CLIPVisionModel

from evaluation.synthetic.questions import KINDS, draw_scene
from evaluation.synthetic.scene import Scene, render_scene
from evaluation.synthetic.vocabulary import COLOR_NAMES, SHAPES, SIZES, WORDS
from evaluation.synthetic.world import GENERATOR_MODULES, SETTINGS_FILE, SHIPPED_TOWER, weights_digest
from tokenpacker.processing import expand_to_square
from tokenpacker.tiny import CLIP_MEAN, CLIP_STD, TINY_IMAGE_SIZE, build_tiny_model, tiny_config

TOWER_STREAM = 5  # seed stream of the tower's scenes; world.py's splits are 1-4
HELD_OUT = 1  # sub-stream of the held-out scenes the result is scored on
TAGS = COLOR_NAMES + SHAPES + SIZES  # what the tag head names of each shape
NO_WORD = len(WORDS)  # the word head's class for a scene without a word
TOWER_PATCH_SIZE = 4  # the tiny recipe's model.tiny_patch_size; a tower fits only models of its own
MIN_STEPS = 3  # a warm-up of two steps, then the decay
CHECKPOINT_EVERY = 200  # steps between the saved states a stopped run resumes from


def warmup_share(steps: int) -> float:
    """5% of the steps warm up, at least two: OneCycleLR divides by zero when its warm-up ends at step 0."""
    return max(2, round(0.05 * steps)) / steps


def tower_image(scene: Scene) -> np.ndarray:
    """The scene as the tiny processor's `pad` mode shows it to the tower: 48x48x3 uint8."""
    fill = tuple(int(round(255 * m)) for m in CLIP_MEAN)
    square = expand_to_square(render_scene(scene), fill)
    return np.asarray(square.resize((TINY_IMAGE_SIZE, TINY_IMAGE_SIZE), Image.BICUBIC), dtype=np.uint8)


def tower_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 3, 48, 48) images normalised as the tiny processor does."""
    mean, std = (torch.tensor(v, device=images.device).view(1, 3, 1, 1) * 255 for v in (CLIP_MEAN, CLIP_STD))
    return (images.float() - mean) / std


def random_tower(seed: int) -> CLIPVisionModel:
    """The tiny model's own tower for `seed`: where pretraining starts, and the probe's reference."""
    config = tiny_config("mlp2x_gelu", 1, patch_size=TOWER_PATCH_SIZE)
    return build_tiny_model(config, seed=seed).vision_tower.clip


def selected_features(tower: CLIPVisionModel, pixels: torch.Tensor) -> torch.Tensor:
    """The patch features the projector reads: tiny_config's vision_select_layer, CLS dropped."""
    hidden = tower(pixel_values=pixels, output_hidden_states=True).hidden_states
    return hidden[tiny_config().vision_select_layer][:, 1:]


class AttentionPooling(nn.Module):
    """Learnt queries attend over a tower's tokens, then an MLP: a head that can find one item anywhere."""

    def __init__(self, width: int, outputs: int, queries: int = 4) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, queries, width) * 0.1)
        self.attention = nn.MultiheadAttention(width, 4, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(width * queries, 2 * width), nn.GELU(), nn.Linear(2 * width, outputs)
        )

    def forward(self, tokens: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """`padding` (n, tokens), True where a token only fills the batch: no query attends to it."""
        queries = self.queries.expand(len(tokens), -1, -1)
        pooled, _ = self.attention(queries, tokens, tokens, key_padding_mask=padding)
        return self.head(pooled.flatten(1))


def scene_targets(scene: Scene) -> tuple[int, np.ndarray]:
    """The scene's word (NO_WORD without one) and its shapes' colours, kinds and sizes, multi-hot."""
    words = [text.content for text in scene.texts if text.kind == "word"]
    tags = np.zeros(len(TAGS), dtype=np.float32)
    for shape in scene.shapes:
        for name in (shape.color, shape.kind, shape.size):
            tags[TAGS.index(name)] = 1.0
    return (WORDS.index(words[0]) if words else NO_WORD), tags


def draw_scenes(seed: int, count: int, stream: int = 0) -> dict[str, torch.Tensor]:
    """`count` scenes cycling through the question kinds (as stage 1 does), as tensors."""
    images, words, tags = [], [], []
    for index in tqdm(range(count), desc="tower scenes", unit="scene", disable=None):
        rng = np.random.default_rng([seed, TOWER_STREAM, stream, index])
        scene, _ = draw_scene(KINDS[index % len(KINDS)], rng)
        word, tag = scene_targets(scene)
        images.append(tower_image(scene))
        words.append(word)
        tags.append(tag)
    return {
        "images": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(),
        "words": torch.tensor(words),
        "tags": torch.from_numpy(np.stack(tags)),
    }


class TowerPretraining(nn.Module):
    """The tiny tower under an attention-pooling head: word logits and tag logits."""

    def __init__(self, init_seed: int) -> None:
        super().__init__()
        self.tower = random_tower(init_seed).requires_grad_(True)
        self.pooling = AttentionPooling(self.tower.config.hidden_size, NO_WORD + 1 + len(TAGS))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.pooling(selected_features(self.tower, tower_pixels(images)))
        return logits[:, : NO_WORD + 1], logits[:, NO_WORD + 1 :]


def pretraining_loss(model: TowerPretraining, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Both heads at once, so reading words does not cost the tower the shapes' colours."""
    words, tags = model(batch["images"])
    return nn.functional.cross_entropy(
        words, batch["words"]
    ) + nn.functional.binary_cross_entropy_with_logits(tags, batch["tags"])


@torch.no_grad()
def score(
    model: TowerPretraining, held_out: dict[str, torch.Tensor], batch_size: int = 512
) -> dict[str, float]:
    """Held-out word accuracy over the scenes with a word, and tag accuracy: the share of all scenes
    whose every tag is right (3 in 10 scenes show a word alone, whose tags are all off)."""
    model.eval()
    outputs = [
        model(held_out["images"][i : i + batch_size]) for i in range(0, len(held_out["images"]), batch_size)
    ]
    model.train()
    words = torch.cat([w for w, _ in outputs]).argmax(1)
    tags = torch.cat([t for _, t in outputs]) > 0
    has_word = held_out["words"] != NO_WORD
    return {
        "word_accuracy": round((words == held_out["words"])[has_word].float().mean().item(), 4),
        "tag_accuracy": round((tags == held_out["tags"].bool()).all(1).float().mean().item(), 4),
    }


def pretrain_tower(
    out: Path,
    steps: int = 4000,
    batch_size: int = 256,
    samples: int = 60000,
    learning_rate: float = 1e-3,
    seed: int = 0,
    device: str = "cpu",
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> dict:
    """Train and write `out/` (a CLIPVisionModel folder plus pretraining.json); out/ appears only when done.

    Every `checkpoint_every` steps the run's state is saved beside `out` (partial_state), and a run
    with the same settings started again resumes from it: on 2 CPU cores the whole run takes an hour.
    """
    check_out(out)
    settings = {"steps": steps, "batch_size": batch_size, "samples": samples, "learning_rate": learning_rate}
    settings |= {"seed": seed, "patch_size": TOWER_PATCH_SIZE}
    torch.manual_seed(seed)
    train = {k: v.to(device) for k, v in draw_scenes(seed, samples).items()}
    held_out = {k: v.to(device) for k, v in draw_scenes(seed, 1200, stream=HELD_OUT).items()}
    model = TowerPretraining(init_seed=seed).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.05)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, learning_rate, total_steps=steps, pct_start=warmup_share(steps)
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    parts = {"model": model, "optimizer": optimizer, "schedule": schedule}
    run = settings | {"device": device, "torch": torch.__version__, "code": code_digest()}
    done = resume(partial_state(out), run, parts, generator)
    progress = tqdm(
        range(done, steps), desc="tower pretraining", unit="step", disable=None, initial=done, total=steps
    )
    for step in progress:
        index = torch.randint(0, samples, (batch_size,), device=device, generator=generator)
        loss = pretraining_loss(model, {k: v[index] for k, v in train.items()})
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        progress.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            save_partial(partial_state(out), run, step + 1, parts, generator)
    result = write_tower(model.tower, {"settings": settings, "held_out": score(model, held_out)}, out)
    partial_state(out).unlink(missing_ok=True)
    return result


def partial_state(out: Path) -> Path:
    """Where an unfinished run of `out` keeps its state: beside it, never inside a finished tower."""
    return out.parent / f".{out.name}.partial.pt"


def code_digest() -> str:
    """Covers the code that draws and scores the scenes, so a state from another checkout is not resumed."""
    digest = hashlib.sha256()
    for module in (Path(__file__), *(Path(__file__).with_name(name) for name in GENERATOR_MODULES)):
        digest.update(module.read_bytes())
    return digest.hexdigest()[:12]


def save_partial(path: Path, run: dict, step: int, parts: dict[str, Any], generator: torch.Generator) -> None:
    """Written and renamed into place, so an interrupted save leaves the previous state. The global
    torch RNG is not kept: after the tower is built, nothing in the loop draws from it (no dropout)."""
    state = {name: part.state_dict() for name, part in parts.items()}
    state |= {"run": run, "step": step, "generator": generator.get_state()}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    torch.save(state, staging)
    staging.replace(path)


def resume(path: Path, run: dict, parts: dict[str, Any], generator: torch.Generator) -> int:
    """Steps already done: those of a saved state of the same run (settings, device, torch and code),
    loaded into `parts`; else 0."""
    path.with_suffix(".tmp").unlink(missing_ok=True)  # a save that was cut short
    if not path.is_file():
        return 0
    # a file this command wrote: it holds the optimizer's and the schedule's states, not weights alone
    state = torch.load(path, map_location=generator.device, weights_only=False)
    if state["run"] != run:
        print(f"tower pretraining: {path} holds a run with other settings, device or code; starting afresh")
        return 0
    for name, part in parts.items():
        part.load_state_dict(state[name])
    generator.set_state(state["generator"].cpu())
    print(f"tower pretraining: resuming after step {state['step']} of {run['steps']} ({path})")
    return int(state["step"])


def check_out(out: Path) -> None:
    """Only a folder this command wrote (or none) is replaced, never one holding anything else."""
    if out.exists() and not (out / SETTINGS_FILE).is_file() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(
            f"--out {out} exists and is not a tower written by tokenpacker synth-tower; give a new folder"
        )


def write_tower(tower: CLIPVisionModel, result: dict, out: Path) -> dict:
    """Written beside `out` and renamed into place, so a tower folder that exists is complete;
    returns the record written to pretraining.json."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    tower.to("cpu").save_pretrained(staging)
    result = result | {"weights_sha256": weights_digest(staging)}
    (staging / SETTINGS_FILE).write_text(json.dumps(result, indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Pretrain the tiny CLIP tower on synthetic scenes (words, shape colours, kinds and sizes): the tower "
        f"the tiny sweep uses, shipped in {SHIPPED_TOWER.relative_to(SHIPPED_TOWER.parents[2])}."
    )
    parser.add_argument("--out", type=Path, required=True, help="folder to write the tower into")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=256, help="scenes per step (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=60000, help="training scenes (default: %(default)s)")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak lr (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="scene and init seed (default: %(default)s)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> int:
    """Settings are checked before the scenes are drawn, so bad input costs nothing."""
    if args.steps < MIN_STEPS:
        raise ValueError(
            f"--steps must be at least {MIN_STEPS} (two warm-up steps, then the decay), got {args.steps}"
        )
    for name in ("batch_size", "samples"):
        if getattr(args, name) <= 0:
            raise ValueError(
                f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}"
            )
    if not np.isfinite(args.learning_rate) or args.learning_rate <= 0:
        raise ValueError(f"--learning-rate must be a positive number, got {args.learning_rate}")
    check_out(args.out)
    result = pretrain_tower(
        args.out, args.steps, args.batch_size, args.samples, args.learning_rate, args.seed, args.device
    )
    held = result["held_out"]
    print(f"tower        {args.out}")
    print(f"held out     words {held['word_accuracy']:.3f}, shape tags {held['tag_accuracy']:.3f}")
    return 0
