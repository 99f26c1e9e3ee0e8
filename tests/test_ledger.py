"""The findings ledger's scorecard and rows: verdict records, the scorecard figure, and the
pure parts of the Sphinx extension that reshapes the ledger page (on synthetic doctrees)."""

from __future__ import annotations

import itertools
import json
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from matplotlib.colors import to_hex

from vitlens.book import VERDICTS, finding
from vitlens.book.claims import CLAIMS, LABELS
from vitlens.book.glue import ledger_record
from vitlens.book.verdicts import (
    OUTCOMES,
    RECORD_SCHEMA,
    Part,
    Verdict,
    all_of,
    exceeds,
    local_then_global,
    negligible,
    not_testable,
    very_similar,
)
from vitlens.core.stats import Estimate
from vitlens.plotting import STYLE, ledger_scorecard, use_theme

ROOT = Path(__file__).resolve().parents[1]
docutils_nodes = pytest.importorskip("docutils.nodes")
pytest.importorskip("sphinx")
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import ledger_counts as ext  # noqa: E402


def est(value, low, high, source="bootstrap over 4 batches"):
    return Estimate(value, low, high, source)


VERDICT_EXAMPLES = {
    "exceeds": exceeds("CKA gap", est(0.3, 0.2, 0.4), 0.05),
    "negligible": negligible("share", est(0.01, -0.02, 0.03), 0.05, fmt=".1%"),
    "very similar": very_similar("CKA", est(0.85, 0.82, 0.88)),
    "all of": all_of(
        [
            exceeds("a", est(0.3, 0.2, 0.4), 0.05),
            exceeds("b", est(0.03, -0.01, 0.05), 0.05),
            negligible("c", est(0.0, -0.01, 0.01), 0.05),
        ]
    ),
    "not testable": not_testable("no local head (none under 8 px): none", "CKA 0.4"),
    "all of, one part untestable": all_of(
        [exceeds("a", est(0.3, 0.2, 0.4), 0.05), not_testable("no probes")]
    ),
    "vacuous": local_then_global([False] * 4, [False] * 4, threshold="8 px", source="heads"),
    "by hand": Verdict("holds", "CKA 0.9", "a rule"),
}


# --- records ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VERDICT_EXAMPLES))
def test_a_verdict_survives_its_record_through_json(name):
    verdict = VERDICT_EXAMPLES[name]
    record = json.loads(json.dumps(verdict.record()))
    assert record["schema"] == RECORD_SCHEMA
    assert Verdict.from_record(record) == verdict
    assert record["text"] == verdict.text() and record["headline"] == verdict.headline()
    assert len(record["parts"]) == len(verdict.parts)
    for part, data in zip(verdict.parts, record["parts"], strict=True):
        assert Part.from_record(data) == part
        assert data["scaled"] == list(part.scaled())


def test_records_keep_every_part_and_lead_with_the_worst():
    composite = VERDICT_EXAMPLES["all of"]
    assert [p.what for p in composite.parts] == ["a", "b", "c"]
    assert composite.outcome == "partly holds" and composite.lead == 1  # b does not hold
    assert composite.headline() == "weakest of 3: 0.03 [-0.01, 0.05]; holds above 0.05"
    assert VERDICT_EXAMPLES["exceeds"].headline() == "0.30 [0.20, 0.40]; holds above 0.05"
    assert VERDICT_EXAMPLES["negligible"].headline() == "1.0% [-2.0%, 3.0%]; holds within ±5.0%"
    assert VERDICT_EXAMPLES["very similar"].headline().endswith("holds above 0.90")
    untestable = VERDICT_EXAMPLES["not testable"]
    assert untestable.parts == () and untestable.lead is None
    assert untestable.headline() == "missing premise: no local head"
    assert [p.what for p in VERDICT_EXAMPLES["all of, one part untestable"].parts] == ["a"]
    vacuous = VERDICT_EXAMPLES["vacuous"]
    assert vacuous.outcome == "does not hold" and vacuous.parts[0].outcome == "does not hold"
    assert VERDICT_EXAMPLES["by hand"].headline() == "CKA 0.9"


