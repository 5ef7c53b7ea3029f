"""TokenPacker-HD: grid selection, cropping, token layout and token counts (DESIGN.md 1.4).

A high-resolution image is resized into a canvas of rows x cols cells (cell = the vision
tower's input size, 336 px for CLIP ViT-L/14-336), cut into cells that each go through the
vision tower and projector, plus one global view when there is more than one cell. The LLM
sees the cells' tokens row by row with "," between neighbours and "\\n" after each row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tokenpacker.projectors.base import check_scale_factor

ORIGINAL_CELL_SIZE = 336  # the rule's constants (the 1.4 box, rounding) were set for 336 px cells

_GRIDS_9 = (
    (1, 1), (1, 2), (2, 1), (1, 3), (3, 1), (2, 2), (1, 4), (4, 1), (1, 5), (5, 1), (1, 6), (6, 1),
    (2, 3), (3, 2), (1, 7), (7, 1), (4, 2), (2, 4), (1, 8), (8, 1), (3, 3), (1, 9), (9, 1),
)  # fmt: skip
_GRIDS_16 = _GRIDS_9 + (
    (2, 5), (5, 2), (2, 6), (6, 2), (3, 4), (4, 3), (2, 7), (7, 2), (3, 5), (5, 3), (2, 8), (8, 2),
    (4, 4),
)  # fmt: skip
_GRIDS_25 = _GRIDS_16 + (
    (3, 6), (6, 3), (2, 9), (9, 2), (4, 5), (5, 4), (2, 10), (10, 2), (3, 7), (7, 3), (11, 2),
    (2, 11), (4, 6), (6, 4), (12, 2), (2, 12), (3, 8), (8, 3), (4, 6), (6, 4), (5, 5),
)  # fmt: skip

# (rows, cols) candidates per patch_num, in the original's order (the first best score wins,
# so the order matters; the repeated (4, 6) and (6, 4) are kept as the original lists them).
CANDIDATE_GRIDS: Mapping[int, tuple[tuple[int, int], ...]] = MappingProxyType(
    {9: _GRIDS_9, 16: _GRIDS_16, 25: _GRIDS_25}
)


@dataclass(frozen=True, eq=False)
class HDImage:
    """One sliced image: `crops` (n, 3, cell, cell) float32, normalised, row-major cells
    followed by the global view when rows * cols > 1 (so n = rows*cols + (rows*cols > 1))."""

    crops: torch.Tensor
    rows: int
    cols: int


def check_patch_num(patch_num: int) -> tuple[tuple[int, int], ...]:
    if patch_num not in CANDIDATE_GRIDS:
        allowed = ", ".join(str(n) for n in CANDIDATE_GRIDS)
        raise ValueError(f"patch_num={patch_num!r} is not supported; allowed values: {allowed}")
    return CANDIDATE_GRIDS[patch_num]


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer")


def select_grid(height: int, width: int, patch_num: int, cell_size: int = 336) -> tuple[int, int]:
    """The (rows, cols) grid TokenPacker-HD uses for an image of height x width pixels.

    Reproduces the original rule bit for bit: scores are computed in float32 torch ops in the
    original's order, rounding is torch.round (half to even) and ties go to the first
    candidate. Another `cell_size` treats the image as if scaled by 336 / cell_size, so
    small test models pick the grids the 336 px model would pick for the scaled image.
    """
    candidates = check_patch_num(patch_num)
    _check_positive(height=height, width=width, cell_size=cell_size)
    scale = ORIGINAL_CELL_SIZE / cell_size
    size = torch.tensor([height * scale, width * scale], dtype=torch.float32)  # (2,) h, w
    h, w = size[0], size[1]
    grids = torch.tensor(candidates, dtype=torch.int64)  # (K, 2) rows, cols
    cells = grids * ORIGINAL_CELL_SIZE  # (K, 2) candidate canvas h, w in pixels
    cell_area = cells[:, 0] * cells[:, 1]  # (K,) int64, as the original's box_area
    ratios = cells / size  # (K, 2) float32, as the original's int / int true division
    ratio = torch.minimum(ratios[:, 0], ratios[:, 1])  # (K,) scale that fits the canvas
    fill = torch.round(h * ratio) * torch.round(w * ratio) / cell_area
    # IoU of boxes [0, 0, canvas h, canvas w] and [0, 0, 1.4h, 1.4w], both anchored at 0.
    target = size * 1.4  # (2,)
    target_area = target[0] * target[1]
    overlap = torch.minimum(cells, target)  # (K, 2) float32
    inter = overlap[:, 0] * overlap[:, 1]
    union = cell_area + target_area - inter
    iou = inter / (union + 1e-5)
    score = fill + iou * 0.1
    best = int(torch.argmax(score))  # first maximum on ties
    return candidates[best]


def crops_for_grid(rows: int, cols: int) -> int:
    """Vision tower inputs of one HD image: the cells, plus the global view when there is more than one."""
    cells = rows * cols
    return cells + 1 if cells > 1 else 1


def tokens_for_grid(rows: int, cols: int, tokens_per_crop: int) -> int:
    """LLM input length of one HD image: cells' tokens, a "," between neighbours, a "\\n" per
    row, then the global view and its "\\n" when there is more than one cell. Works for any
    projector: pass its own `num_tokens`."""
    _check_positive(rows=rows, cols=cols, tokens_per_crop=tokens_per_crop)
    cells = rows * cols
    global_view = tokens_per_crop + 1 if cells > 1 else 0
    return cells * tokens_per_crop + rows * (cols - 1) + rows + global_view


def visual_token_count(
    height: int, width: int, patch_num: int, scale_factor: int, grid: int = 24, cell_size: int = 336
) -> int:
    """Visual tokens TokenPacker-HD feeds the LLM for one image, T = (grid / scale_factor)^2
    tokens per cell (DESIGN.md 1.4)."""
    check_scale_factor(scale_factor, grid)
    rows, cols = select_grid(height, width, patch_num, cell_size)
    return tokens_for_grid(rows, cols, (grid // scale_factor) ** 2)


def _fit_size(height: int, width: int, box_h: int, box_w: int) -> tuple[int, int]:
    """Size (h, w) of the image scaled to touch the box, aspect kept; Python round() as the
    original (clamped to 1 px where the original would produce an empty image)."""
    h_ratio, w_ratio = box_h / height, box_w / width
    if h_ratio <= w_ratio:
        return box_h, max(1, min(box_w, round(width * h_ratio)))
    return max(1, min(box_h, round(height * w_ratio))), box_w


def slice_image(
    image: Image.Image,
    patch_num: int,
    *,
    cell_size: int,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> HDImage:
    """Cut an image into the selected grid of cell_size crops, plus a global view.

    As the original: normalise first, resize with bilinear F.interpolate (no antialias) to
    fit the (cell*rows, cell*cols) canvas, place top-left on a canvas of zeros (normalised
    space), cut row-major. The global view resizes that whole padded canvas to the size the
    original image would have inside one cell (computed from the original h and w, so the
    padding is squeezed in with the image), again placed top-left on a zero cell.
    """
    _check_positive(cell_size=cell_size)
    pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())  # (h, w, 3)
    pixels = pixels.permute(2, 0, 1).to(torch.float32).div(255)  # (3, h, w)
    mean = torch.as_tensor(image_mean, dtype=torch.float32)[:, None, None]
    std = torch.as_tensor(image_std, dtype=torch.float32)[:, None, None]
    pixels = (pixels - mean) / std
    height, width = pixels.shape[-2:]
    rows, cols = select_grid(height, width, patch_num, cell_size)

    canvas = _resize_onto_zeros(pixels, (height, width), cell_size * rows, cell_size * cols)
    crops = (
        canvas.reshape(3, rows, cell_size, cols, cell_size)
        .permute(1, 3, 0, 2, 4)
        .reshape(rows * cols, 3, cell_size, cell_size)
    )
    if rows * cols > 1:
        global_view = _resize_onto_zeros(canvas, (height, width), cell_size, cell_size)
        crops = torch.cat([crops, global_view[None]])
    return HDImage(crops=crops.contiguous(), rows=rows, cols=cols)


def _resize_onto_zeros(
    pixels: torch.Tensor, original_hw: tuple[int, int], box_h: int, box_w: int
) -> torch.Tensor:
    """(3, h, w) -> (3, box_h, box_w): resize to the original image's fit in the box, top-left."""
    fit_h, fit_w = _fit_size(*original_hw, box_h, box_w)
    resized = F.interpolate(pixels[None], size=(fit_h, fit_w), mode="bilinear", align_corners=False)[0]
    return F.pad(resized, (0, box_w - fit_w, 0, box_h - fit_h))


