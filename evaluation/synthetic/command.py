"""`tokenpacker synth`: generate (or reuse) a synthetic world and print where its parts are."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from evaluation.synthetic.world import MANIFEST, PRESETS, SHIPPED_TOWER, build_world, world_key
from evaluation.tasks import DATA_ROOT_ENV, SYNTHETIC_GROUP, TASKS_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Generate the synthetic world: LLaVA training data and benchmark-shaped evaluation sets."
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="folder holding worlds; each goes in its own sub-folder"
    )
    parser.add_argument(
        "--preset", default="default", choices=list(PRESETS), help="world size (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    reused = (args.out / world_key(args.preset, args.seed) / MANIFEST).is_file()
    started = time.perf_counter()
    world = build_world(args.out, args.preset, args.seed)
    seconds = time.perf_counter() - started
    manifest = world.manifest
    print(f"world        {world.folder} ({'reused' if reused else f'generated in {seconds:.1f} s'})")
    print(f"stage 1      {world.stage1_json} ({manifest['stage1']['samples']} captions)")
    print(f"stage 2      {world.stage2_json} ({manifest['stage2']['samples']} conversations)")
    print(f"images       {world.image_folder}")
    print(f"tower        {SHIPPED_TOWER} (pretrained on such scenes: train with --model.vision_tower TOWER)")
    for task, summary in manifest["eval"].items():
        print(f"{task:<12} {summary['questions']} questions on {summary['images']} images")
    print(
        f"evaluate with: {DATA_ROOT_ENV}={world.eval_root} "
        f"lmms-eval --include_path {TASKS_DIR} --tasks {SYNTHETIC_GROUP} --model tokenpacker ..."
    )
    return 0
