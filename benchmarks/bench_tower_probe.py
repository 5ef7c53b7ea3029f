"""How much a frozen tiny tower hands the projector: a word, a shape's colour and its size, read by
a probe given about the budget stages 1-2 have, at each pooling of the patch grid.

For each tower (the shipped one the sweep uses, and the seed's random weights) and each property, an
attention-pooling probe is trained on `--samples` scenes of that question kind (the world's word
scenes for TextVQA, one-shape scenes for GQA's colour and size questions) for `--steps` steps of `--batch`,
on the tower's selected-layer features average-pooled k x k as the avgpool projector pools them
(k = 1..4: the grids TokenPacker and average pooling keep at scale_factor k), then scored on
held-out scenes. Stages 1-2 see about 1500 word images in all, hence the defaults. A property that
stays at chance here is one the models cannot answer, whatever the projector; one that holds at
every pooling is still in the pooled tokens, though a model may learn it less well from fewer of
them (size: the probe reads it 0.94-0.98 at every pooling, while the sweep's models answer GQA's
size question 0.85-0.88 from the MLP's 144 tokens and 0.65-0.85 from 36, 16 or 9 in two runs). The word-hd9 row reads the word from every view
TokenPacker-HD (patch_num 9) cuts of the image, each pooled k x k, side by side: what the HD model's
projector gets.

Run: `.venv/bin/python benchmarks/bench_tower_probe.py [--towers shipped,random] [--samples 1500
--steps 100 --batch 16] [--threads 2]`. Measured on 2 cores (about 2 min, most of it HD's views):
the shipped tower reads words 0.98 and colours 0.98 at every pooling, sizes 0.98 / 0.95 / 0.94 /
0.95 at poolings 1-4, but words from HD's views only 0.73-0.75; the random tower colours 0.99-1.0,
sizes 0.79-0.73 and words 0.15-0.17 (chance 0.17; size 0.5).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from transformers import CLIPVisionModel

from evaluation.synthetic.questions import KINDS, draw_scene
from evaluation.synthetic.scene import Scene, render_scene
from evaluation.synthetic.tower import (
    TOWER_PATCH_SIZE,
    AttentionPooling,
    random_tower,
    selected_features,
    tower_image,
    tower_pixels,
)
from evaluation.synthetic.vocabulary import COLOR_NAMES, SIZES, WORDS
from evaluation.synthetic.world import SHIPPED_TOWER
from tokenpacker.checkpoints import CheckpointError
from tokenpacker.hd import slice_image
from tokenpacker.projectors.base import from_grid, to_grid
from tokenpacker.tiny import CLIP_MEAN, CLIP_STD, TINY_IMAGE_SIZE
from training.model import check_vision_tower
from training.recipe import ModelRecipe

POOLINGS = (1, 2, 3, 4)
PROBE_SEED, HELD_OUT_SEED = 31, 32


def word_of(scene: Scene) -> int:
    """The word a TextVQA scene shows, as a class index."""
    return WORDS.index(scene.texts[0].content)


def colour_of(scene: Scene) -> int:
    """The colour of a one-shape scene's shape, as a class index."""
    return COLOR_NAMES.index(scene.shapes[0].color)


def size_of(scene: Scene) -> int:
    """The size of a one-shape scene's shape, as a class index."""
    return SIZES.index(scene.shapes[0].size)


HD_PATCH_NUM = 9  # the tiny sweep's TokenPacker-HD

# property -> (question kind whose scenes show it, its label, number of classes, the views the tower gets:
# "padded", the whole image as the plain projectors see it, or "hd", every view TokenPacker-HD cuts)
PROPERTIES: dict[str, tuple[tuple[str, str], Callable[[Scene], int], int, str]] = {
    "word": (("syn_textvqa", "read"), word_of, len(WORDS), "padded"),
    "colour": (("syn_gqa", "queryAttr"), colour_of, len(COLOR_NAMES), "padded"),
    "size": (("syn_gqa", "chooseSize"), size_of, len(SIZES), "padded"),
    f"word-hd{HD_PATCH_NUM}": (("syn_textvqa", "read"), word_of, len(WORDS), "hd"),
}


def load_tower(name: str) -> CLIPVisionModel:
    """`shipped`, `random` (seed 0, where pretraining starts) or a tower folder."""
    if name == "random":
        return random_tower(seed=0).eval()
    return CLIPVisionModel.from_pretrained(SHIPPED_TOWER if name == "shipped" else name).eval()


def draw(task_kind: tuple[str, str], seed: int, count: int) -> list[Scene]:
    """`count` scenes of one question kind."""
    kind = next(k for k in KINDS if (k.task, k.name) == task_kind)
    return [draw_scene(kind, np.random.default_rng([seed, i]))[0] for i in range(count)]


