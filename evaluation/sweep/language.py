"""The tiny LLM the suite ships, and `tokenpacker synth-llm`, which trains it again.

A sweep on a synthetic world starts its cells from one stage-0 LLM, trained on the world's words
(stage 0 and its anneal; training/api.py), as LLaVA starts from a pretrained Vicuna. For the default
sweep that is about six minutes of the budget on 2 cores, spent on the same weights every time, so
the suite ships them (evaluation/synthetic/tiny_llm, as it ships the tower) with the key of the
recipe and corpus they were trained from. A sweep whose stage-0 key is that key starts from the
shipped weights; any other world, seed or stage-0 setting trains its own. `synth-llm` runs the
training the shipped weights came from and says whether the result is the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from evaluation.sweep.state import now_iso, write_json
from evaluation.synthetic.world import SHIPPED_LANGUAGE_MODEL

WEIGHTS_FILE = "model.safetensors"
SETTINGS_FILE = "pretraining.json"
LANGUAGE_PREFIX = "language_model."  # the suite checkpoint's LLM weights (training/model.py reads these)


class ShippedModelError(ValueError):
    """The shipped LLM's files do not agree with each other."""


def weights_digest(folder: Path) -> str:
    return hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()


def shipped_key(folder: Path = SHIPPED_LANGUAGE_MODEL) -> str | None:
    """The stage-0 key (`stage0-<key>/anneal-<key>`) the LLM in `folder` was trained for; None when
    there is none. Refuses weights that are not the ones recorded beside them."""
    settings = folder / SETTINGS_FILE
    if not settings.is_file():
        return None
    recorded = json.loads(settings.read_text(encoding="utf-8"))
    if not (folder / WEIGHTS_FILE).is_file() or weights_digest(folder) != recorded["weights_sha256"]:
        raise ShippedModelError(
            f"{folder / WEIGHTS_FILE} is missing or not the file {settings} records; restore it "
            "(git checkout) or train it again with tokenpacker synth-llm"
        )
    return str(recorded["key"])


def write_language_model(final: Path, key: str, out: Path, about: dict[str, Any]) -> dict[str, Any]:
    """The LLM weights of the suite checkpoint `final` into `out`, with the key they answer to."""
    from safetensors.torch import save_file

    from tokenpacker.checkpoints import read_state_dict

    weights = {
        name: t.contiguous() for name, t in read_state_dict(final).items() if name.startswith(LANGUAGE_PREFIX)
    }
    if not weights:
        raise ShippedModelError(f"{final} holds no {LANGUAGE_PREFIX}* weights; give a stage-0 final/ folder")
    out.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    record = {"key": key, **about, "weights_sha256": weights_digest(out)}
    write_json(out / SETTINGS_FILE, record)
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/synth-llm"),
        help="work folder: the world, the training (resumable) and tiny_llm/, the result",
    )
    parser.add_argument("--spec", default="tiny", help="the sweep whose shared LLM to train (default: tiny)")


def run(args: argparse.Namespace) -> int:
    from evaluation.sweep.runner import WORLD_FOLDER, prepare_world
    from evaluation.sweep.spec import load_spec
    from evaluation.sweep.stages import REAL_STAGES, language_key, language_root, shared_language_recipe
    from training.api import train_language_model

    spec = load_spec(args.spec)
    if spec.world is None:
        raise ValueError(
            f"sweep spec {spec.source} has no synthetic world, so no shared LLM; give one that has"
        )
    world, _ = prepare_world(args.out / WORLD_FOLDER, spec.world, REAL_STAGES)
    recipes = [r for cell in spec.cells if (r := shared_language_recipe(cell, world)) is not None]
    if not recipes:
        raise ValueError(f"no cell of sweep spec {spec.source} trains a shared stage-0 LLM")
    start = time.perf_counter()
    final = train_language_model(recipes[0], language_root(world))  # the first cell's, as a sweep's
    seconds = time.perf_counter() - start  # a resumed run counts only what it trained now
    key = language_key(recipes[0], world)
    about = {
        "spec": spec.name,
        "world": {"preset": spec.world.preset, "seed": spec.world.seed},
        "trained_seconds": round(seconds, 1),
        "trained_at": now_iso(),
    }
    record = write_language_model(final, key, args.out / "tiny_llm", about)
    shipped = SHIPPED_LANGUAGE_MODEL
    same = record["key"] == shipped_key(shipped) and record["weights_sha256"] == weights_digest(shipped)
    print(f"trained {key} in {seconds:.0f} s -> {args.out / 'tiny_llm'}")
    print(f"the shipped LLM ({shipped}) is {'the same' if same else 'different'}")
    return 0
