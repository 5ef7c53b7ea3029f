"""Scenes of the synthetic world: what is in an image (the record) and how it is drawn.

A scene is a flat list of shapes and text items with pixel boxes on a canvas of width x height.
Sizes are set against the tiny model's 48 px input: shapes and large text scale with the short
side (readable after the `pad` mode shrinks the image to 48 px), small text has a fixed 7-9 px
font (5-7 px glyphs) that only survives at native resolution, i.e. with HD cropping.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evaluation.synthetic.vocabulary import (
    BACKGROUND,
    COLOR_NAMES,
    COLOR_WEIGHTS,
    COLORS,
    LETTERS,
    NUMBERS,
    SHAPE_WEIGHTS,
    SHAPES,
    WORDS,
)

BASE_SIZE = 48  # the tiny model's input size; all scales are relative to it
SMALL_FONT_PX = (7, 9)  # absolute, inclusive
LARGE_FONT_PX = (14, 22)  # at a 48 px short side, inclusive
SHAPE_PX = {"small": (9, 12), "large": (16, 20)}  # side at a 48 px short side, inclusive
PLACEMENT_TRIES = 40

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, x1/y1 exclusive


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPES
    color: str  # one of COLORS
    size: str  # "small" | "large"
    box: Box

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def probe(self) -> tuple[int, int]:
        """A pixel that is always painted in the shape's colour (the triangle's centroid)."""
        x0, y0, x1, y1 = self.box
        cx, cy = (x0 + x1 - 1) // 2, (y0 + y1 - 1) // 2
        if self.kind == "triangle":
            cy = y0 + (2 * (y1 - 1 - y0)) // 3
        return cx, cy


@dataclass(frozen=True)
class Text:
    content: str  # as drawn: "CAT", "42", "Q", "3+4"
    kind: str  # one of TEXT_KINDS
    color: str
    scale: str  # "small" | "large"
    font_px: int
    box: Box  # the ink's bounding box

    @property
    def answer(self) -> str:
        """What a reader answers: the lower-cased text ("cat", "42", "q")."""
        return self.content.lower()

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    shapes: tuple[Shape, ...]
    texts: tuple[Text, ...]

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict) -> Scene:
        return cls(
            width=record["width"],
            height=record["height"],
            shapes=tuple(Shape(**{**s, "box": tuple(s["box"])}) for s in record["shapes"]),
            texts=tuple(Text(**{**t, "box": tuple(t["box"])}) for t in record["texts"]),
        )


@cache
def _font(px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=px)  # bundled with Pillow: no download


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _text_content(rng: np.random.Generator, kind: str) -> str:
    if kind == "word":
        return _pick(rng, WORDS)
    if kind == "number":
        return _pick(rng, NUMBERS)
    if kind == "letter":
        return _pick(rng, LETTERS)
    if kind == "sum":
        a, b = rng.integers(1, 10, size=2)
        return f"{a}+{b}"
    raise ValueError(f"unknown text kind {kind!r}; expected word, number, letter or sum")


def _place(rng: np.random.Generator, w: int, h: int, width: int, height: int, taken: list[Box], margin: int, gap: int):
    """A random free box of w x h that keeps `gap` pixels from every taken box, or None."""
    if w > width - 2 * margin or h > height - 2 * margin:
        return None
    for _ in range(PLACEMENT_TRIES):
        x = int(rng.integers(margin, width - margin - w + 1))
        y = int(rng.integers(margin, height - margin - h + 1))
        box = (x, y, x + w, y + h)
        if all(x + w + gap <= a0 or a1 + gap <= x or y + h + gap <= b0 or b1 + gap <= y for a0, b0, a1, b1 in taken):
            return box
    return None


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    n_shapes: int,
    text_kinds: tuple[str, ...] = (),
    text_scale: str | None = None,
) -> Scene | None:
    """Shapes with distinct (colour, kind) pairs and the requested text items, none overlapping.

    text_scale: "small", "large", or None for a coin flip per text item. Text colours are distinct.
    Returns None when the items do not fit; callers sample again.
    """
    scale = min(width, height) / BASE_SIZE
    margin, gap = max(1, round(2 * scale)), max(1, round(2 * scale))
    taken: list[Box] = []

    texts = []
    text_colors = rng.permutation(len(COLOR_NAMES))[: len(text_kinds)]
    for kind, color_index in zip(text_kinds, text_colors, strict=True):
        content = _text_content(rng, kind)
        size = text_scale or ("small" if rng.random() < 0.5 else "large")
        if size == "small":
            px = int(rng.integers(SMALL_FONT_PX[0], SMALL_FONT_PX[1] + 1))
        else:
            px = round(int(rng.integers(LARGE_FONT_PX[0], LARGE_FONT_PX[1] + 1)) * scale)
            while px > SMALL_FONT_PX[1] + 3 and _ink_size(content, px)[0] > width - 2 * margin - 4:
                px -= 1
        w, h = _ink_size(content, px)
        box = _place(rng, w, h, width, height, taken, margin, gap)
        if box is None:
            return None
        taken.append(box)
        texts.append(Text(content, kind, COLOR_NAMES[int(color_index)], size, px, box))

    combo_weights = np.outer(COLOR_WEIGHTS, SHAPE_WEIGHTS).ravel()
    combos = rng.choice(combo_weights.size, size=n_shapes, replace=False, p=combo_weights / combo_weights.sum())
    sizes = rng.random(n_shapes) < 0.5
    drawn = []
    for combo, is_small in sorted(zip(combos, sizes, strict=True), key=lambda pair: pair[1]):  # large ones first
        size = "small" if is_small else "large"
        lo, hi = SHAPE_PX[size]
        side = round(float(rng.uniform(lo, hi)) * scale)
        box = _place(rng, side, side, width, height, taken, margin, gap)
        if box is None:
            return None
        taken.append(box)
        color, kind = COLOR_NAMES[combo // len(SHAPES)], SHAPES[combo % len(SHAPES)]
        drawn.append(Shape(kind, color, size, box))
    drawn.sort(key=lambda s: (s.center[0], s.center[1]))  # record order: left to right
    return Scene(width, height, tuple(drawn), tuple(texts))


def _ink_size(content: str, px: int) -> tuple[int, int]:
    left, top, right, bottom = _font(px).getbbox(content)
    return right - left, bottom - top


def render_scene(scene: Scene) -> Image.Image:
    """Draw the scene: flat background, unantialiased shapes, antialiased text."""
    image = Image.new("RGB", (scene.width, scene.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    for shape in scene.shapes:
        fill = COLORS[shape.color]
        x0, y0, x1, y1 = shape.box
        if shape.kind == "circle":
            draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif shape.kind == "square":
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif shape.kind == "triangle":
            draw.polygon([((x0 + x1 - 1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
        elif shape.kind == "cross":
            side = x1 - x0
            bar = max(2, round(side / 3))
            lo = x0 + (side - bar) // 2
            draw.rectangle((lo, y0, lo + bar - 1, y1 - 1), fill=fill)
            lo = y0 + (side - bar) // 2
            draw.rectangle((x0, lo, x1 - 1, lo + bar - 1), fill=fill)
        else:
            raise ValueError(f"unknown shape {shape.kind!r}; expected one of {SHAPES}")
    for text in scene.texts:
        font = _font(text.font_px)
        left, top, _, _ = font.getbbox(text.content)
        draw.text((text.box[0] - left, text.box[1] - top), text.content, font=font, fill=COLORS[text.color])
    return image


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
