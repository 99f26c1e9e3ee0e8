"""Sphinx extension: the findings ledger's counts, its scorecard and rows that scan.

The ledger page (``book/findings.md``) is a set of tables, one per section of the paper,
whose cells are pasted by myst-nb's ``{glue:text}`` from the chapters:
``Claim | Chapter | Statistic, uncertainty and rule | Outcome | Record``. The last cell is the
verdict's *record*, JSON text that :func:`vitlens.book.finding` glues as ``{key}_record``
(:func:`vitlens.book.glue.ledger_record`: the claim's key, short label and words, the
outcome, and the numbers every part of the verdict was decided on). Nothing is typed by
hand; this extension only reshapes what was pasted.

Glued values from another document are pasted by myst-nb's post-transform, which reads
the chapter's glue cache in the build folder (``<key>.glue.json``); at ``doctree-resolved``
the cells hold the pasted text. Then, on a page with ledger tables (tables whose header
ends in ``Record``):

* every ledger row is collected (:func:`collect_rows`) and its record read back
  (:meth:`vitlens.book.verdicts.Verdict.from_record` checks it);
* each table is rebuilt into rows that scan (:func:`rebuild_table`): the claim's short
  label, the chapter, the statistic in one line (the deciding part's estimate, interval
  and threshold) and the outcome as a badge; the paper's full quotation and the statistic
  with its interval's source and the rule open on demand (``<details>``), in the same
  words, since they are the pasted cells themselves; the record column goes;
* the paragraph ``LEDGER_COUNTS`` becomes the counts by outcome of the rows' outcome cells;
* the figure that the paragraph ``LEDGER_SCORECARD`` became when the page was read (so that
  Sphinx numbers it) gets the scorecard, drawn by :func:`vitlens.plotting.ledger_scorecard`
  from the records and written as SVG into the HTML build's image folder, with a caption
  and alt text that state the counts and, for claims not testable here, the missing
  premises.

A claim of several parts (``all_of``) is drawn by the part that decides it (its
``lead``: the first part with the worst outcome), its other parts as thin lines beside it.
Problems (a row without a record, e.g. from a chapter executed before ``{key}_record``
existed, or a record that disagrees with its outcome cell) are Sphinx warnings, so the strict
build fails on them; elsewhere such a row still shows, in full and counted by its outcome
cell, but has no line on the scorecard.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from docutils import nodes
from sphinx.util import logging

COUNTS_MARKER = "LEDGER_COUNTS"
SCORECARD_MARKER = "LEDGER_SCORECARD"
SCORECARD_ID = "ledger-scorecard"
RECORD_HEADER = "Record"
COLUMNS = (("Claim", 36), ("Chapter", 16), ("Statistic", 34), ("Outcome", 14))
"""The rebuilt table's columns and their relative widths."""

logger = logging.getLogger(__name__)


class ledger_details(nodes.General, nodes.Element):
    """Content that opens on demand: HTML ``<details>``; other builders show it all."""


class ledger_summary(nodes.General, nodes.TextElement):
    """What a :class:`ledger_details` shows when closed: HTML ``<summary>``."""


class scorecard_pending(nodes.General, nodes.Element):
    """Where the scorecard's image goes, once the rows are known (``doctree-resolved``)."""


@dataclass
class LedgerRow:
    """One row of a ledger table, after glue: its cells and its record.

    Attributes:
        section: the title of the page section the table is in.
        record: the row's record (:func:`vitlens.book.glue.ledger_record`), a dict, or
            ``None`` where it is missing or wrong (a problem is reported).
        outcome: the text of the outcome cell (what the counts count).
        cells: the row's entries: claim, chapter, statistic, outcome, record.
        row: the table row node.
        table: the table it is in.
    """

    section: str
    record: dict | None
    outcome: str
    cells: list = field(repr=False)
    row: nodes.row = field(repr=False)
    table: nodes.table = field(repr=False)


def parse_record(text: str) -> dict:
    """The record in a ledger row's last cell, checked.

    Raises:
        ValueError: for text that is not JSON, not a verdict record
            (:data:`vitlens.book.verdicts.RECORD_SCHEMA`), or lacks ``key``/``label``/
            ``claim``.
    """
    from vitlens.book.verdicts import Verdict

    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not a verdict record (no JSON: {error}): {text[:60]!r}") from None
    Verdict.from_record(record)  # checks the schema, the outcome and the numbers
    missing = [k for k in ("key", "label", "claim") if not record.get(k)]
    if missing:
        raise ValueError(f"verdict record without {missing}: {text[:60]!r}")
    return record


