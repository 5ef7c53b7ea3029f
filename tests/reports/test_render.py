"""Table renderings: gaps are never 0, decimals print file values exactly, LaTeX is booktabs."""

from __future__ import annotations

import csv
import io

from reports.render import GAP, LATEX_GAP, Table, format_cell, to_csv, to_html, to_latex, to_markdown

TABLE = Table(
    name="t",
    title="Scores & costs",
    columns=("config", "acc", "ms", "tokens", "note"),
    rows=(
        ("tokenpacker_s2", 0.605, 44.25, 144, "ok"),
        ("mlp", 0.62, 120.0, 576, None),
        ("c_abs", None, float("nan"), None, "x"),
    ),
    notes=("a note",),
    midrules=(2,),
)


def _markdown_cells(text: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def test_column_decimals_print_every_value_exactly() -> None:
    cells = _markdown_cells(to_markdown(TABLE))
    assert [row[1] for row in cells] == ["0.605", "0.620", GAP]
    assert [row[2] for row in cells] == ["44.25", "120.00", GAP]
    assert [row[3] for row in cells] == ["144", "576", GAP]


def test_long_floats_are_cut_at_four_decimals() -> None:
    assert format_cell(0.8602150537634409, 4) == "0.8602"


def test_fixed_decimals_override() -> None:
    table = Table(
        name="t",
        title="t",
        columns=("rel",),
        rows=((94.55108865295573,), (100.0,)),
        fixed_decimals={"rel": 1},
    )
    assert [row[0] for row in _markdown_cells(to_markdown(table))] == ["94.6", "100.0"]


def test_per_cell_decimals_for_mixed_columns() -> None:
    table = Table(name="t", title="t", columns=("value",), rows=((0.6,), (1510.7,)), uniform_decimals=False)
    assert [row[0] for row in _markdown_cells(to_markdown(table))] == ["0.6", "1510.7"]


def test_csv_keeps_full_precision_and_empty_gaps() -> None:
    rows = list(csv.reader(io.StringIO(to_csv(TABLE))))
    assert rows[0] == list(TABLE.columns)
    assert rows[1] == ["tokenpacker_s2", "0.605", "44.25", "144", "ok"]
    assert rows[3] == ["c_abs", "", "", "", "x"]


def test_latex_is_booktabs_and_escaped() -> None:
    text = to_latex(TABLE)
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert rule in text
    assert text.count(r"\midrule") == 2  # after the header and before row 2
    assert r"tokenpacker\_s2" in text and r"Scores \& costs" in text
    assert f"c\\_abs & {LATEX_GAP} & {LATEX_GAP}" in text


def test_html_marks_gaps_and_rules() -> None:
    text = to_html(TABLE)
    assert "Scores" not in text  # the title belongs to the page, not the table
    assert f"<td>{GAP}</td>" in text and 'class="rule"' in text
