"""Sphinx extension: the findings ledger opens with its counts by outcome, computed.

The ledger's outcomes are glued from the chapters when the book is built; this counts the
last cell of every table row on the ledger page, after the glue has been pasted, and fills
the paragraph that reads ``LEDGER_COUNTS`` with the totals. Nothing is typed by hand.
"""

from __future__ import annotations

from collections import Counter

from docutils import nodes

MARKER = "LEDGER_COUNTS"


def _count(app, doctree, docname) -> None:
    from vitlens.book import VERDICTS

    targets = [p for p in doctree.findall(nodes.paragraph) if p.astext().strip() == MARKER]
    if not targets:
        return
    counts: Counter[str] = Counter()
    for row in doctree.findall(nodes.row):
        entries = row.findall(nodes.entry)
        cells = [e.astext().strip() for e in entries]
        if cells and cells[-1] in VERDICTS:
            counts[cells[-1]] += 1
    total = sum(counts.values())
    text = f"{total} claims tested: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + "."
    for paragraph in targets:
        paragraph.replace_self(nodes.paragraph(text, text, classes=["ledger-counts"]))


def setup(app):
    app.connect("doctree-resolved", _count)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
