"""The learnability benchmark end to end on the smoke world, with images (stage 2) and in words (stage 0):
one row per question kind, with its chance and majority levels."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.sweep.spec import WorldSpec
from evaluation.sweep.stages import build_world
from evaluation.synthetic.questions import KINDS, draw_scene
from evaluation.synthetic.scene import render_scene
from evaluation.synthetic.world import SHIPPED_TOWER
from tokenpacker.processing import TokenPackerProcessor
from tokenpacker.tiny import build_tiny_tokenizer, save_tiny_checkpoint, tiny_config, tiny_image_processor

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", [["0"], ["0", "--anneal"], ["2"]])
def test_learnability_benchmark_prints_a_curve_for_every_kind(tmp_path, stage):
    command = [sys.executable, str(REPO / "benchmarks" / "bench_learnability.py"), "--preset", "smoke"]
    command += ["--stage", *stage]
    command += ["--world-root", str(tmp_path), "--steps", "2", "--every", "1", "--per-kind", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    rows = {line.split()[0]: line.split()[1:] for line in done.stdout.splitlines() if line.startswith("syn_")}
    assert set(rows) == {f"{kind.task}/{kind.name}" for kind in KINDS}
    for kind in KINDS:
        chance, majority, *accuracies = rows[f"{kind.task}/{kind.name}"]
        assert float(chance) == round(1 / kind.answers, 2) and float(majority) == 1.0  # one question per kind
        assert len(accuracies) == 2
        assert all(0.0 <= float(a) <= 1.0 for a in accuracies)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--patch-size", "5"],
            "model: tiny patch_size 5 does not divide the 48 px image; use 2, 3, 4, 6 or 8",
        ),
        (["--anneal"], "--anneal trains the LLM alone on text; give it with --stage 0"),
        (
            ["--patch-size", "2"],
            f"the vision tower in {SHIPPED_TOWER} does not fit this tiny model (patch_size 4 vs 2); pretrain one "
            "for it with tokenpacker synth-tower, or set model.tiny_patch_size to the tower's",
        ),
    ],
)
def test_bad_settings_are_one_line_before_any_world_is_built(tmp_path, arguments, message):
    command = [sys.executable, str(REPO / "benchmarks" / "bench_learnability.py"), *arguments]
    command += ["--world-root", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"bench_learnability.py: error: {message}"
    assert not any(tmp_path.iterdir())


def test_tower_probe_prints_each_tower_and_property_at_every_pooling():
    command = [sys.executable, str(REPO / "benchmarks" / "bench_tower_probe.py")]
    command += ["--samples", "24", "--held-out", "12", "--steps", "2", "--batch", "4", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    rows = [line.split() for line in done.stdout.splitlines()]
    assert rows[0] == ["tower", "property", "chance", "pool", "1", "pool", "2", "pool", "3", "pool", "4"]
    assert sorted((row[0], row[1]) for row in rows[1:]) == [
        ("random", "colour"),
        ("random", "size"),
        ("random", "word"),
        ("random", "word-hd9"),
        ("shipped", "colour"),
        ("shipped", "size"),
        ("shipped", "word"),
        ("shipped", "word-hd9"),
    ]
    assert all(len(row) == 7 and all(0 <= float(v) <= 1 for v in row[2:]) for row in rows[1:])


def test_tower_probe_cuts_hd_views_as_the_tiny_hd_processor_does():
    loader = importlib.util.spec_from_file_location(
        "bench_tower_probe", REPO / "benchmarks" / "bench_tower_probe.py"
    )
    probe = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(probe)
    kind = next(k for k in KINDS if k.task == "syn_textvqa")
    scene = draw_scene(kind, np.random.default_rng(5))[0]
    processor = TokenPackerProcessor(
        build_tiny_tokenizer(),
        tiny_image_processor(),
        tiny_config(patch_size=4, patch_num=probe.HD_PATCH_NUM),
    )
    assert torch.equal(probe.hd_crops(scene), processor.preprocess_image(render_scene(scene)).crops)


def test_tower_probe_refuses_a_tower_that_is_not_one_in_one_line(tmp_path):
    command = [sys.executable, str(REPO / "benchmarks" / "bench_tower_probe.py"), "--towers", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"bench_tower_probe.py: error: --towers: model.vision_tower {tmp_path} is not a CLIP"
    )


def test_mmbench_letters_benchmark_measures_each_finished_cell(tmp_path):
    world = build_world(tmp_path / "sweep" / "world", WorldSpec("smoke", 0))
    (tmp_path / "sweep" / "world" / "state.json").write_text(json.dumps({"paths": world.to_dict()}))
    for cell, config in (
        ("mlp", tiny_config("mlp2x_gelu", 1, patch_size=4)),
        ("hd", tiny_config("tokenpacker", 4, patch_num=9, patch_size=4)),
    ):
        save_tiny_checkpoint(tmp_path / "sweep" / "cells" / cell / "train" / "stage2" / "final", config)
    command = [sys.executable, str(REPO / "benchmarks" / "bench_mmbench_letters.py"), str(tmp_path / "sweep")]
    done = subprocess.run([*command, "--limit", "3"], capture_output=True, text=True, timeout=300, check=True)
    lines = done.stdout.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.startswith("teacher-forced letters over 3 rotations")
    )
    shares = {
        line.split()[0]: dict(item.rsplit(" ", 1) for item in line.split(maxsplit=1)[1].split("  "))
        for line in lines[header + 1 :]
    }
    assert set(shares) == {"hd", "mlp"}
    assert set(shares["mlp"]) == {"own", "forced: copied", "forced: looked up", "pooled to 36", "pooled to 9"}
    assert set(shares["hd"]) == {"own", "forced: copied", "forced: looked up"}  # several views: not pooled
    assert all(
        round(float(share) * 3, 1) in (0, 1, 2, 3) for s in shares.values() for share in s.values()
    )  # of 3

    done = subprocess.run([*command[:-1], str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and done.stderr.strip().endswith("give a sweep folder that has one")


def test_image_cache_benchmark_times_each_projector_with_and_without_the_cache():
    command = [sys.executable, str(REPO / "benchmarks" / "bench_image_cache.py")]
    command += ["--steps", "2", "--batch_size", "2", "--threads", "1"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    rows = [line.split() for line in done.stdout.splitlines()[2:]]
    assert [row[0] for row in rows] == ["mlp2x_gelu", "tokenpacker", "tokenpacker"]
    # crops per step: HD cuts 3 x 3 cells and a global view
    assert [row[-4] for row in rows] == ["2", "2", "20"]
    assert all(float(row[-3]) > 0 and float(row[-2]) > 0 and row[-1].endswith("x") for row in rows)
