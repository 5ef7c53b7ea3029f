"""Visual tokens and crops per image, plain or TokenPacker-HD, asked of the config (no weights needed).

Image sizes are (height, width) in the pixels of the model's own vision tower input: a tiny model with
48 px cells and a 336 px model pick the same HD grid for images of the same shape relative to a cell.
"""

from __future__ import annotations

from tokenpacker.hd import ORIGINAL_CELL_SIZE, crops_for_grid, select_grid, tokens_for_grid
from tokenpacker.modeling import TokenPackerConfig

ImageSize = tuple[int, int]  # (height, width) in pixels


def cell_size(config: TokenPackerConfig) -> int:
    """Side in pixels of one vision tower input (one HD crop)."""
    return config.vision_config.image_size


def check_image_size(image_size: ImageSize) -> ImageSize:
    if len(image_size) != 2 or any(int(side) != side or side <= 0 for side in image_size):
        raise ValueError(
            f"image_size={image_size!r} must be (height, width): two positive whole numbers of pixels"
        )
    height, width = image_size
    return int(height), int(width)


def resolve_image_size(config: TokenPackerConfig, image_size: ImageSize | None) -> ImageSize:
    """The given (height, width), or one square cell when None."""
    if image_size is None:
        return cell_size(config), cell_size(config)
    return check_image_size(image_size)


def hd_grid(config: TokenPackerConfig, image_size: ImageSize | None) -> tuple[int, int]:
    """(rows, cols) of crops the image is cut into: (1, 1) without HD."""
    if not config.is_hd:
        return 1, 1
    height, width = resolve_image_size(config, image_size)
    return select_grid(height, width, config.patch_num, cell_size=cell_size(config))


def visual_tokens(config: TokenPackerConfig, image_size: ImageSize | None = None) -> int:
    """LLM input positions one image takes: the projector's tokens per crop, and for HD the layout of
    DESIGN.md 1.4 (cells, "," and "\\n" separators, global view; a 1 x 1 HD grid still ends in "\\n")."""
    per_crop = config.tokens_per_crop()
    if not config.is_hd:
        return per_crop
    rows, cols = hd_grid(config, image_size)
    return tokens_for_grid(rows, cols, per_crop)


def crops_per_image(config: TokenPackerConfig, image_size: ImageSize | None = None) -> int:
    """Vision tower inputs per image: the HD cells plus a global view when there is more than one cell."""
    return crops_for_grid(*hd_grid(config, image_size))


def paper_image_size(config: TokenPackerConfig, image_size: ImageSize | None) -> ImageSize:
    """The image size a 336 px paper-scale model sees for an image of `image_size` at this model's cell
    size, so both choose the same HD grid."""
    height, width = resolve_image_size(config, image_size)
    scale = ORIGINAL_CELL_SIZE / cell_size(config)
    return round(height * scale), round(width * scale)
