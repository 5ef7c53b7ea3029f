"""Scenes of the synthetic world: what is in an image (the record) and how it is drawn.

A scene is a list of shapes and text items with pixel boxes on a canvas of width x height.
Sizes are set against the tiny model's view: in `pad` mode an image is padded to a square and
resized to 48 px, so one "view pixel" is long_side / 48 image pixels. Shapes and large or
medium text are sized in view pixels (they look the same in every image in that view); small
text has a fixed size in image pixels, so on images larger than 48 px it is only readable at
native resolution, i.e. with TokenPacker-HD's cropping.
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
    SUM_OPERANDS,
    WORDS,
)

VIEW_SIZE = 48  # the tiny vision tower's input side
LONG_SIDES = (48, 64, 96, 128, 192)
ASPECTS = ((1, 1), (4, 3), (3, 4), (3, 2), (2, 3), (2, 1), (1, 2))  # width : height
SHAPE_VIEW_PX = {"small": (12, 14), "large": (18, 22)}  # side, inclusive
TEXT_VIEW_PX = {"large": (15, 18), "medium": (9, 11)}  # font size, inclusive
SMALL_TEXT_PX = (7, 9)  # font size in image pixels, inclusive
TEXT_SCALES = ("large", "medium", "small")
TEXT_KINDS = ("word", "number", "letter", "sum")
MARGIN_VIEW_PX = 1  # free border around the canvas
GAP_VIEW_PX = 2  # free space between two items, so they stay apart after resizing
PLACEMENT_TRIES = 30

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels; x1 and y1 exclusive


@dataclass(frozen=True)
class Shape:
    kind: str  # one of SHAPES
    color: str  # one of COLOR_NAMES
    size: str  # "small" | "large"
    box: Box  # a square

    @property
    def name(self) -> str:
        return f"{self.color} {self.kind}"

    @property
    def center(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    @property
    def probe(self) -> tuple[int, int]:
        """A pixel that is always painted in the shape's colour (for a triangle, below its centre)."""
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
    scale: str  # one of TEXT_SCALES
    font_px: int  # in image pixels
    box: Box  # the ink's bounding box

    @property
    def answer(self) -> str:
        """What a reader answers: the lower-cased text ("cat", "42", "q")."""
        return self.content.lower()


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    shapes: tuple[Shape, ...]  # left to right
    texts: tuple[Text, ...]

    @property
    def view_scale(self) -> float:
        """Image pixels per pixel of the tiny model's 48 px `pad` view."""
        return max(self.width, self.height) / VIEW_SIZE

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


def _ink_size(content: str, px: int) -> tuple[int, int]:
    left, top, right, bottom = _font(px).getbbox(content, mode="1")
    return right - left, bottom - top


def pick(rng: np.random.Generator, options):
    """One element of a sequence, uniformly."""
    return options[int(rng.integers(len(options)))]


def sample_canvas(rng: np.random.Generator) -> tuple[int, int]:
    """(width, height): a long side from LONG_SIDES and an aspect ratio from ASPECTS."""
    long_side = pick(rng, LONG_SIDES)
    aw, ah = pick(rng, ASPECTS)
    if aw >= ah:
        return long_side, round(long_side * ah / aw)
    return round(long_side * aw / ah), long_side


def _text_content(rng: np.random.Generator, kind: str) -> str:
    if kind == "word":
        return pick(rng, WORDS)
    if kind == "number":
        return pick(rng, NUMBERS)
    if kind == "letter":
        return pick(rng, LETTERS)
    if kind == "sum":
        a, b = rng.integers(SUM_OPERANDS[0], SUM_OPERANDS[1] + 1, size=2)
        return f"{a}+{b}"
    raise ValueError(f"unknown text kind {kind!r}; expected one of {TEXT_KINDS}")


def _font_px(rng: np.random.Generator, scale: str, view_scale: float) -> int:
    if scale == "small":
        return int(rng.integers(SMALL_TEXT_PX[0], SMALL_TEXT_PX[1] + 1))
    lo, hi = TEXT_VIEW_PX[scale]
    return round(int(rng.integers(lo, hi + 1)) * view_scale)


