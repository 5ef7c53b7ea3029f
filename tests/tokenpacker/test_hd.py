"""Tests for TokenPacker-HD grid selection, slicing, token layout and counts (DESIGN.md 1.4)."""

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from tokenpacker.hd import (
    CANDIDATE_GRIDS,
    HDImage,
    hd_layout_index,
    layout_hd_tokens,
    select_grid,
    slice_image,
    tokens_for_grid,
    visual_token_count,
)

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

# The candidate lists copied from the text of DESIGN.md 1.4.
DESIGN_9 = (
    "(1,1) (1,2) (2,1) (1,3) (3,1) (2,2) (1,4) (4,1) (1,5) (5,1) (1,6) (6,1) (2,3) "
    "(3,2) (1,7) (7,1) (4,2) (2,4) (1,8) (8,1) (3,3) (1,9) (9,1)"
)
DESIGN_16_EXTRA = "(2,5) (5,2) (2,6) (6,2) (3,4) (4,3) (2,7) (7,2) (3,5) (5,3) (2,8) (8,2) (4,4)"
DESIGN_25_EXTRA = (
    "(3,6) (6,3) (2,9) (9,2) (4,5) (5,4) (2,10) (10,2) (3,7) (7,3) (11,2) (2,11) (4,6) (6,4) "
    "(12,2) (2,12) (3,8) (8,3) (4,6) (6,4) (5,5)"
)


def _parse(text: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in re.findall(r"\((\d+),(\d+)\)", text)]


def reference_grid(h: int, w: int, candidates, cell: int = 336) -> tuple[int, int]:
    """The DESIGN.md rule as a plain loop. Arithmetic is float32 (np.float32 scalars) because
    the original computes the scores with float32 torch tensors, which decides exact ties."""
    f = np.float32
    best, best_score = None, None
    for a, b in candidates:
        ch, cw = f(cell * a), f(cell * b)
        r = min(ch / f(h), cw / f(w))
        fill = np.round(f(h) * r) * np.round(f(w) * r) / f(cell * a * cell * b)
        th, tw = f(h) * f(1.4), f(w) * f(1.4)
        inter = min(ch, th) * min(cw, tw)
        union = f(cell * a * cell * b) + th * tw - inter
        score = fill + inter / (union + f(1e-5)) * f(0.1)
        if best_score is None or score > best_score:  # strict: the first maximum wins
            best, best_score = (a, b), score
    return best


def _sizes() -> list[tuple[int, int]]:
    rng = np.random.default_rng(0)
    log_uniform = np.exp(rng.uniform(np.log(10), np.log(4000), size=(300, 2))).round().astype(int)
    sizes = [(int(h), int(w)) for h, w in log_uniform]
    sizes += [(h, w) for h in (10, 100, 336, 500, 1000, 4000) for w in (10, 100, 336, 672, 2000, 4000)]
    sizes += [(10, 4000), (4000, 10), (12, 3999), (3999, 12), (150, 800), (800, 150)]
    return sizes


def test_candidate_grids_match_design_text():
    grids_9 = _parse(DESIGN_9)
    grids_16 = grids_9 + _parse(DESIGN_16_EXTRA)
    grids_25 = grids_16 + _parse(DESIGN_25_EXTRA)
    assert list(CANDIDATE_GRIDS) == [9, 16, 25]
    assert list(CANDIDATE_GRIDS[9]) == grids_9
    assert list(CANDIDATE_GRIDS[16]) == grids_16
    assert list(CANDIDATE_GRIDS[25]) == grids_25
    assert (len(grids_9), len(grids_16), len(grids_25)) == (23, 36, 57)


@pytest.mark.parametrize("patch_num", [9, 16, 25])
def test_select_grid_matches_plain_reference(patch_num):
    candidates = _parse(DESIGN_9)
    if patch_num >= 16:
        candidates += _parse(DESIGN_16_EXTRA)
    if patch_num == 25:
        candidates += _parse(DESIGN_25_EXTRA)
    sizes = _sizes()
    assert len(sizes) > 300
    got = [select_grid(h, w, patch_num) for h, w in sizes]
    want = [reference_grid(h, w, candidates) for h, w in sizes]
    assert got == want


def test_select_grid_hand_checked():
    for patch_num in (9, 16, 25):
        # (1,1) scores 1 + 0.1 * 336^2 / 470.4^2 = 1.051, beating (2,2) at 1.049.
        assert select_grid(336, 336, patch_num) == (1, 1)
    # A 672 px square: (3, 3) fills fully and its canvas is closest to the 1.4x box.
    assert select_grid(672, 672, 9) == (3, 3)
    # Very wide / very tall: one row with the most columns offered.
    assert select_grid(200, 4000, 9) == (1, 9)
    assert select_grid(4000, 200, 9) == (9, 1)