def _texts(row: nodes.row) -> list[str]:
    return [entry.astext().strip() for entry in row.findall(nodes.entry)]


def _section_title(node: nodes.Node) -> str:
    parent = node.parent
    while parent is not None and not isinstance(parent, nodes.section):
        parent = parent.parent
    if parent is None:
        return ""
    title = parent.next_node(nodes.title)
    return title.astext().strip() if title is not None else ""


def ledger_tables(doctree: nodes.Node) -> list[nodes.table]:
    """Tables whose header row ends in ``Record``: the ledger's."""
    tables = []
    for table in doctree.findall(nodes.table):
        head = table.next_node(nodes.thead)
        if head is not None and head.next_node(nodes.row) is not None:
            cells = _texts(head.next_node(nodes.row))
            if cells and cells[-1] == RECORD_HEADER:
                tables.append(table)
    return tables


def collect_rows(doctree: nodes.Node) -> tuple[list[LedgerRow], list[tuple[nodes.Node, str]]]:
    """Every ledger row on a page, in order, and the problems found (node, message).

    A ledger row has five cells (claim, chapter, statistic, outcome, record) and a record
    whose outcome is its outcome cell's text. A row of five cells whose record is missing
    or wrong is still collected, with ``record=None``, if its outcome cell is an outcome.
    """
    from vitlens.book.verdicts import OUTCOMES

    rows, problems = [], []
    for table in ledger_tables(doctree):
        section = _section_title(table)
        body = table.next_node(nodes.tbody)
        for row in body.children if body is not None else ():
            entries = [c for c in row.children if isinstance(c, nodes.entry)]
            texts = [e.astext().strip() for e in entries]
            if len(entries) != 5:
                problems.append((row, f"ledger row with {len(entries)} cells, not 5: {texts}"))
                continue
            record = None
            if not texts[-1]:
                message = (
                    f"ledger row {texts[0][:40]!r} has no record: was its chapter executed "
                    "before vitlens.book.finding glued {key}_record? (re-execute it)"
                )
                problems.append((row, message))
            else:
                try:
                    record = parse_record(texts[-1])
                except (ValueError, KeyError, TypeError) as error:
                    problems.append((row, f"ledger row {texts[0][:40]!r}: {error}"))
            if record is not None and texts[3] != record["outcome"]:
                message = (
                    f"ledger row {record['key']!r}: outcome cell {texts[3]!r} but its record "
                    f"says {record['outcome']!r}"
                )
                problems.append((row, message))
                record = None
            if record is None and texts[3] not in OUTCOMES:
                problems.append((row, f"ledger row {texts[0][:40]!r}: no outcome {texts[3]!r}"))
                continue
            rows.append(LedgerRow(section, record, texts[3], entries, row, table))
    return rows, problems


def count_outcomes(outcomes: Iterable[str]) -> Counter:
    """How many rows have each outcome (every one of :data:`vitlens.book.VERDICTS`)."""
    from vitlens.book import VERDICTS

    counts = Counter(dict.fromkeys(VERDICTS, 0))
    counts.update(outcomes)
    unknown = set(counts) - set(VERDICTS)
    if unknown:
        raise ValueError(f"outcomes must be among {VERDICTS}, got {sorted(unknown)}")
    return counts


def counts_text(counts: Counter) -> str:
    """``"35 claims tested: 12 holds, 8 partly holds, 10 does not hold, 5 not testable
    here."``"""
    from vitlens.book import VERDICTS

    total = sum(counts[v] for v in VERDICTS)
    return f"{total} claims tested: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + "."


def scorecard_rows(rows: list[LedgerRow]) -> list[dict]:
    """The rows as :func:`vitlens.plotting.ledger_scorecard` takes them: label, section,
    outcome, the deciding part's scaled ``(value, low, high)`` as ``estimate``, the other
    parts', and its numbers in their own units as ``text``. Rows without a record are left
    out.

    Raises:
        ValueError: for a tested claim whose record has no numbers (a verdict written by
            hand rather than by a rule).
    """
    drawn = []
    for row in rows:
        record = row.record
        if record is None:
            continue
        line = {"label": record["label"], "section": row.section, "outcome": row.outcome}
        if row.outcome == "not testable here":
            drawn.append({**line, "estimate": None, "text": "see the caption"})
            continue
        if record["lead"] is None:
            raise ValueError(f"{record['key']}: the record has no numbers to draw")
        lead = record["parts"][record["lead"]]
        others = [p["scaled"] for i, p in enumerate(record["parts"]) if i != record["lead"]]
        drawn.append({**line, "estimate": lead["scaled"], "parts": others, "text": lead["text"]})
    return drawn


