"""Render a report as one static HTML page and as Markdown, and its tables as CSV and JSON.

The page needs nothing from the network: its styles and its table-sorting script are inline and
its figures are files beside it, so the folder opens offline and can be published as it is.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlx.numbers import MISSING, fmt
from mlx.report.figures import Figure
from mlx.report.tables import Table

if TYPE_CHECKING:
    from mlx.report.build import Report

# error texts can be long tracebacks' last lines; the page shows the start, the cell's title all
_ERROR_CHARS = 160

CSS = """
body{font:14px/1.5 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:36px}
h3{font-size:15px;margin:20px 0 6px}
nav{font-size:13px;margin:8px 0 16px}nav a{margin-right:12px}
code,pre{font:12px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;border-radius:4px}
code{padding:1px 4px}pre{padding:8px 10px;overflow-x:auto;white-space:pre-wrap}
.meta{color:#59636e;font-size:13px}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:6px 0}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th:after{content:' \\2195';color:#8c959f;font-size:10px}
table.sortable th.asc:after{content:' \\2191';color:#1f2328}table.sortable th.desc:after{content:' \\2193';color:#1f2328}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.missing{color:#8c959f;text-align:center}
td.failed,td.interrupted{color:#cf222e;font-weight:600}td.pruned,td.rejected{color:#9a6700}
td.error{color:#cf222e;font-family:ui-monospace,monospace;font-size:11px;max-width:420px}
.note{color:#59636e;font-size:12px;margin:2px 0 12px}
figure{margin:12px 0 20px}figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#59636e;font-size:12px}
summary{cursor:pointer}summary h3{display:inline}
"""

# click a heading: sort by that column (numbers as numbers, missing cells last), again to reverse
SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = !th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(asc ? 'asc' : 'desc');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var key = function (row) {
        var cell = row.cells[col];
        var v = cell.getAttribute('data-v');
        if (v === null || v === '') return null;
        return cell.classList.contains('num') ? parseFloat(v) : v.toLowerCase();
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null) return y === null ? 0 : 1;
        if (y === null) return -1;
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _inline(text: str) -> str:
    """Escape a paragraph and turn `code` spans into <code>."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(
        f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts)
    )


def _cell_html(table: Table, column: str, value: Any) -> str:
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return f'<td class="missing" data-v="">{MISSING}</td>'
    text = fmt(value)
    classes = []
    if column in table.numeric:
        classes.append("num")
    if column in ("status", "state"):
        classes.append(html.escape(str(value)))
    if column == "error":
        classes.append("error")
        shown = text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "…"
        return f'<td class="error" data-v="{html.escape(text)}" title="{html.escape(text)}">{html.escape(shown)}</td>'
    if column in ("reproduce", "command"):
        return f'<td data-v="{html.escape(text)}"><code>{html.escape(text)}</code></td>'
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f'<td{cls} data-v="{html.escape(str(value))}">{html.escape(text)}</td>'


def table_html(table: Table, heading: bool = True) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "\n".join(
        "<tr>" + "".join(_cell_html(table, c, row.get(c)) for c in table.columns) + "</tr>"
        for row in table.rows
    )
    if table.collapsed:
        # folded: the title opens it (no script needed)
        return (
            f"<details><summary><h3>{html.escape(table.title)} ({len(table.rows)} rows)</h3></summary>\n"
            + table_html(replace(table, collapsed=False), heading=False)
            + "\n</details>"
        )
    parts = [
        f"<h3>{html.escape(table.title)}</h3>" if heading else "",
        f'<div class="scroll"><table id="{table.name}" class="sortable"><thead><tr>{head}</tr></thead>',
        f"<tbody>\n{body}\n</tbody></table></div>",
        f'<p class="note">{_inline(table.note)} <a href="tables/{table.name}.csv">CSV</a> · '
        f'<a href="tables/{table.name}.json">JSON</a></p>',
    ]
    return "\n".join(parts)


def figure_html(fig: Figure, heading: bool = True) -> str:
    title = f"<h3>{html.escape(fig.title)}</h3>" if heading else ""
    return (
        f'<figure id="fig-{fig.name}">{title}'
        f'<img src="figures/{fig.name}.svg" alt="{html.escape(fig.title)}">'
        f"<figcaption>{_inline(fig.caption)}</figcaption></figure>"
    )


def render_html(report: Report) -> str:
    """The report as one static HTML page."""
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in report.sections)
    body = []
    for section in report.sections:
        body.append(f'<section id="{section.id}"><h2>{html.escape(section.title)}</h2>')
        for item in section.items:
            if isinstance(item, Table):
                body.append(table_html(item, heading=item.title != section.title))
            elif isinstance(item, Figure):
                body.append(figure_html(item, heading=item.title != section.title))
            else:
                body.append(f"<p>{_inline(item)}</p>")
        body.append("</section>")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(report.name)} · mlx report</title>
<style>{CSS}</style>
</head>
<body>
<main>
<h1>{html.escape(report.name)}</h1>
<p class="meta">mlx report generated {html.escape(report.generated)}. Regenerate with:</p>
<pre>{html.escape(report.command)}</pre>
<nav>{nav} · <a href="report.md">Markdown</a></nav>
{chr(10).join(body)}
</main>
<script>{SCRIPT}</script>
</body>
</html>
"""


def _md_cell(value: Any) -> str:
    text = fmt(value) if value not in (None, "") else MISSING
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table, heading: bool = True) -> str:
    lines = [
        *([f"### {table.title}", ""] if heading else []),
        "| " + " | ".join(c.replace("|", "\\|") for c in table.columns) + " |",
        "|" + "|".join("---:" if c in table.numeric else "---" for c in table.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(_md_cell(row.get(c)) for c in table.columns) + " |" for row in table.rows
    ]
    lines.append("")
    if table.note:
        lines += [table.note, ""]
    lines += [f"Data: [`tables/{table.name}.csv`](tables/{table.name}.csv)", ""]
    return "\n".join(lines)


def render_markdown(report: Report) -> str:
    """The report as Markdown, figures linked from ``figures/``."""
    lines = [
        f"# {report.name}",
        "",
        f"mlx report generated {report.generated}. Regenerate with:",
        "",
        "```bash",
        report.command,
        "```",
        "",
    ]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        for item in section.items:
            if isinstance(item, Table):
                lines.append(table_markdown(item, heading=item.title != section.title))
            elif isinstance(item, Figure):
                if item.title != section.title:
                    lines += [f"### {item.title}", ""]
                lines += [f"![{item.title}](figures/{item.name}.svg)", "", item.caption, ""]
            else:
                lines += [item, ""]
    return "\n".join(lines)


def write_table(table: Table, folder: Path) -> None:
    """``folder/<name>.csv`` and ``folder/<name>.json`` (empty cells and nulls where missing)."""
    records = table.to_records()
    with (folder / f"{table.name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=table.columns)
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    (folder / f"{table.name}.json").write_text(
        json.dumps(
            {"title": table.title, "columns": table.columns, "rows": records, "note": table.note},
            indent=1,
            default=str,
        )
        + "\n"
    )
