"""Small LLaVA-JSON data sets with real PNG files, written into tmp folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}
SHAPES = ("square", "circle")
SIZES = ((48, 48), (64, 40), (40, 56))  # (width, height): square and both padded orientations


def draw_shape(colour: str, shape: str, size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, (250, 250, 250))
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    draw = ImageDraw.Draw(image)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=COLOURS[colour])
    return image


def write_images(folder: Path) -> list[tuple[str, str, str]]:
    """One PNG per (colour, shape); returns (file name, colour, shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, (colour, shape) in enumerate((c, s) for c in COLOURS for s in SHAPES):
        name = f"{colour}_{shape}.png"
        draw_shape(colour, shape, SIZES[index % len(SIZES)]).save(folder / name)
        written.append((name, colour, shape))
    return written


def caption_samples(images: list[tuple[str, str, str]]) -> list[dict]:
    """Stage-1 style: an image and its caption."""
    return [
        {
            "id": f"cap-{name}",
            "image": name,
            "conversations": [
                {"from": "human", "value": "Describe the image briefly.\n<image>"},
                {"from": "gpt", "value": f"a {colour} {shape}"},
            ],
        }
        for name, colour, shape in images
    ]


def instruction_samples(images: list[tuple[str, str, str]]) -> list[dict]:
    """Stage-2 style: two-turn questions about the image, plus text-only chats."""
    samples = [
        {
            "id": f"vqa-{name}",
            "image": name,
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is the colour of the shape?"},
                {"from": "gpt", "value": colour},
                {"from": "human", "value": "What shape is it?"},
                {"from": "gpt", "value": shape},
            ],
        }
        for name, colour, shape in images
    ]
    samples += [
        {
            "id": f"text-{colour}",
            "conversations": [
                {"from": "human", "value": f"Is {colour} a colour?"},
                {"from": "gpt", "value": "yes"},
            ],
        }
        for colour in COLOURS
    ]
    return samples


@dataclass(frozen=True)
class LlavaFiles:
    """A tmp folder of PNGs with caption (stage 1) and instruction (stage 2) JSON files."""

    root: Path
    images: tuple[tuple[str, str, str], ...]

    @property
    def image_folder(self) -> Path:
        return self.root / "images"

    @property
    def stage1(self) -> Path:
        return self.root / "stage1.json"

    @property
    def stage2(self) -> Path:
        return self.root / "stage2.json"

    def captions(self) -> list[dict]:
        return caption_samples(list(self.images))

    def instructions(self) -> list[dict]:
        return instruction_samples(list(self.images))

    def write(self, name: str, records: object) -> Path:
        path = self.root / name
        path.write_text(json.dumps(records))
        return path

    def recipe(self, **stage_settings: object) -> dict:
        """A recipe mapping that trains the tiny model (s=4) on these files in seconds."""
        stage = {
            "image_folder": str(self.image_folder),
            "per_device_train_batch_size": 2,
            "max_steps": 4,
            "save_steps": 2,
            "logging_steps": 1,
            "warmup_ratio": 0.0,
            "seed": 0,
            **stage_settings,
        }
        return {
            "model": {"source": "tiny", "projector_type": "tokenpacker", "scale_factor": 4},
            "stage1": {
                **stage,
                "data_path": str(self.stage1),
                "conversation_template": "plain",
                "learning_rate": 1e-3,
            },
            "stage2": {
                **stage,
                "data_path": str(self.stage2),
                "conversation_template": "vicuna_v1",
                "learning_rate": 1e-3,
            },
        }


@pytest.fixture
def llava(tmp_path: Path) -> LlavaFiles:
    files = LlavaFiles(tmp_path / "data", tuple(write_images(tmp_path / "data" / "images")))
    files.write("stage1.json", files.captions())
    files.write("stage2.json", files.instructions())
    return files