def test_records_of_numpy_estimates_are_json():
    estimate = Estimate(np.float32(0.3), np.float32(0.2), np.float64(0.4), "bootstrap")
    verdict = exceeds("CKA gap", estimate, np.float32(0.05), null=np.int64(0))
    record = json.loads(json.dumps(verdict.record()))
    assert record["parts"][0]["low"] == pytest.approx(0.2)
    assert record["outcome"] == "holds"


def test_records_refuse_what_is_not_one():
    with pytest.raises(ValueError, match="not a verdict record"):
        Verdict.from_record({"outcome": "holds"})
    with pytest.raises(ValueError, match="rule must be one of"):
        Part("x", est(0, 0, 0), "about", 0.0, 0.1, ".2f", "holds")
    with pytest.raises(ValueError, match="outcome must be one of"):
        Part("x", est(0, 0, 0), "exceeds", 0.0, 0.1, ".2f", "not testable here")
    with pytest.raises(ValueError, match="negligible"):
        Part("x", est(0, 0, 0), "negligible", 0.0, 0.0, ".2f", "holds")
    with pytest.raises(TypeError, match="Part objects"):
        Verdict("holds", "s", "m", parts=({"value": 1},))


GRID = [-0.2, -0.05, 0.0, 0.02, 0.05, 0.07, 0.3]


@pytest.mark.parametrize(("null", "margin"), [(0.0, 0.05), (0.8, 0.1), (0.0, 0.0)])
def test_on_the_scorecard_axis_holds_is_the_whole_interval_right_of_one(null, margin):
    for low, high in itertools.combinations_with_replacement(GRID, 2):
        verdict = exceeds("x", est((low + high) / 2 + null, low + null, high + null), margin)
        value, lo, hi = verdict.parts[0].scaled()
        assert lo <= value <= hi
        assert (verdict.outcome == "holds") == (lo > 1), (low, high)
        if margin > 0:  # partly: right of "no effect" (0), not of the margin (1)
            assert (verdict.outcome == "partly holds") == (0 < lo <= 1), (low, high)


def test_a_negligible_claim_is_folded_so_that_right_is_the_claims_direction():
    for low, high in itertools.combinations_with_replacement(GRID, 2):
        for value in {low, (low + high) / 2, high}:
            verdict = negligible("x", est(value, low, high), 0.05)
            point, lo, hi = verdict.parts[0].scaled()
            assert lo <= point <= hi <= 2
            assert (verdict.outcome == "holds") == (lo > 1), (value, low, high)
            assert (verdict.outcome != "does not hold") == (point > 1), (value, low, high)


def test_every_claim_has_a_short_label():
    assert set(LABELS) == set(CLAIMS)
    for key, label in LABELS.items():
        assert len(label) <= 48, f"{key}: label too long for a scorecard line: {label!r}"
        assert re.match(r"(Fig|Sec|App)\. [0-9A-H]", label), f"{key}: {label!r} names no place"


def test_finding_glues_the_record_as_json_in_a_build(monkeypatch):
    glued = {}
    fake = types.ModuleType("myst_nb")
    fake.glue = lambda name, value, display=False: glued.__setitem__(name, value)
    monkeypatch.setitem(sys.modules, "myst_nb", fake)
    verdict = VERDICT_EXAMPLES["all of"]
    assert finding("ch2_fig1", verdict) == "partly holds"
    assert set(glued) == {f"ch2_fig1_{s}" for s in ("claim", "statistic", "verdict", "record")}
    record = json.loads(glued["ch2_fig1_record"])
    assert record == json.loads(json.dumps(ledger_record("ch2_fig1", verdict)))
    assert record["key"] == "ch2_fig1" and record["label"] == LABELS["ch2_fig1"]
    assert record["claim"] == CLAIMS["ch2_fig1"] == glued["ch2_fig1_claim"]
    assert Verdict.from_record(record) == verdict
    with pytest.raises(KeyError, match="no paper claim"):
        ledger_record("fig99", verdict)


