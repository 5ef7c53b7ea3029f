"""How fast the tiny recipe learns each question kind of a synthetic world: accuracy per kind against
stage-2 steps, or, with `--stage 0`, against stage-0 steps with every image replaced by its caption.

Stage 2 as the suite trains it (vision tower frozen, projector + LLM trained, AdamW, warm-up then
cosine) on the world's stage2.json, from a freshly initialised tiny model, but at one lr (`--lr`) for
projector and LLM alike, where the tiny recipe gives the projector its own (see tiny.yaml). Stage 0 trains the LLM
alone on the world's language.json, and asks the evaluation questions in words: it shows which
look-ups the LLM can do before it sees an image, since a kind it cannot answer from the caption it
will not answer from the visual tokens either. Every `--every` steps
the model answers up to `--per-kind` evaluation questions of each kind (the world's own rows, in
the prompts lmms-eval builds), scored by teacher forcing: right when every answer token is the
argmax. That is exact match without a decoding loop, so the curves cost seconds. Beside each kind are
its chance level (a uniform guess) and its majority level (always the most common answer among the
questions asked); a kind whose row stays at or below the higher of the two is not being learnt.

Run: `.venv/bin/python benchmarks/bench_learnability.py [--preset default] [--projector tokenpacker
--scale-factor 4] [--steps 300 --every 50] [--threads 1] [--language-model STAGE0_FINAL]`, or
`... --stage 0 --batch 32 --lr 1e-3` for the LLM alone (add `--anneal --lr 3e-4 --language-model
STAGE0_FINAL` for the stage0_anneal phase after it). `--patch-size 2` gives the tiny CLIP the real
tower's 24x24 grid instead of the tiny recipe's 12x12 (with `--vision-tower random`: the shipped tower
is pretrained at 12x12). The tower is the one the sweep uses, pretrained on the world's scenes.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from evaluation.synthetic import build_world
from evaluation.synthetic.formats import answer, prompt
from evaluation.synthetic.questions import EVAL_TASKS, KINDS
from evaluation.synthetic.scene import Scene
from evaluation.synthetic.world import EVAL_QUESTIONS_FILE, EVAL_SCENES_FILE, SHIPPED_TOWER, World, caption
from tokenpacker.checkpoints import CheckpointError
from tokenpacker.modeling import IGNORE_INDEX
from training.collator import MultimodalCollator
from training.data import LlavaDataset
from training.model import build_model, set_trained_parts
from training.recipe import ModelRecipe, RecipeError, load_recipe

TEMPLATE = "vicuna_v1"
TINY_RECIPE = Path(__file__).resolve().parents[1] / "training" / "recipes" / "tiny.yaml"
MAX_LENGTH = 1024  # room for the MLP's 576 visual tokens


def probe_records(
    world: World, per_kind: int, in_words: bool = False
) -> tuple[list[dict], list[str], dict[str, float]]:
    """Single-turn LLaVA records of up to `per_kind` evaluation rows per kind (the image replaced by
    its caption when `in_words`), each one's kind, and each kind's majority level among them."""
    records, kinds = [], []
    answers: dict[str, list[str]] = defaultdict(list)
    for task in EVAL_TASKS:
        folder = world.eval_root / task
        scenes = {
            scene["image"]: scene
            for scene in map(json.loads, (folder / EVAL_SCENES_FILE).read_text().splitlines())
        }
        taken: dict[str, int] = defaultdict(int)
        for row in map(json.loads, (folder / EVAL_QUESTIONS_FILE).read_text().splitlines()):
            scene = scenes[row["image"]]
            kind = f"{task}/{scene['kind']}"
            if taken[kind] == per_kind:
                continue
            taken[kind] += 1
            image = caption(Scene.from_record(scene["scene"])) if in_words else "<image>"
            turns = [
                {"from": "human", "value": f"{image}\n{prompt(task, row)}"},
                {"from": "gpt", "value": answer(task, row)},
            ]
            record = {"id": str(len(records)), "conversations": turns}
            records.append(record if in_words else record | {"image": str(folder / row["image"])})
            kinds.append(kind)
            answers[kind].append(turns[1]["value"])
    majority = {kind: Counter(given).most_common(1)[0][1] / len(given) for kind, given in answers.items()}
    return records, kinds, majority


@torch.no_grad()
def accuracy_by_kind(model, dataset: LlavaDataset, kinds: list[str], collate, batch: int) -> dict[str, float]:
    model.eval()
    right: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(dataset), batch):
        indices = range(start, min(start + batch, len(dataset)))
        inputs = collate([dataset[i] for i in indices])
        labels = inputs.pop("labels")[:, 1:]
        predicted = model(**inputs).logits[:, :-1].argmax(-1)
        exact = ((predicted == labels) | (labels == IGNORE_INDEX)).all(dim=1)
        for index, ok in zip(indices, exact.tolist(), strict=True):
            right[kinds[index]].append(ok)
    model.train()
    return {kind: sum(oks) / len(oks) for kind, oks in right.items()}


def chance_by_kind() -> dict[str, float]:
    return {f"{kind.task}/{kind.name}": 1 / kind.answers for kind in KINDS}


def print_curves(
    curves: dict[int, dict[str, float]], losses: dict[int, float], majority: dict[str, float]
) -> None:
    chance = chance_by_kind()
    steps = sorted(curves)
    print(f"{'kind':38s} {'chance':>6s} {'major.':>6s} " + " ".join(f"{s:>6d}" for s in steps))
    for kind in sorted(curves[steps[0]]):
        cells = " ".join(f"{curves[s][kind]:6.2f}" for s in steps)
        print(f"{kind:38s} {chance[kind]:6.2f} {majority[kind]:6.2f} {cells}")
    print(f"{'mean training loss since the last column':52s} " + " ".join(f"{losses[s]:6.3f}" for s in steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="default", help="synthetic world preset (default: %(default)s)")
    parser.add_argument(
        "--world-root", type=Path, help="where worlds are cached (default: a temporary folder)"
    )
    parser.add_argument(
        "--stage", type=int, choices=(0, 2), default=2, help="2: images; 0: the LLM alone, in words"
    )
    parser.add_argument("--projector", default="tokenpacker")
    parser.add_argument("--scale-factor", type=int, default=4)
    parser.add_argument(
        "--patch-size",
        type=int,
        default=load_recipe(TINY_RECIPE).model.tiny_patch_size,
        help="tiny CLIP patch side in px (default: the tiny recipe's, %(default)s)",
    )
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=10, help="linear warm-up steps before the cosine decay")
    parser.add_argument("--per-kind", type=int, default=40, help="evaluation questions per kind")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--language-model",
        type=Path,
        default=None,
        help="start the LLM from this stage-0 checkpoint (e.g. a sweep's world/language/stage0-*/final); "
        "default: random LLM weights",
    )
    parser.add_argument(
        "--vision-tower",
        default=str(SHIPPED_TOWER),
        help="tiny CLIP tower folder, or 'random' for the seed's random weights (default: the shipped tower the "
        "sweep uses, %(default)s)",
    )
    parser.add_argument(
        "--anneal",
        action="store_true",
        help="with --stage 0: train on the world's language_anneal.json, the stage0_anneal corpus "
        "(start it from a stage-0 checkpoint with --language-model, at the anneal's lr: --lr 3e-4)",
    )
    args = parser.parse_args()
    if args.anneal and args.stage != 0:
        parser.error("--anneal trains the LLM alone on text; give it with --stage 0")
    try:  # the recipe's own checks, before any world is generated
        recipe = ModelRecipe(
            source="tiny",
            projector_type=args.projector,
            scale_factor=args.scale_factor,
            tiny_patch_size=args.patch_size,
            language_model=str(args.language_model) if args.language_model else None,
            vision_tower=None if args.vision_tower == "random" else args.vision_tower,
        )
        model, processor = build_model(recipe)
    except (RecipeError, CheckpointError) as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    with tempfile.TemporaryDirectory() as scratch:
        world = build_world(args.world_root or Path(scratch) / "worlds", args.preset, args.seed)
        set_trained_parts(model, args.stage)
        if args.stage == 0:
            corpus = world.language_anneal_json if args.anneal else world.language_json
            train = LlavaDataset(corpus, None, processor, TEMPLATE, MAX_LENGTH)
        else:
            train = LlavaDataset(world.stage2_json, world.image_folder, processor, TEMPLATE, MAX_LENGTH)
        records, kinds, majority = probe_records(world, args.per_kind, in_words=args.stage == 0)
        probe_json = Path(scratch) / "probe.json"
        probe_json.write_text(json.dumps(records))
        probe = LlavaDataset(probe_json, "/", processor, TEMPLATE, MAX_LENGTH)

        collate = MultimodalCollator(processor.tokenizer.pad_token_id)
        parameters = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: min(1.0, (s + 1) / args.warmup) * 0.5 * (1 + math.cos(math.pi * s / args.steps)),
        )
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed)).tolist()
        curves: dict[int, dict[str, float]] = {}
        losses: dict[int, float] = {}
        window: list[float] = []
        model.train()
        for step in tqdm(range(1, args.steps + 1), desc=f"stage-{args.stage} steps", unit="step"):
            start = ((step - 1) * args.batch) % len(order)
            batch = (order + order)[start : start + args.batch]
            loss = model(**collate([train[i] for i in batch])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            window.append(loss.item())
            if step % args.every == 0 or step == args.steps:
                curves[step] = accuracy_by_kind(model, probe, kinds, collate, batch=32)
                losses[step], window = sum(window) / len(window), []
    trained = (
        "the LLM alone, questions in words" if args.stage == 0 else f"{args.projector} s={args.scale_factor}"
    )
    print(
        f"\n{trained} on the {args.preset} world: teacher-forced exact match per kind ({args.per_kind} "
        f"questions each) after N stage-{args.stage} steps of batch {args.batch}, lr {args.lr:g}"
    )
    print_curves(curves, losses, majority)


if __name__ == "__main__":
    main()
