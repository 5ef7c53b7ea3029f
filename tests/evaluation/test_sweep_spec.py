"""Sweep specs: cell expansion, validation before anything runs, built-in specs, --only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evaluation.sweep.spec import SweepSpecError, load_spec, select_cells
from evaluation.synthetic.scene import LONG_SIDES, VIEW_SIZE
from evaluation.tasks import scoring_digest
from tokenpacker.hd import select_grid


def write_spec(folder: Path, **fields) -> Path:
    spec = {"name": "t", "recipe": "tiny", "tasks": ["syn_a"], **fields}
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def test_groups_expand_to_the_product_of_their_axes_with_the_shared_axes(tmp_path):
    path = write_spec(
        tmp_path,
        axes={"seed": [0, 1]},
        groups=[
            {"projector": "mlp2x_gelu"},
            {"projector": ["tokenpacker", "avgpool"], "scale_factor": [2, 4]},
            {"projector": "tokenpacker", "scale_factor": 3, "patch_num": 9, "seed": 5},
        ],
    )
    cells = load_spec(path).cells
    assert [c.cell_id for c in cells] == [
        "mlp2x_gelu-seed0",
        "mlp2x_gelu-seed1",
        "tokenpacker-s2-seed0",
        "tokenpacker-s2-seed1",
        "tokenpacker-s4-seed0",
        "tokenpacker-s4-seed1",
        "avgpool-s2-seed0",
        "avgpool-s2-seed1",
        "avgpool-s4-seed0",
        "avgpool-s4-seed1",
        "tokenpacker-s3-hd9-seed5",
    ]
    mlp, hd = cells[0], cells[-1]
    assert (mlp.projector, mlp.scale_factor, mlp.patch_num, mlp.seed, mlp.recipe) == (
        "mlp2x_gelu",
        None,
        None,
        0,
        "tiny",
    )
    assert (hd.scale_factor, hd.patch_num, hd.seed, hd.tasks) == (3, 9, 5, ("syn_a",))


def test_model_and_recipe_axes_reach_the_cell_and_its_id(tmp_path):
    path = write_spec(
        tmp_path,
        groups=[
            {
                "projector": "tokenpacker",
                "scale_factor": 2,
                "model.multi_level_layers": [[2, 3, 4, 5]],
                "recipe.stage2.lr": [1e-4, 2e-4],
            }
        ],
    )
    cells = load_spec(path).cells
    assert [c.recipe_overrides for c in cells] == [{"stage2.lr": 1e-4}, {"stage2.lr": 2e-4}]
    assert cells[0].model == {"multi_level_layers": [2, 3, 4, 5]}
    assert (
        cells[0].cell_id == "tokenpacker-s2-seed0-model.multi_level_layers=_2_3_4_5_-recipe.stage2.lr=0.0001"
    )
    assert json.loads(json.dumps(cells[0].to_dict()))["recipe_overrides"] == {"stage2.lr": 1e-4}


@pytest.mark.parametrize(
    ("group", "cell", "message"),
    [
        (
            {"projector": "tokenpacker", "scale_factor": 5},
            "tokenpacker-s5-seed0",
            "allowed: [1, 2, 3, 4, 6, 8, 12, 24]",
        ),
        (
            {"projector": "tokenpacker", "scale_factor": 2, "patch_num": 7},
            "tokenpacker-s2-hd7-seed0",
            "allowed values: 9, 16, 25",
        ),
        (
            {"projector": "tokenpackr", "scale_factor": 2},
            "tokenpackr-s2-seed0",
            "unknown projector 'tokenpackr'",
        ),
        ({"projector": "tokenpacker"}, "tokenpacker-seed0", "needs a scale_factor"),
        ({"projector": "mlp2x_gelu", "scale_factor": 2}, "mlp2x_gelu-s2-seed0", "keeps every token"),
        ({"projector": "avgpool", "scale_factor": 2, "seed": -1}, "avgpool-s2-seed-1", "seed=-1"),
    ],
)
def test_a_bad_value_is_rejected_naming_the_cell(tmp_path, group, cell, message):
    path = write_spec(tmp_path, groups=[{"projector": "mlp2x_gelu"}, group])
    with pytest.raises(SweepSpecError, match=f"cell {cell}: .*{message.replace('[', '.').replace(']', '.')}"):
        load_spec(path)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"groups": [{"projecter": "mlp2x_gelu"}]}, "unknown axis 'projecter'"),
        ({"groups": [{"model.": 3, "projector": "mlp2x_gelu"}]}, "unknown axis 'model.'"),
        ({"sedd": 1}, r"unknown keys \['sedd'\]"),
        ({"tasks": []}, "tasks must be a non-empty list"),
        ({"world": {"preset": "huge"}}, "unknown synthetic world preset 'huge'"),
        ({"evaluation": {"batch_size": 0}}, "batch_size=0 must be an integer >= 1"),
        ({"evaluation": {"batchsize": 4}}, r"unknown options \['batchsize'\]"),
        (
            {"groups": [{"projector": "mlp2x_gelu"}, {"projector": "mlp2x_gelu", "scale_factor": 1}]},
            "appears twice",
        ),
        ({"recipe": None, "groups": [{"projector": "mlp2x_gelu"}]}, "needs a recipe"),
        ({"jobs": 0}, "jobs must be a whole number of at least 1 or 'auto', not 0"),
        ({"jobs": "all"}, "jobs must be a whole number"),
    ],
)
def test_a_bad_spec_is_rejected_before_anything_runs(tmp_path, fields, message):
    with pytest.raises(SweepSpecError, match=message):
        load_spec(write_spec(tmp_path, **fields))


def test_jobs_default_to_one_and_auto_means_one_per_core(tmp_path):
    groups = [{"projector": "mlp2x_gelu"}]
    assert load_spec(write_spec(tmp_path, groups=groups)).jobs == 1
    assert load_spec(write_spec(tmp_path, groups=groups, jobs=3)).jobs == 3
    assert load_spec(write_spec(tmp_path, groups=groups, jobs="auto")).jobs is None
    assert load_spec("tiny").jobs is None and load_spec("smoke").jobs is None  # tiny CPU cells side by side


def test_a_checkpoint_cell_takes_its_config_from_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "llava-hd"
    checkpoint.mkdir()
    config = {
        "projector_type": "tokenpacker",
        "scale_factor": 2,
        "image_aspect_ratio": "slice",
        "patch_num": 16,
    }
    (checkpoint / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (cell,) = load_spec(write_spec(tmp_path, recipe=None, groups=[{"checkpoint": str(checkpoint)}])).cells
    assert cell.cell_id == "tokenpacker-s2-hd16-seed0-from-llava-hd"
    assert (cell.trains, cell.checkpoint, cell.recipe) == (False, str(checkpoint.resolve()), None)
    with pytest.raises(SweepSpecError, match="cannot be set"):
        load_spec(write_spec(tmp_path, groups=[{"checkpoint": str(checkpoint), "scale_factor": 4}]))
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_spec(write_spec(tmp_path, groups=[{"checkpoint": str(tmp_path / "missing")}]))


def test_fingerprints_separate_training_from_evaluation(tmp_path):
    base = {"groups": [{"projector": "tokenpacker", "scale_factor": 2}]}
    (one,) = load_spec(write_spec(tmp_path, **base)).cells
    (more_tasks,) = load_spec(write_spec(tmp_path, tasks=["syn_a", "syn_b"], **base)).cells
    (other_world,) = load_spec(write_spec(tmp_path, world={"seed": 1}, **base)).cells
    assert one.train_fingerprint() == more_tasks.train_fingerprint()
    assert one.evaluation_fingerprint() != more_tasks.evaluation_fingerprint()
    assert one.efficiency_fingerprint() == more_tasks.efficiency_fingerprint()
    assert one.train_fingerprint() != other_world.train_fingerprint()


def test_a_change_of_scoring_code_redoes_evaluation_but_not_training(tmp_path, monkeypatch):
    (cell,) = load_spec(write_spec(tmp_path, groups=[{"projector": "tokenpacker", "scale_factor": 2}])).cells
    before = (cell.train_fingerprint(), cell.evaluation_fingerprint(), cell.efficiency_fingerprint())
    monkeypatch.setattr("evaluation.sweep.spec.scoring_digest", lambda: "changed")
    after = (cell.train_fingerprint(), cell.evaluation_fingerprint(), cell.efficiency_fingerprint())
    assert before[0] == after[0] and before[2] == after[2] and before[1] != after[1]


def test_the_scoring_digest_covers_each_task_file(tmp_path, monkeypatch):
    (tmp_path / "syn_x").mkdir()
    (tmp_path / "syn_x" / "utils.py").write_text("A = 1\n")
    monkeypatch.setattr("evaluation.tasks.TASKS_DIR", tmp_path)
    first = scoring_digest()
    (tmp_path / "syn_x" / "utils.py").write_text("A = 2\n")
    assert scoring_digest() != first


def test_builtin_tiny_spec_is_the_main_job_of_issue_8():
    spec = load_spec("tiny")
    cells = {(c.projector, c.scale_factor, c.patch_num) for c in spec.cells}
    assert ("mlp2x_gelu", None, None) in cells
    assert {("tokenpacker", s, None) for s in (2, 3, 4)} <= cells
    (other,) = {p for p, _, _ in cells} - {"mlp2x_gelu", "tokenpacker"}
    assert {(other, s, None) for s in (2, 3, 4)} <= cells
    assert any(p == "tokenpacker" and n is not None for p, _, n in cells)
    assert all(c.trains and c.efficiency is not None for c in spec.cells)
    assert spec.world is not None and spec.report is not None and spec.tasks == ("syn_all",)


def test_the_tiny_sweep_counts_hd_tokens_on_the_world_s_largest_canvas():
    (hd,) = [cell for cell in load_spec("tiny").cells if cell.patch_num is not None]
    side = max(LONG_SIDES)
    assert tuple(hd.efficiency["image_size"]) == (side, side)
    assert select_grid(side, side, hd.patch_num, cell_size=VIEW_SIZE) == (3, 3)  # HD's full 9-cell budget


def test_builtin_smoke_spec_is_smaller():
    smoke, tiny = load_spec("smoke"), load_spec("tiny")
    assert smoke.world.preset == "smoke" and len(smoke.cells) < len(tiny.cells)


def test_an_unknown_spec_name_lists_the_builtin_ones():
    with pytest.raises(FileNotFoundError, match="built-in specs: smoke, tiny"):
        load_spec("tinyy")


def test_only_selects_cells_by_pattern():
    spec = load_spec("tiny")
    assert [c.cell_id for c in select_cells(spec, ["tokenpacker-s[23]-*", "mlp*"])] == [
        "mlp2x_gelu-seed0",
        "tokenpacker-s2-seed0",
        "tokenpacker-s3-seed0",
    ]
    assert select_cells(spec, ["avgpool-s2-seed0,avgpool-s4-seed0"])[1].cell_id == "avgpool-s4-seed0"
    assert select_cells(spec, None) == spec.cells
    with pytest.raises(
        SweepSpecError,
        match=r"--only nothing: matches no cell of tiny; cells: tokenpacker-s4-hd9-seed0-recipe\.stage2\.max_steps=400, mlp2x_gelu-seed0",
    ):
        select_cells(spec, ["nothing"])