# --- the scorecard figure -----------------------------------------------------------------


def row(label, outcome, estimate=(1.5, 1.2, 1.8), section="CKA", **extra):
    if outcome == "not testable here":
        estimate = None
    return {"label": label, "section": section, "outcome": outcome, "estimate": estimate, **extra}


def gid_lines(ax, gid):
    return [line for line in ax.lines if line.get_gid() == gid]


def test_the_scorecard_draws_one_line_per_tested_claim_coloured_by_outcome():
    rows = [
        row("a", "holds"),
        row("b", "partly holds", (0.5, 0.2, 0.9), parts=[(2.0, 1.5, 2.5), (0.4, 0.1, 0.7)]),
        row("c", "does not hold", (0.1, -0.4, 0.6), section="Scale", text="0.01 [-0.02, 0.03]"),
        row("d", "not testable here", section="Scale"),
    ]
    ax = ledger_scorecard(rows)
    lines = gid_lines(ax, "scorecard-estimate")
    assert len(lines) == 3
    colours = STYLE["outcome_colours"]
    assert [to_hex(line.get_color()) for line in lines] == [
        colours[o].lower() for o in ("holds", "partly holds", "does not hold")
    ]
    assert [line.get_xdata()[0] for line in lines] == [1.2, 0.2, -0.4]
    assert len(gid_lines(ax, "scorecard-part")) == 2
    notes = [t for t in ax.texts if t.get_gid() == "scorecard-untestable"]
    assert len(notes) == 1
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["CKA", "a", "b", "Scale", "c", "d"]  # grouped under section headings
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["holds (1)", "partly holds (1)", "does not hold (1)", "not testable here (1)"]
    assert {line.get_gid() for line in ax.lines} >= {"no-effect", "margin"}
    matplotlib.pyplot.close(ax.figure)


def test_scorecard_colours_are_the_book_outcomes():
    assert tuple(STYLE["outcome_colours"]) == OUTCOMES == VERDICTS


def test_the_scorecard_stays_legible_at_forty_rows():
    use_theme()
    outcomes = itertools.cycle(OUTCOMES)
    rows = [
        row(LABELS[key], next(outcomes), section=f"Section {i // 6}", text="0.12 [0.08, 0.15]")
        for i, key in enumerate(itertools.islice(itertools.cycle(LABELS), 40))
    ]
    ax = ledger_scorecard(rows)
    figure = ax.figure
    assert figure.get_size_inches()[1] >= 0.27 * 40
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    boxes = sorted(
        (t.get_window_extent(renderer) for t in ax.get_yticklabels() if t.get_text()),
        key=lambda b: b.y0,
    )
    assert all(a.y1 <= b.y0 + 0.5 for a, b in itertools.pairwise(boxes)), "labels overlap"
    assert min(t.get_fontsize() for t in ax.get_yticklabels()) >= STYLE["font_size"] - 1
    inside = figure.bbox
    for text in [*ax.get_yticklabels(), *ax.get_legend().get_texts()]:
        box = text.get_window_extent(renderer)
        assert box.x0 >= inside.x0 - 1 and box.x1 <= inside.x1 + 1, text.get_text()
    matplotlib.pyplot.close(figure)


def test_the_scorecard_cuts_long_intervals_with_an_arrow():
    ax = ledger_scorecard([row("far", "holds", (40.0, 30.0, 50.0))], limits=(-3, 5))
    (line,) = gid_lines(ax, "scorecard-estimate")
    assert max(line.get_xdata()) <= ax.get_xlim()[1] <= 5
    assert any(line.get_marker() == ">" for line in ax.lines)
    matplotlib.pyplot.close(ax.figure)


