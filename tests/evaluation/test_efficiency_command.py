"""`tokenpacker efficiency` (evaluation/efficiency/command.py) through add_arguments and run."""

import argparse
import json

import pytest

from evaluation.efficiency import FLOPS_CONVENTION, command
from evaluation.records import EFFICIENCY_METRICS
from tokenpacker.tiny import save_tiny_checkpoint, tiny_config


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tokenpacker efficiency")
    command.add_arguments(parser)
    return parser.parse_args(argv)


def test_paper_scale_cell_prints_a_table_and_writes_json(tmp_path, capsys):
    out = tmp_path / "report" / "cell.json"
    args = parse("--projector", "tokenpacker", "--scale-factor", "4", "--json", str(out))
    assert command.run(args) == 0
    printed = capsys.readouterr().out
    assert "FLOPs = 2 x MACs" in printed and "prefill_tflops_13b" in printed
    report = json.loads(out.read_text())
    assert report["flops_convention"] == FLOPS_CONVENTION
    assert report["metrics"]["visual_tokens"] == 36
    assert report["metrics"]["prefill_tflops_7b"] == pytest.approx(1.30, rel=0.01)


def test_hd_cell_uses_the_image_size(capsys):
    assert (
        command.run(parse("--projector", "tokenpacker", "--patch-num", "9", "--image-size", "672x1008")) == 0
    )
    assert any(line.split() == ["visual_tokens", "1,015"] for line in capsys.readouterr().out.splitlines())


def test_model_mode_reports_every_recorded_metric(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny", tiny_config("tokenpacker", 3))
    out = tmp_path / "metrics.json"
    quick = ("--runs", "1", "--warmup", "0", "--batch", "2", "--new-tokens", "2")
    assert command.run(parse("--model", str(checkpoint), *quick, "--json", str(out))) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert set(EFFICIENCY_METRICS) <= set(metrics)
    assert metrics["visual_tokens"] == 64 and metrics["projector_gflops"] > 0


def test_model_mode_refuses_cell_options(tmp_path):
    with pytest.raises(ValueError, match="--scale-factor and --patch-num go with --projector"):
        command.run(parse("--model", str(tmp_path), "--scale-factor", "3"))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--projector", "qformer"), "unknown projector 'qformer'"),
        (("--projector", "tokenpacker", "--scale-factor", "5"), "scale_factor=5 does not divide"),
        (("--projector", "tokenpacker", "--patch-num", "7"), "patch_num=7 is not supported"),
    ],
)
def test_bad_cells_raise_one_clear_error(argv, message):
    with pytest.raises(ValueError, match=message):
        command.run(parse(*argv))


def test_bad_image_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        parse("--projector", "tokenpacker", "--image-size", "big")
    assert "write HEIGHTxWIDTH in pixels" in capsys.readouterr().err


def test_model_or_projector_is_required():
    with pytest.raises(SystemExit):
        parse()
