"""A small table type and its renderings: Markdown, LaTeX (booktabs), CSV and HTML.

Cells are numbers (printed with a precision chosen from their magnitude), text (printed as is), or
None, which is a gap: "—" in Markdown and HTML, "---" in LaTeX, an empty field in CSV. Never 0.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

Cell = float | int | str | None
GAP = "—"
LATEX_GAP = "---"


@dataclass(frozen=True)
class Table:
    """A titled table. `midrules` are row indices before which a rule is drawn (e.g. quoted rows)."""

    name: str  # file stem
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    notes: tuple[str, ...] = ()
    midrules: tuple[int, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"table {self.name}: row {row!r} has {len(row)} cells for {len(self.columns)} columns")

    def column(self, label: str) -> list[Cell]:
        index = self.columns.index(label)
        return [row[index] for row in self.rows]


def format_cell(value: Cell) -> str:
    """Display text: text as is, integers plainly, floats with 1/2/4 decimals for |v| >= 100 / >= 1 / < 1."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return GAP
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return f"{value}"
    magnitude = abs(float(value))
    decimals = 1 if magnitude >= 100 else 2 if magnitude >= 1 else 4
    return f"{float(value):.{decimals}f}"


def _csv_cell(value: Cell) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value if isinstance(value, str) else repr(value)


def to_markdown(table: Table) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(list(table.columns)), "|" + "|".join("---" for _ in table.columns) + "|"]
    out += [line([format_cell(v) for v in row]) for row in table.rows]
    out += [""] + [f"{note}  " for note in table.notes] if table.notes else []
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text).replace(GAP, LATEX_GAP).replace("×", r"$\times$")


def to_latex(table: Table) -> str:
    """A booktabs `table` environment (needs \\usepackage{booktabs})."""
    spec = "l" + "r" * (len(table.columns) - 1)
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{latex_escape(table.title)}}}",
           rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(latex_escape(c) for c in table.columns) + r" \\",
           r"\midrule"]
    for index, row in enumerate(table.rows):
        if index in table.midrules and index > 0:
            out.append(r"\midrule")
        out.append(" & ".join(latex_escape(format_cell(v)) for v in row) + r" \\")
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
    for index, row in enumerate(table.rows):
        css = ' class="rule"' if index in table.midrules and index > 0 else ""
        cells = "".join(f"<td>{html.escape(format_cell(v))}</td>" for v in row)
        body.append(f"<tr{css}>{cells}</tr>")
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
