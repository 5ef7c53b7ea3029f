"""Quoted reference results (shared/reference/paper_results.csv): read verbatim, printed as quoted.

The text of each cell is kept exactly as written in the file, so a quoted number is printed the way
the paper printed it. Columns other than the identifying ones are benchmark columns.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from reports.errors import ReportInputError

REFERENCE_ID_COLUMNS = ("method", "projector", "scale_factor", "visual_tokens", "source")


@dataclass(frozen=True)
class QuotedRow:
    """One quoted row; `values` maps a benchmark column of the file to its text ("" = not reported)."""

    method: str
    projector: str
    scale_factor: str
    visual_tokens: str
    source: str
    values: dict[str, str]

    @property
    def label(self) -> str:
        return f"{self.method} [{self.projector}, s={self.scale_factor}] (quoted, paper)"


def default_reference_csv() -> Path | None:
    """`shared/reference/paper_results.csv` beside the repository (../shared/reference/), if present."""
    candidate = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "paper_results.csv"
    return candidate if candidate.is_file() else None


def read_reference(path: Path) -> tuple[list[QuotedRow], list[str]]:
    """(rows, benchmark column names) of a reference CSV; lines starting with '#' are comments."""
    try:
        lines = [
            line
            for line in path.read_text(encoding="utf-8").splitlines()
            if not line.lstrip().startswith("#")
        ]
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"{path}: cannot read reference CSV ({exc.__class__.__name__})") from None
    reader = csv.DictReader(lines)
    header = list(reader.fieldnames or [])
    missing = [c for c in REFERENCE_ID_COLUMNS if c not in header]
    if missing:
        raise ReportInputError(f"{path}: reference CSV is missing columns: {', '.join(missing)}")
    benchmarks = [c for c in header if c not in REFERENCE_ID_COLUMNS]
    rows = []
    for record in reader:
        if None in record:
            raise ReportInputError(f"{path}: a row has more fields than the header ({record[None]!r})")
        rows.append(
            QuotedRow(
                method=record["method"] or "",
                projector=record["projector"] or "",
                scale_factor=record["scale_factor"] or "",
                visual_tokens=record["visual_tokens"] or "",
                source=record["source"] or "",
                values={column: (record[column] or "").strip() for column in benchmarks},
            )
        )
    return rows, benchmarks