def hd_layout_index(rows: int, cols: int, tokens_per_crop: int) -> torch.LongTensor:
    """Indices into the table cat([crop_tokens.reshape(-1, H), comma[None], newline[None]])
    that give the LLM input sequence of one HD image; len == tokens_for_grid(...)."""
    _check_positive(rows=rows, cols=cols, tokens_per_crop=tokens_per_crop)
    cells = rows * cols
    num_crops = crops_for_grid(rows, cols)
    comma, newline = num_crops * tokens_per_crop, num_crops * tokens_per_crop + 1
    # Each cell contributes its T token indices and one separator: "," or, after the last
    # cell of a row, "\n".
    per_cell = torch.empty(rows, cols, tokens_per_crop + 1, dtype=torch.long)
    per_cell[..., :tokens_per_crop] = torch.arange(cells * tokens_per_crop).view(rows, cols, -1)
    per_cell[..., tokens_per_crop] = comma
    per_cell[:, -1, tokens_per_crop] = newline
    parts = [per_cell.flatten()]
    if cells > 1:
        global_tokens = torch.arange(cells * tokens_per_crop, num_crops * tokens_per_crop)
        parts += [global_tokens, torch.tensor([newline])]
    return torch.cat(parts)


def layout_hd_tokens(
    crop_tokens: torch.Tensor, rows: int, cols: int, comma: torch.Tensor, newline: torch.Tensor
) -> torch.Tensor:
    """(n, T, H) projector tokens of one image's crops (global view last) -> (L, H) LLM
    input with the "," and "\\n" embeddings (each (H,)) placed as hd_layout_index says."""
    num_crops, tokens_per_crop, hidden = crop_tokens.shape
    expected = crops_for_grid(rows, cols)
    if num_crops != expected:
        raise ValueError(
            f"crop_tokens has {num_crops} crops but a {rows}x{cols} grid needs {expected} "
            "(cells row-major, then the global view when rows*cols > 1)"
        )
    table = torch.cat(
        [
            crop_tokens.reshape(-1, hidden),
            comma.to(crop_tokens.dtype)[None],
            newline.to(crop_tokens.dtype)[None],
        ]
    )  # (n*T + 2, H)
    return table[hd_layout_index(rows, cols, tokens_per_crop).to(table.device)]