def _place(
    rng: np.random.Generator, w: int, h: int, canvas: tuple[int, int], taken: list[Box], margin: int, gap: int
):
    """A random free w x h box at least `gap` pixels from every taken box, or None.

    Draws PLACEMENT_TRIES candidate corners at once and keeps the first free one.
    """
    width, height = canvas
    if w > width - 2 * margin or h > height - 2 * margin:
        return None
    x = rng.integers(margin, width - margin - w + 1, size=PLACEMENT_TRIES)
    y = rng.integers(margin, height - margin - h + 1, size=PLACEMENT_TRIES)
    free = np.ones(PLACEMENT_TRIES, dtype=bool)
    for a0, b0, a1, b1 in taken:
        free &= (x + w + gap <= a0) | (a1 + gap <= x) | (y + h + gap <= b0) | (b1 + gap <= y)
    if not free.any():
        return None
    i = int(np.argmax(free))
    return int(x[i]), int(y[i]), int(x[i]) + w, int(y[i]) + h


def sample_scene(
    rng: np.random.Generator,
    canvas: tuple[int, int],
    n_shapes: int,
    text_kinds: tuple[str, ...] = (),
    text_scale: str | None = None,
) -> Scene | None:
    """Shapes with distinct (colour, kind) names and the requested text items, none overlapping.

    canvas: (width, height). text_scale: one of TEXT_SCALES, or None for a uniform choice per item.
    Text items get distinct colours. Returns None when the items do not fit; callers sample again.
    """
    view_scale = max(canvas) / VIEW_SIZE
    margin, gap = max(1, round(MARGIN_VIEW_PX * view_scale)), max(1, round(GAP_VIEW_PX * view_scale))
    taken: list[Box] = []

    texts = []
    text_colors = rng.permutation(len(COLOR_NAMES))[: len(text_kinds)]
    for kind, color_index in zip(text_kinds, text_colors, strict=True):
        content = _text_content(rng, kind)
        scale = text_scale or pick(rng, TEXT_SCALES)
        px = _font_px(rng, scale, view_scale)
        box = _place(rng, *_ink_size(content, px), canvas, taken, margin, gap)
        if box is None:
            return None
        taken.append(box)
        texts.append(Text(content, kind, COLOR_NAMES[int(color_index)], scale, px, box))

    # distinct (colour, kind) pairs drawn by the object prior, without replacement (Efraimidis-Spirakis keys)
    prior = np.outer(COLOR_WEIGHTS, SHAPE_WEIGHTS).ravel()  # index = colour * len(SHAPES) + kind
    keys = rng.random(prior.size) ** (1 / prior)
    combos = np.argsort(-keys, kind="stable")[:n_shapes]
    sizes = [pick(rng, ("small", "large")) for _ in range(n_shapes)]
    shapes = []
    for combo, size in sorted(zip(combos, sizes, strict=True), key=lambda pair: pair[1]):  # large ones first
        lo, hi = SHAPE_VIEW_PX[size]
        side = round(float(rng.uniform(lo, hi)) * view_scale)
        box = _place(rng, side, side, canvas, taken, margin, gap)
        if box is None:
            return None
        taken.append(box)
        shapes.append(Shape(SHAPES[combo % len(SHAPES)], COLOR_NAMES[combo // len(SHAPES)], size, box))
    shapes.sort(key=lambda s: s.center)
    return Scene(canvas[0], canvas[1], tuple(shapes), tuple(texts))


def render_scene(scene: Scene) -> Image.Image:
    """Draw the scene in flat colours: no antialiasing, so every painted pixel has its item's colour."""
    image = Image.new("RGB", (scene.width, scene.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.fontmode = "1"  # crisp glyphs: thin strokes of small text keep their colour
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
        left, top, _, _ = font.getbbox(text.content, mode="1")
        draw.text((text.box[0] - left, text.box[1] - top), text.content, font=font, fill=COLORS[text.color])
    return image


def encode_png(image: Image.Image) -> bytes:
    """PNG bytes with no metadata, so equal images give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