def alt_text(counts: Counter) -> str:
    """The scorecard's alt text: what it shows and the counts."""
    return (
        "Scorecard of the findings ledger, one line per claim grouped by the paper's "
        f"sections, coloured by outcome: {counts_text(counts)}"
    )


def caption_text(rows: list[LedgerRow], counts: Counter) -> str:
    """The scorecard's caption: the counts, how to read a line and what is missing where."""
    text = [
        f"The ledger at a glance. {counts_text(counts)} Each line is a claim's statistic "
        "(dot) and 95% interval (bar) in units of its rule's margin, signed in the claim's "
        "direction: 0 is no effect, 1 the margin (dashed), and a claim holds where its "
        "whole interval lies right of the margin, partly holds where it lies right of 0 "
        "only. A claim of several parts is drawn by the part that decides it (the first "
        "with the worst outcome), its other parts as thin lines."
    ]
    rows = [r for r in rows if r.record is not None]
    parts = [p for r in rows if r.outcome != "not testable here" for p in r.record["parts"]]
    if any(p["rule"] == "negligible" for p in parts):
        text.append(
            "A claim that a statistic is about zero is folded, 2 minus its size in margins, "
            "so that right is again the claim's direction."
        )
    if any(p["rule"] == "exceeds" and p["margin"] == 0 for p in parts):
        text.append(
            "A rule without a margin (any effect counts) has its no-effect value on the "
            "dashed line."
        )
    untestable = [r for r in rows if r.outcome == "not testable here"]
    if untestable:
        notes = "; ".join(f"{r.record['label']} ({r.record['premise']})" for r in untestable)
        text.append(f"Not testable here: {notes}.")
    return " ".join(text)


def _details(summary: str, content: list[nodes.Node]) -> ledger_details:
    details = ledger_details(classes=["ledger-details"])
    details += ledger_summary(summary, summary)
    details.extend(content)
    return details


def _entry(*children: nodes.Node) -> nodes.entry:
    entry = nodes.entry()
    entry.extend(children)
    return entry


def rebuild_table(table: nodes.table, rows: list[LedgerRow]) -> None:
    """Rebuild a ledger table in place into rows that scan (:data:`COLUMNS`).

    Each of ``rows`` (this table's) becomes: the claim's label, opening on the claim's
    words; the chapter cell as it was; the record's ``headline``, opening on the statistic
    cell as it was; the outcome as a badge (``ledger-badge ledger-<outcome>``). A row
    without a record keeps its claim and statistic cells in full. The record column goes;
    rows not in ``rows`` are left out.
    """
    from vitlens.book.verdicts import Verdict

    tgroup = table.next_node(nodes.tgroup)
    for child in list(tgroup.children):
        if isinstance(child, nodes.colspec):
            tgroup.remove(child)
    for index, (_, width) in enumerate(COLUMNS):
        tgroup.insert(index, nodes.colspec(colwidth=width))
    tgroup["cols"] = len(COLUMNS)
    head = tgroup.next_node(nodes.thead)
    header = nodes.row()
    header.extend(_entry(nodes.paragraph(name, name)) for name, _ in COLUMNS)
    head.children = []
    head += header
    body = tgroup.next_node(nodes.tbody)
    body.children = []
    for row in rows:
        claim, chapter, statistic, _outcome, _record = row.cells
        # docutils' own Node.deepcopy: copy.deepcopy would follow each node's parent link
        # and copy the whole page once per cell.
        claim, statistic = _copies(claim), _copies(statistic)
        if row.record is not None:  # else shown in full: nothing to make it short with
            claim = [_details(row.record["label"], claim)]
            statistic = [_details(Verdict.from_record(row.record).headline(), statistic)]
        slug = row.outcome.replace(" ", "-")
        badge = nodes.inline(row.outcome, row.outcome, classes=["ledger-badge", f"ledger-{slug}"])
        new = nodes.row(classes=["ledger-row", f"ledger-{slug}"])
        new += _entry(*claim)
        new += _entry(*_copies(chapter))
        new += _entry(*statistic)
        new += _entry(nodes.paragraph("", "", badge))
        body += new
    table["classes"] = [*table.get("classes", []), "ledger-table"]


