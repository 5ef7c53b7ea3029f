"""End to end, the two stages teach a tiny model to use the image: it names a solid colour it
can only see. Guards against any mix-up of images, placeholders and labels that loss curves hide."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import AutoModelForCausalLM

import training
from tokenpacker.conversation import get_template
from tokenpacker.processing import TokenPackerProcessor
from training.api import train_two_stages

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}
QUESTION = "<image>\nWhat colour is the image?"


def write_colour_data(folder) -> dict[str, str]:
    images = folder / "images"
    images.mkdir()
    rng = random.Random(0)
    stage1, stage2 = [], []
    for index in range(400):
        name = rng.choice(list(COLOURS))
        Image.new("RGB", (64, 64), COLOURS[name]).save(images / f"{index}.png")
        human = {"from": "human", "value": "<image>\nDescribe."}
        stage1.append(
            {
                "id": str(index),
                "image": f"{index}.png",
                "conversations": [human, {"from": "gpt", "value": f"a {name} image"}],
            }
        )
        stage2.append(
            {
                "id": str(index),
                "image": f"{index}.png",
                "conversations": [{"from": "human", "value": QUESTION}, {"from": "gpt", "value": name}],
            }
        )
    (folder / "stage1.json").write_text(json.dumps(stage1))
    (folder / "stage2.json").write_text(json.dumps(stage2))
    return {
        f"{stage}.{key}": str(value)
        for stage in ("stage1", "stage2")
        for key, value in (("data_path", folder / f"{stage}.json"), ("image_folder", images))
    }


@pytest.mark.slow
def test_tiny_model_learns_to_name_the_colour_it_sees(tmp_path):
    overrides = write_colour_data(tmp_path) | {
        "projector_type": "tokenpacker",
        "scale_factor": 4,
        "stage0.data_path": "null",  # the two stages alone must ground the image
        "stage1.max_steps": 20,
        "stage2.max_steps": 150,
        "per_device_train_batch_size": 8,  # the settings this test was sized with, not the recipe's
        "learning_rate": "1e-3",
    }
    checkpoint = train_two_stages(
        Path(training.__file__).parent / "recipes" / "tiny.yaml", overrides, tmp_path / "run"
    )
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    processor = TokenPackerProcessor.from_pretrained(checkpoint)
    prompt = get_template("vicuna_v1").prompt(QUESTION)
    for name, rgb in COLOURS.items():
        batch = processor([prompt], [[Image.new("RGB", (64, 64), rgb)]])
        with torch.no_grad():
            output = model.generate(**batch, max_new_tokens=4, do_sample=False)
        answer = processor.tokenizer.decode(
            output[0, batch["input_ids"].shape[1] :], skip_special_tokens=True
        )
        assert answer.strip() == name
