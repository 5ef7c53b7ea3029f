"""A small table type and its renderings: Markdown, LaTeX (booktabs), CSV and HTML.

Cells are numbers, text (printed as is) or None, which is a gap: "—" in Markdown and HTML, "---" in
LaTeX, an empty field in CSV. Never 0. Within a column, floats share one number of decimals: the
fewest (at most `MAX_DECIMALS`) that print every value of the column exactly, so a file's 0.605 is
printed 0.605 and not 0.6; CSV keeps full precision (repr).
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

Cell = float | int | str | None
GAP = "—"
LATEX_GAP = "---"
MAX_DECIMALS = 4
PRECISION_NOTE = (
    f"Markdown, LaTeX and HTML show at most {MAX_DECIMALS} decimals; the CSV holds full precision."
)


@dataclass(frozen=True)
class Table:
    """A titled table. `midrules` are row indices before which a rule is drawn (e.g. quoted rows);
    `fixed_decimals` maps a column to the decimals its floats are shown with (derived numbers such as
    percentages), instead of the fewest that print the column exactly. With `uniform_decimals` False
    (tables whose rows mix benchmarks and units), each float gets the fewest decimals it needs."""

    name: str  # file stem
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    midrules: tuple[int, ...] = ()
    fixed_decimals: dict[str, int] = field(default_factory=dict)
    uniform_decimals: bool = True

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.name}: row {row!r} has {len(row)} cells for {len(self.columns)} columns"
                )

    def column(self, label: str) -> list[Cell]:
        index = self.columns.index(label)
        return [row[index] for row in self.rows]


def is_gap(value: Cell) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def decimals_needed(value: float) -> int:
    """Fewest decimals (<= MAX_DECIMALS) that print `value` exactly."""
    for decimals in range(MAX_DECIMALS + 1):
        if math.isclose(round(value, decimals), value, rel_tol=0.0, abs_tol=1e-12):
            return decimals
    return MAX_DECIMALS


def column_decimals(values: Iterable[Cell]) -> int:
    """Decimals for the floats of one column: the most any of them needs."""
    floats = [v for v in values if isinstance(v, float) and not math.isnan(v)]
    return max((decimals_needed(v) for v in floats), default=0)


def format_cell(value: Cell, decimals: int = MAX_DECIMALS) -> str:
    """Display text: gap mark, text as is, integers plainly, floats with `decimals` decimals."""
    if is_gap(value):
        return GAP
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value}"
    return f"{float(value):.{decimals}f}"


def formatted_rows(table: Table) -> list[list[str]]:
    """Every cell as display text, with per-column (or, without `uniform_decimals`, per-cell) decimals."""
    decimals = [
        table.fixed_decimals.get(name, column_decimals(row[i] for row in table.rows))
        for i, name in enumerate(table.columns)
    ]
    return [
        [
            format_cell(value, decimals[i] if table.uniform_decimals else column_decimals([value]))
            for i, value in enumerate(row)
        ]
        for row in table.rows
    ]


def _csv_cell(value: Cell) -> str:
    if is_gap(value):
        return ""
    return value if isinstance(value, str) else repr(value)


def to_markdown(table: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(table.columns), "|" + "|".join("---" for _ in table.columns) + "|"]
    out += [line(cells) for cells in formatted_rows(table)]
    if table.notes:
        out += [""] + [f"{note}  " for note in table.notes]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {GAP: LATEX_GAP, "×": r"$\times$", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "·": r"$\cdot$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SYMBOLS.get(ch, _LATEX_SPECIAL.get(ch, ch)) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs})."""
    spec = "l" + "r" * (len(table.columns) - 1)
    out = [
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        rf"\caption{{{latex_escape(table.title)}}}",
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(latex_escape(c) for c in table.columns) + r" \\",
        r"\midrule",
    ]
    for index, cells in enumerate(formatted_rows(table)):
        if index in table.midrules and index > 0:
            out.append(r"\midrule")
        out.append(" & ".join(latex_escape(c) for c in cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if table.notes:
        out.append(r"\par\footnotesize " + " ".join(latex_escape(n) for n in table.notes))
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """Full-precision values (repr), gaps as empty fields; notes are not included."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([_csv_cell(v) for v in row] for row in table.rows)
    return buffer.getvalue()


def to_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for index, cells in enumerate(formatted_rows(table)):
        css = ' class="rule"' if index in table.midrules and index > 0 else ""
        body.append(f"<tr{css}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in table.notes)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{notes}"


def write_table(table: Table, out_dir: Path) -> dict[str, Path]:
    """Write <name>.md, .tex and .csv into `out_dir`; returns {"md": path, "tex": path, "csv": path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for suffix, render in (("md", to_markdown), ("tex", to_latex), ("csv", to_csv)):
        path = out_dir / f"{table.name}.{suffix}"
        path.write_text(render(table), encoding="utf-8")
        written[suffix] = path
    return written