@pytest.mark.parametrize(
    ("rows", "error", "match"),
    [
        ([], ValueError, "at least one row"),
        ([["a", "holds"]], TypeError, "mapping"),
        ([{"label": "a", "outcome": "holds", "estimate": (1, 0, 2)}], ValueError, "section"),
        ([row("a", "fine")], ValueError, "outcome must be one of"),
        ([{**row("a", "holds"), "estimate": None}], ValueError, "estimate exactly when"),
        ([{**row("a", "not testable here"), "estimate": (1, 0, 2)}], ValueError, "exactly when"),
        ([row("a", "holds", (1.0, 1.2, 1.8))], ValueError, "low <= value <= high"),
        ([row("a", "holds", (1.0, float("nan"), 1.8))], ValueError, "finite"),
        ([row("a", "holds", (1.0, 0.5))], ValueError, "three numbers"),
        ([row("a", "holds", parts=[(3, 2, 1)])], ValueError, "part 0"),
    ],
)
def test_the_scorecard_refuses_bad_rows(rows, error, match):
    with pytest.raises(error, match=match):
        ledger_scorecard(rows)


# --- the Sphinx extension's pure parts, on synthetic doctrees -------------------------------

nodes = docutils_nodes
HEADER = ["Claim", "Chapter", "Statistic, uncertainty and rule", "Outcome", "Record"]


def _row(cells):
    new = nodes.row()
    for cell in cells:
        entry = nodes.entry()
        entry += nodes.paragraph(cell, "", nodes.inline(cell, cell, classes=["pasted-text"]))
        new += entry
    return new


def _table(rows, header=HEADER):
    table = nodes.table()
    tgroup = nodes.tgroup(cols=len(header))
    table += tgroup
    for _ in header:
        tgroup += nodes.colspec(colwidth=1)
    head = nodes.thead()
    head += _row(header)
    body = nodes.tbody()
    for cells in rows:
        body += _row(cells)
    tgroup += head
    tgroup += body
    return table


def _cells(key, verdict, *, outcome=None, record=None):
    data = record if record is not None else json.dumps(ledger_record(key, verdict))
    return [CLAIMS[key], "Chapter", verdict.text(), outcome or verdict.outcome, data]


def _page(sections):
    """A ledger page: the two markers, then one section with one table per ``sections``."""
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    document = new_document("findings", get_default_settings(Parser))
    for marker in (ext.COUNTS_MARKER, ext.SCORECARD_MARKER):
        document += nodes.paragraph(marker, marker)
    for title, rows in sections.items():
        section = nodes.section(ids=[title.lower()])
        section += nodes.title(title, title)
        section += _table(rows)
        document += section
    return document


PAGE = {
    "CKA": [
        _cells("ch1_invariance", VERDICT_EXAMPLES["exceeds"]),
        _cells("ch2_fig1", VERDICT_EXAMPLES["all of"]),
    ],
    "Local": [
        _cells("ch3_fig4", VERDICT_EXAMPLES["not testable"]),
        _cells("ch3_fig3", VERDICT_EXAMPLES["negligible"]),
    ],
}


def test_collect_rows_reads_every_row_its_section_and_record():
    rows, problems = ext.collect_rows(_page(PAGE))
    assert problems == []
    assert [(r.section, r.record["key"], r.outcome) for r in rows] == [
        ("CKA", "ch1_invariance", "holds"),
        ("CKA", "ch2_fig1", "partly holds"),
        ("Local", "ch3_fig4", "not testable here"),
        ("Local", "ch3_fig3", "holds"),
    ]
    assert rows[1].record["label"] == LABELS["ch2_fig1"]