def test_select_grid_exact_tie_resolved_as_float32_original():
    # 150x800: (1,5) and (2,11) tie in exact arithmetic (0.979166...). The original's float32
    # scores keep the first, (1,5); a float64 evaluation with the 1e-5 term would pick (2,11).
    assert select_grid(150, 800, 25) == (1, 5)
    assert select_grid(800, 150, 25) == (5, 1)


@pytest.mark.parametrize("patch_num", [9, 16, 25])
def test_select_grid_cell_size_scales_the_image(patch_num):
    rng = np.random.default_rng(1)
    for h, w in rng.integers(2, 600, size=(60, 2)):
        h, w = int(h), int(w)
        # A 48 px cell sees the image as if it were 336 / 48 = 7 times larger.
        assert select_grid(h, w, patch_num, cell_size=48) == select_grid(7 * h, 7 * w, patch_num)
        assert select_grid(h, w, patch_num, cell_size=112) == select_grid(3 * h, 3 * w, patch_num)
        assert select_grid(h, w, patch_num, cell_size=336) == select_grid(h, w, patch_num)


def test_tokens_for_grid_hand_computed():
    assert tokens_for_grid(1, 1, 144) == 145  # 144 tokens and the row's "\n"
    assert tokens_for_grid(1, 5, 144) == 5 * 144 + 4 + 1 + 145
    assert tokens_for_grid(2, 3, 36) == 6 * 36 + 2 * 2 + 2 + 37


