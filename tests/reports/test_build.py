"""The report folder: page links, every table in three formats, and no half-written output on errors."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from reports.build import build_report
from reports.errors import ReportInputError


def test_report_has_every_table_in_three_formats(built_report: Path) -> None:
    stems = {path.stem for path in (built_report / "tables").iterdir()}
    assert {
        "main_table",
        "reference_quoted",
        "equal_budget",
        "uncertainty",
        "paired_tests",
        "inputs",
        "failures",
        "all_scores",
        "question_types",
        "question_type_intervals",
    } <= stems
    for stem in stems:
        for suffix in ("md", "tex", "csv"):
            assert (built_report / "tables" / f"{stem}.{suffix}").is_file()


@pytest.mark.parametrize("page", ["report.md", "index.html"])
def test_page_links_every_table_and_plot(built_report: Path, page: str) -> None:
    text = (built_report / page).read_text(encoding="utf-8")
    links = set(re.findall(r'(?:href|src)="([^"#]+)"', text)) | set(re.findall(r"\]\(([^)]+)\)", text))
    written = {path.relative_to(built_report).as_posix() for path in built_report.glob("*/*")}
    assert written <= links
    assert all((built_report / link).is_file() for link in links)


def test_html_shows_the_plots(built_report: Path) -> None:
    text = (built_report / "index.html").read_text(encoding="utf-8")
    shown = set(re.findall(r'<img src="([^"]+)"', text))
    assert shown == {path.relative_to(built_report).as_posix() for path in built_report.glob("plots/*.png")}


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(ReportInputError):
        build_report([tmp_path / "missing"], out, reference_csv=None)
    assert list(tmp_path.iterdir()) == []


def _files(folder: Path) -> dict[Path, bytes]:
    return {path.relative_to(folder): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_an_error_while_writing_keeps_the_earlier_report(
    fixtures: Path, tmp_path: Path, built_report: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(built_report, out)
    before = _files(out)
    with pytest.raises(ReportInputError, match="baseline 'tokenpacker' matches"):
        build_report([fixtures / "suite"], out, reference_csv=None, baseline="tokenpacker", resamples=200)
    assert _files(out) == before
    assert [path.name for path in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_an_earlier_report_is_replaced(fixtures: Path, tmp_path: Path, built_report: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(built_report, out)
    (out / "plots" / "stale.png").write_bytes(b"old")
    page = build_report(
        [fixtures / "lmms_eval" / "liuhaotian__llava-v1.5-7b"], out, reference_csv=None, resamples=200
    )
    assert page == out / "index.html" and page.is_file()
    assert not (out / "plots" / "stale.png").exists()
    assert "tokenpacker (s=2)" not in (out / "report.md").read_text(encoding="utf-8")
    assert [path.name for path in tmp_path.iterdir()] == ["out"]


def test_a_folder_that_is_not_a_report_is_refused(fixtures: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ReportInputError, match="not empty and holds no earlier report"):
        build_report([fixtures / "suite"], tmp_path, reference_csv=None)
    assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
