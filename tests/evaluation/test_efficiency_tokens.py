"""Visual tokens and crops per image (evaluation/efficiency/tokens.py), plain and TokenPacker-HD."""

import pytest
from PIL import Image

from evaluation.efficiency import crops_per_image, llava15_config, visual_tokens
from evaluation.efficiency.tokens import paper_image_size
from tokenpacker.hd import visual_token_count
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_tokenizer, tiny_config, tiny_image_processor


@pytest.mark.parametrize(
    ("projector", "scale_factor", "tokens"),
    [
        ("mlp2x_gelu", 2, 576),
        ("tokenpacker", 2, 144),
        ("tokenpacker", 3, 64),
        ("tokenpacker", 4, 36),
        ("avgpool", 4, 36),
    ],
)
def test_plain_images_take_the_projector_tokens_whatever_their_size(projector, scale_factor, tokens):
    config = llava15_config("7b", projector, scale_factor, None)
    assert visual_tokens(config) == tokens
    assert visual_tokens(config, (300, 1200)) == tokens
    assert crops_per_image(config, (300, 1200)) == 1


@pytest.mark.parametrize("patch_num", [9, 16, 25])
@pytest.mark.parametrize("scale_factor", [2, 3, 4])
@pytest.mark.parametrize("image_size", [(336, 336), (672, 1008), (1344, 336), (800, 1300), (2000, 1500)])
def test_hd_tokens_agree_with_the_hd_module(patch_num, scale_factor, image_size):
    config = llava15_config("7b", "tokenpacker", scale_factor, patch_num)
    assert visual_tokens(config, image_size) == visual_token_count(*image_size, patch_num, scale_factor)


def test_hd_tokens_follow_the_design_formula():
    """672 x 1008 with patch_num 9 is cut 2 x 3: a*b*T + a*(b-1) + a + T + 1 with T = 144."""
    config = llava15_config("7b", "tokenpacker", 2, 9)
    assert visual_tokens(config, (672, 1008)) == 6 * 144 + 2 * 2 + 2 + 144 + 1
    assert crops_per_image(config, (672, 1008)) == 7


@pytest.mark.parametrize("image_size", [(48, 48), (96, 48), (48, 144), (150, 100)])
def test_counts_match_what_the_processor_feeds_the_model(image_size):
    config = tiny_config("tokenpacker", 3, patch_num=9)
    processor = TokenPackerProcessor(build_tiny_tokenizer(), tiny_image_processor(), config)
    height, width = image_size
    image = processor.preprocess_image(Image.new("RGB", (width, height)))
    assert visual_tokens(config, image_size) == len(image.token_ids)
    assert crops_per_image(config, image_size) == image.crops.shape[0]


def test_paper_image_size_keeps_the_image_shape_relative_to_a_cell():
    tiny = tiny_config("tokenpacker", 2, patch_num=9)  # 48 px cells
    assert paper_image_size(tiny, (96, 144)) == (672, 1008)
    assert paper_image_size(tiny, None) == (336, 336)
    paper = llava15_config("7b", "tokenpacker", 2, 9)
    assert visual_tokens(tiny, (96, 144)) == visual_tokens(paper, paper_image_size(tiny, (96, 144)))


@pytest.mark.parametrize("image_size", [(0, 10), (10, -1), (10,), (10.5, 10)])
def test_bad_image_sizes_are_rejected(image_size):
    config = llava15_config("7b", "tokenpacker", 2, 9)
    with pytest.raises(ValueError, match="must be \\(height, width\\)"):
        visual_tokens(config, image_size)
