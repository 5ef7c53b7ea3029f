"""The vision tower's features are CLIPVisionModel's hidden states, from only the layers read."""

from __future__ import annotations

import pytest
import torch

from tokenpacker.tiny import tiny_config
from tokenpacker.vision import VisionTower, crop_key


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


def test_remembered_features_equal_fresh_ones_and_skip_the_tower_for_crops_seen():
    torch.manual_seed(0)
    config = tiny_config("tokenpacker", 2).vision_config
    tower = VisionTower(config, -2, (2, 3, 4, 5)).eval()
    first, second = torch.randn(2, 3, config.image_size, config.image_size)
    passes = []
    tower.clip.encoder.layers[0].register_forward_hook(lambda _, args, __: passes.append(len(args[0])))
    tower.remember_features()

    single, multi = tower(torch.stack([first, second, first]))  # a crop twice in one batch passes once
    again_single, again_multi = tower(torch.stack([second, first]))

    assert passes == [2]
    fresh_single, fresh_multi = tower.features(tower.hidden_states(torch.stack([first, second])))
    assert torch.allclose(single, fresh_single[[0, 1, 0]], atol=1e-6)
    assert torch.allclose(multi, fresh_multi[[0, 1, 0]], atol=1e-6)
    assert torch.equal(again_single, single[[1, 0]]) and torch.equal(again_multi, multi[[1, 0]])


def test_forgetting_features_passes_every_crop_again():
    config = tiny_config("tokenpacker", 2).vision_config
    tower = VisionTower(config, -2, (2, 3, 4, 5)).eval()
    pixels = torch.randn(1, 3, config.image_size, config.image_size)
    passes = []
    tower.clip.encoder.layers[0].register_forward_hook(lambda *_: passes.append(1))
    tower.remember_features()
    tower(pixels)
    tower.remember_features(False)
    tower(pixels)
    tower(pixels)
    assert len(passes) == 3 and tower.memo is None


def test_a_crop_key_tells_apart_pixels_dtype_shape_and_device():
    crop, cpu = torch.zeros(3, 4, 4), torch.device("cpu")
    changed = crop.clone()
    changed[0, 0, 0] = 1e-7
    keys = {
        crop_key(crop, cpu),
        crop_key(changed, cpu),
        crop_key(crop.double(), cpu),
        crop_key(crop.bfloat16(), cpu),
        crop_key(crop.view(3, 2, 8), cpu),
        crop_key(crop, torch.device("cuda", 1)),  # a replica's features, kept apart
    }
    assert len(keys) == 6
    assert crop_key(crop, cpu) == crop_key(crop.clone(), cpu)
