"""The tiny LLM the suite ships, and `tokenpacker synth-llm`, which trains it again.

A sweep on a synthetic world starts its cells from one stage-0 LLM, trained on the world's words
(stage 0 and its anneal; training/api.py), as LLaVA starts from a pretrained Vicuna. For the default
sweep that is 4-7 minutes of the budget on 2 cores, spent on the same weights every time, so the
suite ships them (evaluation/synthetic/tiny_llm, as it ships the tower) with the key of the recipe
and corpora they were trained from and a digest of the tokenizer, LLM shape and templates. A sweep
whose stage-0 key and model digest are those starts from the shipped weights; any other trains its
own. `synth-llm` runs the training the shipped weights came from and says whether the result is the
same.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import inspect
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from evaluation.sweep.state import now_iso
from evaluation.synthetic.world import SETTINGS_FILE, SHIPPED_LANGUAGE_MODEL, WEIGHTS_FILE, weights_digest

RECORD_FIELDS = ("key", "model", "weights_sha256")


class ShippedModelError(ValueError):
    """The shipped LLM's files do not agree with each other."""


def model_digest() -> str:
    """What the weights mean beyond their stage-0 key: the tiny tokenizer's recipe, the LLM's shape and
    the chat templates. Weights trained before an edit to any of them are another model's."""
    from tokenpacker import tiny
    from tokenpacker.conversation import TEMPLATES

    text_config = tiny.tiny_config("mlp2x_gelu", 1).text_config.to_dict()
    shape = {k: v for k, v in text_config.items() if not k.startswith("_") and k != "transformers_version"}
    payload = {
        "tokenizer": [
            inspect.getsource(tiny.build_tiny_tokenizer),
            tiny.TOKENIZER_CORPUS,
            tiny.TINY_VOCAB_SIZE,
        ],
        "llm": shape,
        "templates": {name: dataclasses.asdict(template) for name, template in TEMPLATES.items()},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:12]


def read_record(folder: Path) -> dict[str, str] | None:
    """The key, model digest and weights digest recorded beside a shipped LLM; None when there is none."""
    settings = folder / SETTINGS_FILE
    if not settings.is_file():
        return None
    try:
        raw = json.loads(settings.read_text(encoding="utf-8"))
        return {field: str(raw[field]) for field in RECORD_FIELDS}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ShippedModelError(
            f"{settings} is not a record tokenpacker synth-llm writes ({type(error).__name__}: {error}); "
            "restore it (git checkout) or train the LLM again with tokenpacker synth-llm"
        ) from None


def shipped_model_for(key: str, folder: Path = SHIPPED_LANGUAGE_MODEL) -> Path | None:
    """`folder` when it holds the LLM trained for stage-0 key `key` with today's tokenizer, LLM shape
    and templates, else None (the sweep then trains its own). Weights that would be used but are not
    the recorded ones are refused."""
    record = read_record(folder)
    if record is None or record["key"] != key or record["model"] != model_digest():
        return None
    if not (folder / WEIGHTS_FILE).is_file() or weights_digest(folder) != record["weights_sha256"]:
        raise ShippedModelError(
            f"{folder / WEIGHTS_FILE} is missing or not the file {folder / SETTINGS_FILE} records; "
            "restore it (git checkout) or train it again with tokenpacker synth-llm"
        )
    return folder


def recorded_weights(folder: Path = SHIPPED_LANGUAGE_MODEL) -> str | None:
    """The shipped weights' recorded digest, for the keys of cells that may start from them (unread
    or missing: None, and the check where they would be used says what is wrong)."""
    try:
        record = read_record(folder)
    except ShippedModelError:
        return None
    return None if record is None else record["weights_sha256"]


def write_language_model(final: Path, key: str, out: Path, about: dict[str, Any]) -> dict[str, Any]:
    """The LLM weights of the suite checkpoint `final` into `out`, with the key they answer to.
    Written beside `out` and renamed into place, so a folder that exists is complete."""
    from safetensors.torch import save_file

    from tokenpacker.checkpoints import read_state_dict
    from training.model import LANGUAGE_PREFIX

    weights = {
        name: t.contiguous() for name, t in read_state_dict(final).items() if name.startswith(LANGUAGE_PREFIX)
    }
    if not weights:
        raise ShippedModelError(f"{final} holds no {LANGUAGE_PREFIX}* weights; give a stage-0 final/ folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_file(weights, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        record = {"key": key, "model": model_digest(), **about, "weights_sha256": weights_digest(staging)}
        (staging / SETTINGS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
    from training.api import language_model_path, train_language_model

    spec = load_spec(args.spec)
    if spec.world is None:
        raise ValueError(
            f"sweep spec {spec.source} has no synthetic world, so no shared LLM; give one that has"
        )
    world, _ = prepare_world(args.out / WORLD_FOLDER, spec.world, REAL_STAGES)
    recipes = [r for cell in spec.cells if (r := shared_language_recipe(cell, world)) is not None]
    keys = sorted({language_key(recipe, world) for recipe in recipes})
    if len(keys) != 1:
        raise ValueError(
            f"the cells of sweep spec {spec.source} share {len(keys)} stage-0 LLMs, not one: {keys}"
        )
    (key,) = keys
    trained_before = language_model_path(recipes[0], language_root(world)).is_dir()
    start = time.perf_counter()
    final = train_language_model(recipes[0], language_root(world))
    seconds = None if trained_before else round(time.perf_counter() - start, 1)  # a resumed run: this part
    about = {
        "spec": spec.name,
        "world": {"preset": spec.world.preset, "seed": spec.world.seed},
        "trained_seconds": seconds,
        "trained_at": now_iso(),
    }
    record = write_language_model(final, key, args.out / "tiny_llm", about)
    print(
        f"{'reused' if trained_before else f'trained in {seconds:.0f} s:'} {key} -> {args.out / 'tiny_llm'}"
    )
    try:
        same = (
            shipped_model_for(key) is not None
            and weights_digest(SHIPPED_LANGUAGE_MODEL) == record["weights_sha256"]
        )
        print(f"the shipped LLM ({SHIPPED_LANGUAGE_MODEL}) is {'the same' if same else 'different'}")
    except ShippedModelError as error:
        print(f"the shipped LLM is damaged: {error}")
    return 0