def _copies(cell: nodes.Element) -> list[nodes.Node]:
    """Copies of a table cell's children, detached from the page."""
    return [child.deepcopy() for child in cell.children]


def draw_scorecard(rows: list[LedgerRow]) -> bytes:
    """The scorecard as SVG bytes, drawn in the house theme."""
    import matplotlib as mpl

    mpl.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from vitlens.plotting import ledger_scorecard, use_theme

    with mpl.rc_context():
        use_theme()
        mpl.rcParams["svg.hashsalt"] = "vitlens-ledger"  # the same figure, the same file
        ax = ledger_scorecard(scorecard_rows(rows))
        buffer = StringIO()
        ax.figure.savefig(buffer, format="svg", metadata={"Date": None})
        plt.close(ax.figure)
    return buffer.getvalue().encode()


def _make_figure(app, doctree) -> None:
    """``doctree-read``: the ``LEDGER_SCORECARD`` paragraph becomes a figure to be filled,
    now, so that Sphinx numbers it with the page's other figures."""
    for paragraph in list(doctree.findall(nodes.paragraph)):
        if paragraph.astext().strip() != SCORECARD_MARKER:
            continue
        figure = nodes.figure("", ids=[SCORECARD_ID], classes=["ledger-scorecard"])
        figure += scorecard_pending()
        figure += nodes.caption("", "The ledger at a glance.")
        paragraph.replace_self(figure)


def _write_image(app, docname: str, svg: bytes) -> str:
    """Write the scorecard into the build's image folder; its URI relative to the page."""
    name = f"ledger-scorecard-{hashlib.sha256(svg).hexdigest()[:16]}.svg"
    folder = Path(app.builder.outdir, app.builder.imagedir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(svg)
    page = posixpath.dirname(app.builder.get_target_uri(docname))
    return posixpath.relpath(posixpath.join(app.builder.imagedir, name), page or ".")


def _resolve(app, doctree, docname) -> None:
    """``doctree-resolved``: rebuild the ledger's tables, fill its counts and scorecard."""
    counts_at = [p for p in doctree.findall(nodes.paragraph) if p.astext().strip() == COUNTS_MARKER]
    figures = list(doctree.findall(scorecard_pending))
    tables = ledger_tables(doctree)
    if not (counts_at or figures or tables):
        return
    rows, problems = collect_rows(doctree)
    for node, message in problems:
        logger.warning(message, location=node)
    for table in tables:
        rebuild_table(table, [row for row in rows if row.table is table])
    counts = count_outcomes(row.outcome for row in rows)
    text = counts_text(counts)
    for paragraph in counts_at:
        paragraph.replace_self(nodes.paragraph(text, text, classes=["ledger-counts"]))
    recorded = [row for row in rows if row.record is not None]
    for pending in figures:
        figure = pending.parent
        if not recorded or app.builder.format != "html":
            if not recorded:
                logger.warning("no ledger rows to draw the scorecard from", location=figure)
            figure.parent.remove(figure)
            continue
        try:
            svg = draw_scorecard(recorded)
        except (ValueError, TypeError) as error:
            logger.warning(f"ledger scorecard not drawn: {error}", location=figure)
            figure.parent.remove(figure)
            continue
        uri = _write_image(app, docname, svg)
        image = nodes.image(uri=uri, alt=alt_text(counts), candidates={"*": uri})
        pending.replace_self(image)
        caption = figure.next_node(nodes.caption)
        caption.children = []
        caption += nodes.Text(caption_text(rows, counts))


def _visit_details(self, node) -> None:
    self.body.append(self.starttag(node, "details"))


def _depart_details(self, node) -> None:
    self.body.append("</details>\n")


def _visit_summary(self, node) -> None:
    self.body.append(self.starttag(node, "summary", ""))


def _depart_summary(self, node) -> None:
    self.body.append("</summary>\n")


def _skip(self, node) -> None:
    pass


def setup(app):
    others = {name: (_skip, _skip) for name in ("latex", "text", "man", "texinfo")}
    app.add_node(ledger_details, html=(_visit_details, _depart_details), **others)
    app.add_node(ledger_summary, html=(_visit_summary, _depart_summary), **others)
    app.add_node(scorecard_pending, html=(_skip, _skip), **others)
    app.connect("doctree-read", _make_figure)
    app.connect("doctree-resolved", _resolve)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
