"""The vision tower's features are CLIPVisionModel's hidden states, from only the layers read."""

from __future__ import annotations

import pytest
import torch

from tokenpacker.tiny import tiny_config
from tokenpacker.vision import VisionTower


@pytest.mark.parametrize(
    ("select_layer", "multi_level_layers", "depth"),
    [(-2, (2, 3, 4, 5), 5), (-1, (0, 1), 6), (0, (0,), 0), (-7, (-3,), 4)],
)
def test_features_are_clips_hidden_states_from_the_layers_read(select_layer, multi_level_layers, depth):
    torch.manual_seed(0)
    config = tiny_config("tokenpacker", 2).vision_config
    tower = VisionTower(config, select_layer, multi_level_layers).eval()
    pixels = torch.randn(2, 3, config.image_size, config.image_size)
    ran = []
    for index, layer in enumerate(tower.clip.encoder.layers):
        layer.register_forward_hook(lambda *_, index=index: ran.append(index))

    single, multi = tower(pixels)

    assert ran == list(range(depth))
    ran.clear()
    states = tower.clip(pixels, output_hidden_states=True).hidden_states
    assert torch.equal(single, states[select_layer][:, 1:])
    assert torch.equal(multi, torch.cat([states[i][:, 1:] for i in multi_level_layers], dim=-1))