def hd_crops(scene: Scene) -> torch.Tensor:
    """(views, 3, 48, 48): TokenPacker-HD's cells and global view of the scene, as its processor cuts them."""
    return slice_image(
        render_scene(scene), HD_PATCH_NUM, cell_size=TINY_IMAGE_SIZE, image_mean=CLIP_MEAN, image_std=CLIP_STD
    ).crops


def views(drawn: list[Scene], view: str) -> tuple[torch.Tensor, list[int]]:
    """Normalised pixels of every view of the scenes, stacked, and how many views each scene has:
    one padded image each, or all of HD's views."""
    if view == "padded":
        images = torch.from_numpy(np.stack([tower_image(s) for s in drawn])).permute(0, 3, 1, 2)
        return tower_pixels(images), [1] * len(drawn)
    crops = [hd_crops(scene) for scene in drawn]
    return torch.cat(crops), [len(c) for c in crops]


@torch.no_grad()
def features(tower: CLIPVisionModel, pixels: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """(views, 144, width) selected-layer features, in batches."""
    return torch.cat([selected_features(tower, pixels[i : i + batch]) for i in range(0, len(pixels), batch)])


def pooled(grids: torch.Tensor, counts: list[int], k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each view pooled k x k, a scene's views side by side; with several views per scene, zero-padded
    to the most views, and the padding mask the probe ignores."""
    tokens = pool(grids, k)
    if max(counts) == 1:
        return tokens, None
    scenes = [views.flatten(0, 1) for views in tokens.split(counts)]
    longest = max(len(t) for t in scenes)
    padded = torch.stack([torch.cat([t, t.new_zeros(longest - len(t), t.shape[1])]) for t in scenes])
    padding = torch.arange(longest)[None, :] >= torch.tensor([len(t) for t in scenes])[:, None]
    return padded, padding


def pool(tokens: torch.Tensor, k: int) -> torch.Tensor:
    """k x k average pooling of (n, side*side, width) tokens, as the avgpool projector does."""
    return from_grid(F.avg_pool2d(to_grid(tokens, int(tokens.shape[1] ** 0.5)), k))


def probe_accuracy(
    train: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor],
    held_out: tuple[torch.Tensor, torch.Tensor | None, torch.Tensor],
    classes: int,
    steps: int,
    batch: int,
) -> float:
    """Train a fresh attention-pooling probe on `train` (tokens, padding mask or None, labels), score it
    on `held_out`."""
    (x, pad, y), (x_held, pad_held, y_held) = train, held_out
    torch.manual_seed(1)
    probe = AttentionPooling(x.shape[-1], classes)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3)
    for _ in range(steps):
        index = torch.randint(0, len(x), (batch,))
        loss = F.cross_entropy(probe(x[index], None if pad is None else pad[index]), y[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        return (probe(x_held, pad_held).argmax(1) == y_held).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--towers", default="shipped,random", help="shipped, random or tower folders, comma-separated"
    )
    parser.add_argument("--samples", type=int, default=1500, help="probe training scenes per property")
    parser.add_argument("--held-out", type=int, default=600, help="held-out scenes per property")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    for name in ("samples", "held_out", "steps", "batch", "threads"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(args, name)}")
    names = args.towers.split(",")
    try:  # the suite's own check of a tower folder, before any scene is drawn
        for name in set(names) - {"shipped", "random"}:
            check_vision_tower(ModelRecipe(vision_tower=name, tiny_patch_size=TOWER_PATCH_SIZE))
    except CheckpointError as error:
        parser.error(f"--towers: {error}")
    torch.set_num_threads(args.threads)
    towers = {name: load_tower(name) for name in names}
    print(f"{'tower':10s} {'property':8s} {'chance':>6s} " + " ".join(f"pool {k}" for k in POOLINGS))
    for prop, (task_kind, label, classes, view) in PROPERTIES.items():
        train, held_out = (
            draw(task_kind, PROBE_SEED, args.samples),
            draw(task_kind, HELD_OUT_SEED, args.held_out),
        )
        labels = torch.tensor([label(s) for s in train]), torch.tensor([label(s) for s in held_out])
        pixels = views(train, view), views(held_out, view)
        for name, tower in towers.items():
            grids = features(tower, pixels[0][0]), features(tower, pixels[1][0])
            scores = [
                probe_accuracy(
                    (*pooled(grids[0], pixels[0][1], k), labels[0]),
                    (*pooled(grids[1], pixels[1][1], k), labels[1]),
                    classes,
                    args.steps,
                    args.batch,
                )
                for k in POOLINGS
            ]
            print(f"{name[-10:]:10s} {prop:8s} {1 / classes:6.2f} " + " ".join(f"{s:6.2f}" for s in scores))


if __name__ == "__main__":
    main()
