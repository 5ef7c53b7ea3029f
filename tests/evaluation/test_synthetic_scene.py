"""Scenes: what is drawn is what the record says, items never overlap, sizes follow the 48 px view."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evaluation.synthetic.scene import (
    SHAPE_VIEW_PX,
    Scene,
    encode_png,
    render_scene,
    sample_canvas,
    sample_scene,
)
from evaluation.synthetic.vocabulary import BACKGROUND, COLORS


def _scenes(count: int, text_kinds=("word", "number"), seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    scenes = []
    while len(scenes) < count:
        scene = sample_scene(rng, sample_canvas(rng), int(rng.integers(1, 5)), text_kinds)
        if scene is not None:
            scenes.append(scene)
    return scenes


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_items_are_inside_the_canvas_and_apart():
    for scene in _scenes(200):
        boxes = [s.box for s in scene.shapes] + [t.box for t in scene.texts]
        for box in boxes:
            assert 0 <= box[0] < box[2] <= scene.width and 0 <= box[1] < box[3] <= scene.height
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                assert not _overlap(a, b)


def test_shape_names_are_unique_and_text_colours_distinct():
    for scene in _scenes(200):
        names = [s.name for s in scene.shapes]
        assert len(names) == len(set(names))
        colors = [t.color for t in scene.texts]
        assert len(colors) == len(set(colors))


def test_shape_sizes_are_set_in_view_pixels():
    for scene in _scenes(200):
        for shape in scene.shapes:
            side = (shape.box[2] - shape.box[0]) / scene.view_scale
            lo, hi = SHAPE_VIEW_PX[shape.size]
            assert lo - 0.5 <= side <= hi + 0.5


def test_rendered_pixels_match_the_record():
    """Each shape's probe pixel has its colour; each text's box holds its colour and background
    only; the rest of the canvas is background."""
    for scene in _scenes(100):
        pixels = np.asarray(Image.open(io.BytesIO(encode_png(render_scene(scene)))).convert("RGB"))
        assert pixels.shape == (scene.height, scene.width, 3)
        painted = np.zeros(pixels.shape[:2], dtype=bool)
        for shape in scene.shapes:
            x, y = shape.probe
            assert tuple(pixels[y, x]) == COLORS[shape.color], shape
            painted[shape.box[1] : shape.box[3], shape.box[0] : shape.box[2]] = True
        for text in scene.texts:
            x0, y0, x1, y1 = text.box
            region = pixels[y0:y1, x0:x1].reshape(-1, 3)
            ink = (region == COLORS[text.color]).all(axis=1)
            assert ink.any() and (ink | (region == BACKGROUND).all(axis=1)).all(), text
            painted[y0:y1, x0:x1] = True
        assert (pixels[~painted] == BACKGROUND).all()


def test_record_round_trip():
    for scene in _scenes(20):
        assert Scene.from_record(scene.to_record()) == scene


@pytest.mark.parametrize("seed", [0, 1])
def test_same_generator_state_same_scene(seed):
    assert _scenes(5, seed=seed) == _scenes(5, seed=seed)


def test_canvas_covers_sizes_and_aspect_ratios():
    rng = np.random.default_rng(0)
    canvases = {sample_canvas(rng) for _ in range(500)}
    assert {max(c) for c in canvases} == {48, 64, 96, 128, 192}
    assert (
        any(w > h for w, h in canvases)
        and any(w < h for w, h in canvases)
        and any(w == h for w, h in canvases)
    )
