"""The report page: `report.md` and a static `index.html` that show and link every table and plot."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reports.render import Table, to_html, to_markdown

REPORT_MARKDOWN = "report.md"
REPORT_HTML = "index.html"

_STYLE = """
body { font-family: sans-serif; max-width: 75em; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border-bottom: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.rule td { border-top: 2px solid #444; }
p.note { font-size: 0.85em; color: #444; margin: 0.2em 0; }
figure { display: inline-block; margin: 0.5em 1em 0.5em 0; }
img { width: 30em; max-width: 100%; }
"""


@dataclass(frozen=True)
class TableEntry:
    table: Table
    files: dict[str, Path]  # "md" / "tex" / "csv" -> written file


@dataclass(frozen=True)
class FigureEntry:
    title: str
    files: dict[str, Path]  # "png" / "pdf" -> written file


@dataclass(frozen=True)
class Section:
    title: str
    tables: tuple[TableEntry, ...] = ()
    figures: tuple[FigureEntry, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def render_markdown(title: str, sections: Sequence[Section], root: Path) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        out += [f"## {section.title}", ""]
        out += [f"{note}  " for note in section.notes] + ([""] if section.notes else [])
        for entry in section.tables:
            links = " · ".join(f"[{kind}]({_relative(path, root)})" for kind, path in entry.files.items())
            out += [f"### {entry.table.title}", "", links, "", to_markdown(entry.table)]
        for figure in section.figures:
            png = _relative(figure.files["png"], root)
            links = " · ".join(f"[{kind}]({_relative(path, root)})" for kind, path in figure.files.items())
            out += [f"![{figure.title}]({png})", "", f"{figure.title} ({links})", ""]
    return "\n".join(out) + "\n"


def render_html(title: str, sections: Sequence[Section], root: Path) -> str:
    def link(kind: str, path: Path) -> str:
        return f'<a href="{html.escape(_relative(path, root))}">{html.escape(kind)}</a>'

    toc = "".join(f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>' for i, s in enumerate(sections))
    body = [f"<h1>{html.escape(title)}</h1>", f"<ul>{toc}</ul>"]
    for index, section in enumerate(sections):
        body.append(f'<h2 id="s{index}">{html.escape(section.title)}</h2>')
        body += [f'<p class="note">{html.escape(note)}</p>' for note in section.notes]
        for entry in section.tables:
            links = " · ".join(link(kind, path) for kind, path in entry.files.items())
            body.append(f"<h3>{html.escape(entry.table.title)}</h3><p>{links}</p>{to_html(entry.table)}")
        for figure in section.figures:
            links = " · ".join(link(kind, path) for kind, path in figure.files.items())
            src = html.escape(_relative(figure.files["png"], root))
            body.append(
                f'<figure><img src="{src}" alt="{html.escape(figure.title)}">'
                f"<figcaption>{html.escape(figure.title)} ({links})</figcaption></figure>"
            )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def write_page(out_dir: Path, title: str, sections: Sequence[Section]) -> tuple[Path, Path]:
    """Write report.md and index.html into `out_dir` (links relative to it); returns both paths."""
    markdown, page = out_dir / REPORT_MARKDOWN, out_dir / REPORT_HTML
    markdown.write_text(render_markdown(title, sections, out_dir), encoding="utf-8")
    page.write_text(render_html(title, sections, out_dir), encoding="utf-8")
    return markdown, page