def test_collect_rows_reports_rows_without_a_good_record_and_keeps_them_in_full():
    exceeding = VERDICT_EXAMPLES["exceeds"]
    bad = {
        "CKA": [
            _cells("ch1_invariance", exceeding, record="{not json"),
            _cells("ch2_fig1", exceeding, outcome="does not hold"),
            _cells("ch2_fig2", exceeding, record='{"schema": "other"}'),
            _cells("ch3_fig3", exceeding)[:4],
            _cells("ch3_fig5", exceeding, record=""),
            _cells("ch3_fig6_size", exceeding, record="", outcome="fine"),
            _cells("ch3_fig6_centre", exceeding),
        ]
    }
    page = _page(bad)
    rows, problems = ext.collect_rows(page)
    assert [(r.record and r.record["key"], r.outcome) for r in rows] == [
        (None, "holds"),
        (None, "does not hold"),  # the outcome cell counts, the record is not trusted
        (None, "holds"),
        (None, "holds"),
        ("ch3_fig6_centre", "holds"),
    ]
    messages = " | ".join(message for _, message in problems)
    assert "no JSON" in messages and "record says 'holds'" in messages
    assert "'vitlens.verdict/1' expected" in messages and "4 cells, not 5" in messages
    assert "has no record" in messages and "re-execute" in messages
    assert "no outcome 'fine'" in messages
    assert len(problems) == 7  # the last bad row: no record and no outcome
    assert [d["label"] for d in ext.scorecard_rows(rows)] == [LABELS["ch3_fig6_centre"]]
    table = ext.ledger_tables(page)[0]
    ext.rebuild_table(table, rows)
    first = table.next_node(nodes.tbody).children[0]
    assert not list(first.findall(ext.ledger_details))  # shown in full
    assert first.children[0].astext() == CLAIMS["ch1_invariance"]
    assert len(ext.ledger_tables(_page(PAGE))) == 2
    assert ext.ledger_tables(_table([["a", "b"]], header=["Claim", "Outcome"])) == []


def test_counts_are_computed_from_the_rows_outcome_cells():
    rows, _ = ext.collect_rows(_page(PAGE))
    counts = ext.count_outcomes(r.outcome for r in rows)
    assert ext.counts_text(counts) == (
        "4 claims tested: 2 holds, 1 partly holds, 0 does not hold, 1 not testable here."
    )
    assert "4 claims tested: 2 holds" in ext.alt_text(counts)
    with pytest.raises(ValueError, match="outcomes must be among"):
        ext.count_outcomes(["holds", "maybe"])


def test_scorecard_rows_draw_the_deciding_part_and_caption_the_missing_premises():
    rows, _ = ext.collect_rows(_page(PAGE))
    drawn = ext.scorecard_rows(rows)
    composite = VERDICT_EXAMPLES["all of"]
    assert drawn[1]["estimate"] == list(composite.parts[1].scaled())  # b, the weakest
    assert drawn[1]["parts"] == [list(composite.parts[i].scaled()) for i in (0, 2)]
    assert drawn[1]["text"] == "0.03 [-0.01, 0.05]"
    assert drawn[2]["estimate"] is None and drawn[2]["outcome"] == "not testable here"
    assert [d["section"] for d in drawn] == ["CKA", "CKA", "Local", "Local"]
    ax = ledger_scorecard(drawn)  # the rows are what the plotting function takes
    assert len(gid_lines(ax, "scorecard-estimate")) == 3
    matplotlib.pyplot.close(ax.figure)
    caption = ext.caption_text(rows, ext.count_outcomes(r.outcome for r in rows))
    assert "4 claims tested" in caption
    assert f"{LABELS['ch3_fig4']} (no local head (none under 8 px): none)" in caption
    assert "folded" in caption  # a negligible part is drawn
    hand = rows[:1]
    hand[0].record = {**hand[0].record, "lead": None, "parts": []}
    with pytest.raises(ValueError, match="no numbers to draw"):
        ext.scorecard_rows(hand)


