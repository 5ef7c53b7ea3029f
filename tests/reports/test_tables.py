"""Paper tables: golden files, every cell equal to its source file, quoted rows marked, ablations."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest

from reports.errors import ReportInputError
from reports.load import load_results
from reports.reference import read_reference
from reports.render import GAP, Table, to_csv, to_latex, to_markdown
from reports.scores import ScoreColumn, score_columns
from reports.tables import (
    CHANCE_LABEL,
    ablation_tables,
    equal_budget_table,
    interval_table,
    main_table,
    paired_table,
)

# cell_id of the suite fixture -> its main-table row (written by hand: the test does not ask the code)
SUITE_ROWS = {
    "mlp": "mlp2x_gelu",
    "tp_s2": "tokenpacker (s=2)",
    "tp_s4": "tokenpacker (s=4)",
    "tp_s2_hd9": "tokenpacker (s=2, N=9)",
    "cabs_144": "c_abstractor",
    "tp_s3": "tokenpacker (s=3) [suite] †",
}
LMMS_ROWS = {
    "checkpoints__llava-tokenpacker-s3/20250301_101500_results.json": "tokenpacker (s=3) [checkpoints/llava-tokenpacker-s3]",
    "liuhaotian__llava-v1.5-7b/20250302_090000_results.json": "unknown (liuhaotian/llava-v1.5-7b)",
}
SCORE_HEADERS = {
    ("gqa", "exact_match"): "GQA ‡",
    ("mme", "mme_perception_score"): "MME-P (perception)",
    ("mme", "mme_cognition_score"): "MME-C (cognition)",
    ("pope", "pope_f1_score"): "POPE (F1) ‡",
    ("pope", "pope_accuracy"): "POPE (acc) ‡",
    ("syn_count", "exact_match"): "syn_count (exact_match)",
}
EFFICIENCY_HEADERS = {
    "visual_tokens": "Visual tokens",
    "prefill_tflops_7b": "TFLOPs (7B, 2 FLOPs/MAC)",
    "ttft_ms": "TTFT (ms)",
}


@pytest.fixture(scope="module")
def table(fixtures: Path) -> Table:
    results = load_results([fixtures / "suite", fixtures / "lmms_eval"])
    quoted, _ = read_reference(fixtures / "paper_results.csv")
    return main_table(
        results, score_columns(results, primary_only=True), quoted, reference_name="paper_results.csv"
    )


def _cell(table: Table, row: str, column: str):
    labels = table.column(table.columns[0])
    return table.rows[labels.index(row)][table.columns.index(column)]


def _source_values(fixtures: Path) -> list[tuple[str, str, float]]:
    """(row, column header, value) for every number in the fixture files, read with csv/json only."""
    values = []
    with open(fixtures / "suite" / "results.csv", encoding="utf-8") as stream:
        for record in csv.DictReader(stream):
            if record["status"] != "ok":
                continue
            header = EFFICIENCY_HEADERS.get(record["metric"]) if record["task"] == "efficiency" else None
            # the suite runs lmms-eval's gqa / mme as local_gqa / local_mme: same column
            header = header or SCORE_HEADERS.get((record["task"].removeprefix("local_"), record["metric"]))
            if header:
                values.append((SUITE_ROWS[record["cell_id"]], header, float(record["value"])))
    for name, row in LMMS_ROWS.items():
        payload = json.loads((fixtures / "lmms_eval" / name).read_text(encoding="utf-8"))
        for task, entry in payload["results"].items():
            for key, value in entry.items():
                header = SCORE_HEADERS.get((task, key.split(",")[0]))
                if header and isinstance(value, float):
                    values.append((row, header, value))
    return values


def test_every_main_table_cell_equals_its_source_file(table: Table, fixtures: Path) -> None:
    values = _source_values(fixtures)
    assert len(values) > 30
    for row, header, value in values:
        assert _cell(table, row, header) == value, (row, header)


def test_written_csv_and_markdown_hold_the_source_values(table: Table, fixtures: Path) -> None:
    csv_rows = {r[table.columns[0]]: r for r in csv.DictReader(to_csv(table).splitlines())}
    md_lines = [line for line in to_markdown(table).splitlines() if line.startswith("| ")]
    md_header = [c.strip() for c in md_lines[0].strip("|").split(" | ")]
    md_rows = {
        cells[0]: cells
        for cells in ([c.strip() for c in line.strip("|").split(" | ")] for line in md_lines[1:])
    }
    for row, header, value in _source_values(fixtures):
        assert float(csv_rows[row][header]) == value  # full precision
        shown = md_rows[row][md_header.index(header)]
        assert abs(float(shown) - value) <= 0.5e-4, (row, header, shown)  # at most 4 decimals, rounded


def test_nothing_reported_is_a_gap_not_zero(table: Table) -> None:
    assert _cell(table, "c_abstractor", "MME-P (perception)") is None
    assert _cell(table, "unknown (liuhaotian/llava-v1.5-7b)", "Visual tokens") is None
    assert f"| {GAP} |" in to_markdown(table)


def test_failed_cell_is_labelled(table: Table) -> None:
    assert _cell(table, "tokenpacker (s=3) [suite] †", "GQA ‡") == "failed"


def test_baseline_row_first_and_relative_column(table: Table) -> None:
    assert table.rows[0][0] == "mlp2x_gelu"
    assert _cell(table, "mlp2x_gelu", "Rel. to mlp2x_gelu (%)") == pytest.approx(100.0)
    # tokenpacker s=2 against mlp over GQA, MME-P, MME-C, syn_count (the columns the baseline reports)
    expected = 100 * (0.61 / 0.62 + 1493.2 / 1510.7 + 310.0 / 355.4 + 0.75 / 0.80) / 4
    assert _cell(table, "tokenpacker (s=2)", "Rel. to mlp2x_gelu (%)") == pytest.approx(expected)


def test_quoted_rows_are_marked_and_verbatim(table: Table) -> None:
    quoted = [row for row in table.rows if "(quoted, paper)" in str(row[0])]
    assert len(quoted) == 4
    llava = _cell(table, "LLaVA-1.5 [mlp2x_gelu, s=1] (quoted, paper)", "MME-P (perception)")
    assert llava == "1510.7"  # the text of the reference CSV, in its column, never in MME-C
    assert _cell(table, "LLaVA-1.5 [mlp2x_gelu, s=1] (quoted, paper)", "MME-C (cognition)") is None
    assert any("quoted, paper" in note and "not measured" in note for note in table.notes)
    first_quoted = table.column(table.columns[0]).index(quoted[0][0])
    assert first_quoted in table.midrules  # a rule sets the quoted rows apart from the measured ones
    latex_lines = to_latex(table).splitlines()
    assert (
        latex_lines[[i for i, line in enumerate(latex_lines) if "(quoted, paper)" in line][0] - 1]
        == r"\midrule"
    )


def test_chance_row(table: Table) -> None:
    assert _cell(table, CHANCE_LABEL, "syn_count (exact_match)") == 0.25
    assert _cell(table, CHANCE_LABEL, "GQA ‡") is None


def test_mixed_sample_counts_are_flagged(table: Table) -> None:
    assert any(
        note.startswith("‡ GQA: rows scored on different sample counts (n = 100, 200, 12578)")
        for note in table.notes
    )


def test_mme_perception_and_cognition_apart() -> None:
    assert ScoreColumn("mme", "mme_perception_score").label == "MME-P (perception)"
    assert ScoreColumn("mme", "mme_cognition_score").label == "MME-C (cognition)"
    assert ScoreColumn("syn_mme", "mme_cognition_score").label == "Syn. MME-C (cognition)"


def test_column_order_and_primary_metrics(fixtures: Path) -> None:
    """Real benchmarks in paper order, then their synthetic counterparts, then other tasks; only the
    primary metrics of known benchmarks."""
    results = load_results([fixtures / "suite", fixtures / "lmms_eval"])
    synthetic = results[results["task"] == "pope"].assign(task="syn_pope", row_label="x", origin="x")
    columns = score_columns(pd.concat([results, synthetic]), primary_only=True)
    assert [c.label for c in columns] == [
        "GQA",
        "MME-P (perception)",
        "MME-C (cognition)",
        "POPE (F1)",
        "POPE (acc)",
        "Syn. POPE (F1)",
        "Syn. POPE (acc)",
        "syn_count (exact_match)",
    ]


@pytest.mark.parametrize("suffix", ["md", "tex", "csv"])
def test_golden_tables(fixtures: Path, suffix: str) -> None:
    """Regenerate with tests/reports/fixtures/make_fixtures.py only after an intended change."""
    results = load_results([fixtures / "suite", fixtures / "lmms_eval"])
    quoted, _ = read_reference(fixtures / "paper_results.csv")
    columns = score_columns(results, primary_only=True)
    tables = [
        main_table(results, columns, quoted, reference_name="paper_results.csv"),
        *ablation_tables(results, columns),
        equal_budget_table(results, columns),
    ]
    render = {"md": to_markdown, "tex": to_latex, "csv": to_csv}[suffix]
    goldens = sorted(path.name for path in (fixtures / "golden").glob(f"*.{suffix}"))
    assert sorted(f"{t.name}.{suffix}" for t in tables) == goldens
    for t in tables:
        assert render(t) == (fixtures / "golden" / f"{t.name}.{suffix}").read_text(encoding="utf-8"), t.name


def test_ablation_grid_of_the_suite(fixtures: Path) -> None:
    results = load_results([fixtures / "suite"])
    tables = {t.name: t for t in ablation_tables(results, score_columns(results, primary_only=True))}
    grid = tables["ablation_tokenpacker_gqa__exact_match"]
    assert grid.columns == ("scale_factor \\ patch_num", "N=9", "N=n/a")
    assert grid.rows == (("s=2", 0.64, 0.61), ("s=3", None, "failed"), ("s=4", None, 0.59))


def test_equal_budget_table(fixtures: Path) -> None:
    results = load_results([fixtures / "suite"])
    table = equal_budget_table(results, [ScoreColumn("gqa", "exact_match")])
    assert table.rows == (
        (144, "c_abstractor", "c_abstractor", 0.6),
        (144, "tokenpacker", "tokenpacker (s=2)", 0.61),
    )


def test_interval_table(fixtures: Path) -> None:
    results = load_results([fixtures / "suite", fixtures / "lmms_eval"])
    columns = [
        ScoreColumn("gqa", "exact_match"),
        ScoreColumn("mme", "mme_perception_score"),
        ScoreColumn("pope", "pope_f1_score"),
    ]
    table = interval_table(results, columns, resamples=500)
    rows = {(r[0], r[1]): r for r in table.rows}
    value, n, low, high, note = rows[("mlp2x_gelu", "GQA")][2:]
    assert (value, n, note) == (0.62, 100, "") and low < 0.62 < high
    assert high - low == pytest.approx(2 * 1.96 * (0.62 * 0.38 / 100) ** 0.5, abs=0.03)
    assert "has 1 question(s), not a pair" in rows[("mlp2x_gelu", "MME-P (perception)")][-1]
    assert (
        "not the per-sample statistic"
        in rows[("tokenpacker (s=3) [checkpoints/llava-tokenpacker-s3]", "POPE (F1)")][-1]
    )
    assert rows[("unknown (liuhaotian/llava-v1.5-7b)", "GQA")][-1] == "no per-sample log"


def test_paired_table(fixtures: Path) -> None:
    results = load_results([fixtures / "suite", fixtures / "lmms_eval"])
    table = paired_table(results, [ScoreColumn("gqa", "exact_match")], baseline="mlp2x_gelu", resamples=500)
    rows = {r[0]: r for r in table.rows}
    n, difference, low, high, p = rows["tokenpacker (s=2)"][2:7]
    assert (n, difference) == (100, pytest.approx(0.61 - 0.62)) and low < difference < high and 0 < p <= 1
    # the lmms-eval run scored other documents under the same doc_ids: no pairs, with the reason
    assert "different docs" in rows["tokenpacker (s=3) [checkpoints/llava-tokenpacker-s3]"][-1]


def test_ambiguous_baseline_is_refused(fixtures: Path) -> None:
    results = load_results([fixtures / "suite"])
    with pytest.raises(ReportInputError, match="baseline 'tokenpacker' matches 4 rows"):
        main_table(results, score_columns(results, primary_only=True), baseline="tokenpacker")