@pytest.mark.parametrize("scale_factor", [2, 3, 4])
def test_visual_token_count_is_formula_and_layout_length(scale_factor):
    t = (24 // scale_factor) ** 2
    for h, w in [(336, 336), (300, 1400), (900, 700), (1000, 40), (2000, 3000)]:
        for patch_num in (9, 16, 25):
            a, b = select_grid(h, w, patch_num)
            formula = a * b * t + a * (b - 1) + a + (t + 1 if a * b > 1 else 0)
            count = visual_token_count(h, w, patch_num, scale_factor)
            assert count == formula
            assert count == len(hd_layout_index(a, b, t))
    assert visual_token_count(336, 336, 9, 2) == 145


def test_visual_token_count_small_grid():
    # Tiny model: 6x6 patch grid, scale 3 -> 4 tokens per crop, 48 px cells.
    a, b = select_grid(70, 200, 9, cell_size=48)
    assert (a, b) == (1, 3)
    assert visual_token_count(70, 200, 9, 3, grid=6, cell_size=48) == 3 * 4 + 2 + 1 + 5


def test_layout_index_length_matches_count_for_every_candidate():
    for rows, cols in CANDIDATE_GRIDS[25]:
        for t in (1, 4, 36):
            index = hd_layout_index(rows, cols, t)
            assert index.dtype == torch.long
            assert len(index) == tokens_for_grid(rows, cols, t)


def _hand_built_tokens(num_crops: int, tokens_per_crop: int) -> torch.Tensor:
    # Token t of crop k has value 10 * k + t, so its origin can be read off the output.
    values = 10 * torch.arange(num_crops)[:, None] + torch.arange(tokens_per_crop)[None, :]
    return values[..., None].float()  # (n, T, 1)


COMMA, NEWLINE = -1.0, -2.0


def _layout(rows, cols, tokens_per_crop):
    n = rows * cols + (1 if rows * cols > 1 else 0)
    out = layout_hd_tokens(
        _hand_built_tokens(n, tokens_per_crop), rows, cols, torch.tensor([COMMA]), torch.tensor([NEWLINE])
    )
    return out[:, 0].tolist()


def test_layout_puts_separators_where_described():
    c, nl = COMMA, NEWLINE
    assert _layout(1, 1, 2) == [0, 1, nl]
    assert _layout(2, 2, 2) == [0, 1, c, 10, 11, nl, 20, 21, c, 30, 31, nl, 40, 41, nl]
    assert _layout(1, 3, 1) == [0, c, 10, c, 20, nl, 30, nl]
    assert _layout(3, 1, 1) == [0, nl, 10, nl, 20, nl, 30, nl]


def test_layout_hd_tokens_keeps_hidden_vectors():
    torch.manual_seed(0)
    crops = torch.randn(7, 3, 5)  # 2x3 grid + global view
    comma, newline = torch.randn(5), torch.randn(5)
    out = layout_hd_tokens(crops, 2, 3, comma, newline)
    assert out.shape == (tokens_for_grid(2, 3, 3), 5)
    assert torch.equal(out[:3], crops[0])
    assert torch.equal(out[3], comma)
    assert torch.equal(out[4:7], crops[1])
    assert torch.equal(out[11], newline)  # after the third crop of row 0
    assert torch.equal(out[-4:-1], crops[6])
    assert torch.equal(out[-1], newline)


def test_layout_hd_tokens_rejects_wrong_crop_count():
    with pytest.raises(ValueError, match="6 crops"):
        layout_hd_tokens(torch.zeros(6, 2, 3), 2, 3, torch.zeros(3), torch.zeros(3))


def _normalised(image: Image.Image) -> torch.Tensor:
    pixels = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1) / 255
    return (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def _reassemble(result: HDImage, cell: int) -> torch.Tensor:
    canvas = torch.empty(3, result.rows * cell, result.cols * cell)
    for i in range(result.rows):
        for j in range(result.cols):
            canvas[:, i * cell : (i + 1) * cell, j * cell : (j + 1) * cell] = result.crops[
                i * result.cols + j
            ]
    return canvas


def test_slice_image_constant_colour_fills_canvas_and_pads_with_zeros():
    image = Image.new("RGB", (200, 70), (200, 100, 50))  # PIL size is (width, height)
    result = slice_image(image, 9, cell_size=48, image_mean=MEAN, image_std=STD)
    assert (result.rows, result.cols) == (1, 3)
    assert result.crops.shape == (4, 3, 48, 48)  # three crops + global view
    assert result.crops.dtype == torch.float32
    canvas = _reassemble(result, 48)
    colour = (torch.tensor([200, 100, 50]) / 255 - torch.tensor(MEAN)) / torch.tensor(STD)
    # Scale min(48/70, 144/200) = 48/70: the image fills 48 x round(200 * 48 / 70) = 48 x 137.
    assert torch.allclose(canvas[:, :, :137], colour[:, None, None].expand(3, 48, 137), atol=1e-5)
    assert torch.all(canvas[:, :, 137:] == 0)
    # Global view: the padded canvas squeezed to the image's own fit in one cell,
    # round(70 * 48 / 200) = 17 rows by 48 columns, zeros below.
    global_view = result.crops[3]
    assert torch.all(global_view[:, 17:] == 0)
    assert torch.all(global_view[:, :17].abs().amax(dim=(1, 2)) > 0)


def test_slice_image_crops_tile_the_resized_canvas():
    rng = np.random.default_rng(2)
    image = Image.fromarray(rng.integers(0, 256, size=(130, 70, 3), dtype=np.uint8))  # h=130, w=70
    result = slice_image(image, 16, cell_size=48, image_mean=MEAN, image_std=STD)
    rows, cols = select_grid(130, 70, 16, cell_size=48)
    assert (result.rows, result.cols) == (rows, cols)
    assert rows * cols > 1
    assert result.crops.shape == (rows * cols + 1, 3, 48, 48)
    scale = min(48 * rows / 130, 48 * cols / 70)
    fit_h, fit_w = min(48 * rows, round(130 * scale)), min(48 * cols, round(70 * scale))
    resized = F.interpolate(_normalised(image)[None], size=(fit_h, fit_w), mode="bilinear")[0]
    expected = torch.zeros(3, 48 * rows, 48 * cols)
    expected[:, :fit_h, :fit_w] = resized
    assert torch.allclose(_reassemble(result, 48), expected, atol=1e-6)


def test_slice_image_single_cell_has_no_global_view():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, size=(48, 48, 3), dtype=np.uint8))
    result = slice_image(image, 9, cell_size=48, image_mean=MEAN, image_std=STD)
    assert (result.rows, result.cols) == (1, 1)
    assert result.crops.shape == (1, 3, 48, 48)
    assert torch.allclose(result.crops[0], _normalised(image), atol=1e-6)


def test_slice_image_accepts_non_rgb_input():
    result = slice_image(Image.new("L", (48, 48), 128), 9, cell_size=48, image_mean=MEAN, image_std=STD)
    assert result.crops.shape == (1, 3, 48, 48)


def test_bad_patch_num_names_the_value():
    with pytest.raises(ValueError, match=r"patch_num=7.*9, 16, 25"):
        select_grid(100, 100, 7)
    with pytest.raises(ValueError, match="patch_num=7"):
        visual_token_count(100, 100, 7, 2)


def test_bad_scale_factor_names_the_value_and_divisors():
    with pytest.raises(ValueError, match=r"scale_factor=5.*1, 2, 3, 4, 6, 8, 12, 24"):
        visual_token_count(100, 100, 9, 5)


@pytest.mark.parametrize("height, width", [(0, 100), (100, -3)])
def test_non_positive_sizes_rejected(height, width):
    with pytest.raises(ValueError, match="must be a positive"):
        select_grid(height, width, 9)