def test_rebuilt_rows_scan_and_keep_the_same_words_on_demand():
    page = _page(PAGE)
    rows, _ = ext.collect_rows(page)
    table = ext.ledger_tables(page)[0]
    ext.rebuild_table(table, [r for r in rows if r.table is table])
    assert table.next_node(nodes.tgroup)["cols"] == 4
    header = [e.astext() for e in table.next_node(nodes.thead).findall(nodes.entry)]
    assert header == ["Claim", "Chapter", "Statistic", "Outcome"]
    body = list(table.next_node(nodes.tbody).children)
    assert len(body) == 2
    for new, verdict, key in zip(
        body,
        (VERDICT_EXAMPLES["exceeds"], VERDICT_EXAMPLES["all of"]),
        ("ch1_invariance", "ch2_fig1"),
        strict=True,
    ):
        claim, chapter, statistic, outcome = new.children
        summary = claim.next_node(ext.ledger_summary)
        assert summary.astext() == LABELS[key]
        assert CLAIMS[key] in claim.astext()  # the full quotation, inside <details>
        assert statistic.next_node(ext.ledger_summary).astext() == verdict.headline()
        assert verdict.text() in statistic.astext()  # source and rule, same words
        assert chapter.astext() == "Chapter"
        badge = outcome.next_node(nodes.inline)
        assert badge.astext() == verdict.outcome
        assert f"ledger-{verdict.outcome.replace(' ', '-')}" in badge["classes"]
        assert outcome.astext() in VERDICTS  # the counts' old reading still works


def test_resolving_the_page_fills_counts_figure_and_caption(tmp_path):
    page = _page(PAGE)
    ext._make_figure(None, page)
    (figure,) = page.findall(nodes.figure)
    assert figure["ids"] == [ext.SCORECARD_ID] and figure.next_node(nodes.caption).astext()
    builder = SimpleNamespace(
        format="html",
        outdir=str(tmp_path),
        imagedir="_images",
        get_target_uri=lambda docname: f"{docname}.html",
    )
    ext._resolve(SimpleNamespace(builder=builder), page, "book/findings")
    counts = [p for p in page.findall(nodes.paragraph) if "ledger-counts" in p["classes"]]
    assert [p.astext() for p in counts] == [
        "4 claims tested: 2 holds, 1 partly holds, 0 does not hold, 1 not testable here."
    ]
    image = figure.next_node(nodes.image)
    assert image["uri"].startswith("../_images/ledger-scorecard-") and "4 claims" in image["alt"]
    svg = tmp_path / "_images" / Path(image["uri"]).name
    assert svg.read_bytes().startswith(b"<?xml") and b"<svg" in svg.read_bytes()[:2000]
    assert "Not testable here" in figure.next_node(nodes.caption).astext()
    assert not list(page.findall(ext.scorecard_pending))
    assert [len(r.children) for r in page.findall(nodes.row)] == [4] * 6  # 2 headers, 4 rows


def test_the_ledger_page_pastes_a_record_for_every_row():
    ledger = (ROOT / "book" / "findings.md").read_text()
    table_rows = [line for line in ledger.splitlines() if line.startswith("| {glue:text}")]
    assert table_rows
    for line in table_rows:
        notebook, key = re.match(
            r"\| \{glue:text\}`/notebooks/([\w.]+)::(\w+)_claim:s`", line
        ).groups()
        for what in ("statistic", "verdict", "record"):
            assert f"`/notebooks/{notebook}::{key}_{what}:s`" in line, (key, what)
        assert line.rstrip().endswith(f"::{key}_record:s` |"), f"{key}: the record is not last"
    assert ext.COUNTS_MARKER in ledger and ext.SCORECARD_MARKER in ledger
    assert np.sum([line.startswith("| Claim |") for line in ledger.splitlines()]) == sum(
        line.endswith("| Outcome | Record |") for line in ledger.splitlines()
    )
