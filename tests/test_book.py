"""Checks on the built book (``jupyter-book build . -W -n --keep-going`` -> _build/html).

Skipped when the book has not been built, unless ``VITLENS_REQUIRE_BOOK=1`` (set by
``.ci/run``, which builds the book first): then a missing build fails.
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"

if not (HTML / "index.html").exists():
    if os.environ.get("VITLENS_REQUIRE_BOOK") == "1":
        raise RuntimeError(f"the book is not built: {HTML / 'index.html'} is missing")
    pytest.skip("book not built (jupyter-book build . -W -n --keep-going)", allow_module_level=True)


def toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if attrs.get("class"):
            self.classes += attrs["class"].split()


def parse(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def page_of(source: str) -> Path:
    return HTML / (str(Path(source).with_suffix("")) + ".html")


@pytest.mark.parametrize("source", toc_files())
def test_every_page_of_the_toc_is_built(source):
    assert page_of(source).exists(), f"{source} has no page in {HTML}"


CHAPTERS = [s for s in toc_files() if s.startswith("notebooks/")]


@pytest.mark.parametrize("source", CHAPTERS)
def test_chapters_have_their_figures_and_no_errors(source):
    page = parse(page_of(source))
    figures = [src for src in page.images if not src.startswith(("http", "data:"))]
    assert figures, f"{source} shows no figure"
    for src in figures:
        assert (page_of(source).parent / unquote(src)).exists(), f"{source}: missing image {src}"
    text = page_of(source).read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" not in text
    assert not {"traceback", "output_error"} & set(page.classes), f"{source} shows an error"
    unglued = re.findall(r"\{glue:[a-z]+\}", text)
    assert not unglued, f"{source}: glue roles left unresolved: {unglued[:3]}"


@pytest.mark.parametrize(
    "page",
    sorted(
        p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html") if "_static" not in p.parts
    ),
)
def test_internal_links_resolve(page):
    path = HTML / page
    for href in parse(path).links:
        url = urlparse(href)
        if url.scheme or href.startswith(("#", "mailto:")):
            continue
        target = (path.parent / unquote(url.path)).resolve()
        assert target.exists(), f"{page}: broken link {href}"


class TableParser(HTMLParser):
    """Text of every table cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def test_findings_ledger_rows_have_a_claim_statistic_uncertainty_and_outcome():
    from vitlens.book import VERDICTS

    parser = TableParser()
    text = page_of("book/findings").read_text(encoding="utf-8")
    parser.feed(text)
    rows = [row for row in parser.rows if row and row[0] != "Claim"]
    assert len(rows) >= 10
    for claim, chapter, statistic, verdict in rows:
        assert chapter, f"ledger row {claim!r} names no chapter"
        assert verdict in VERDICTS, f"ledger row {claim!r}: verdict {verdict!r}"
        assert re.search(r"(Section|Appendix) [0-9A-H]", claim), f"no section in {claim!r}"
        assert re.search(r"\d", statistic), f"ledger row {claim!r}: statistic {statistic!r}"
        if verdict == "not testable here":
            assert "missing premise:" in statistic, f"ledger row {claim!r} names no premise"
        else:
            assert "95% interval:" in statistic, f"ledger row {claim!r}: no uncertainty"
            assert "rule:" in statistic, f"ledger row {claim!r}: no margin"
    counts = re.search(
        r"(\d+) claims tested: (\d+) holds, (\d+) partly holds, (\d+) does not "
        r"hold, (\d+) not testable here",
        " ".join(text.split()),
    )
    assert counts, "the ledger does not open with its counts by outcome"
    total, *by_outcome = (int(n) for n in counts.groups())
    assert total == len(rows) == sum(by_outcome)
    for outcome, count in zip(VERDICTS, by_outcome, strict=True):
        assert count == sum(row[-1] == outcome for row in rows), outcome


def test_findings_ledger_opens_with_its_scorecard_and_rows_that_scan():
    """The scorecard (book/_ext/ledger_counts.py) is numbered, states the counts in its
    caption and alt text, and each row shows a badge and opens on its claim and statistic."""
    page = page_of("book/findings")
    text = page.read_text(encoding="utf-8")
    parser = FigureParser()
    parser.feed(text)
    scorecards = [f for f in parser.figures if "ledger at a glance" in f["caption"]]
    assert len(scorecards) == 1, "the ledger has no scorecard figure"
    (scorecard,) = scorecards
    assert re.match(r"\s*Fig\. \d", scorecard["caption"]), f"unnumbered: {scorecard}"
    counts = re.search(r"\d+ claims tested: [^.<]*\.", " ".join(text.split()))
    assert counts, "the ledger does not open with its counts by outcome"
    assert counts[0] in " ".join(scorecard["caption"].split())
    assert len(scorecard["alts"]) == 1 and counts[0] in scorecard["alts"][0]
    image = re.search(r'src="([^"]*ledger-scorecard-[0-9a-f]+\.svg)"', text)
    assert image and (page.parent / unquote(image[1])).exists(), "scorecard image missing"
    assert text.index('id="ledger-scorecard"') < text.index("<table"), "scorecard not first"
    rows = len(re.findall(r'<tr class="[^"]*ledger-row', text))
    assert rows == int(counts[0].split()[0])
    assert len(re.findall(r'<details class="[^"]*ledger-details', text)) == 2 * rows
    assert len(re.findall(r'<span class="ledger-badge ledger-[a-z-]+">', text)) == rows


class FigureParser(HTMLParser):
    """Every ``<figure>``: its images' alt text and its caption's text."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: list[dict] = []
        self._depth = 0
        self._caption = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "figure":
            self.figures.append({"alts": [], "caption": ""})
            self._depth += 1
        elif self._depth and tag == "img":
            self.figures[-1]["alts"].append(attrs.get("alt") or "")
        elif self._depth and tag == "figcaption":
            self._caption = True

    def handle_endtag(self, tag):
        if tag == "figure":
            self._depth -= 1
        elif tag == "figcaption":
            self._caption = False

    def handle_data(self, data):
        if self._caption:
            self.figures[-1]["caption"] += data


@pytest.mark.parametrize("source", CHAPTERS)
def test_chapter_figures_are_numbered_captioned_and_described(source):
    parser = FigureParser()
    parser.feed(page_of(source).read_text(encoding="utf-8"))
    assert parser.figures, f"{source} has no <figure>"
    for figure in parser.figures:
        assert re.match(r"\s*Fig\. \d", figure["caption"]), f"{source}: unnumbered {figure}"
        for alt in figure["alts"]:
            assert len(alt.split()) >= 5, f"{source}: alt text says nothing: {alt!r}"
            assert not re.search(r"\.(png|svg|jpe?g)$", alt), f"{source}: alt is a path: {alt}"


EDITIONS = HTML / "_colab"
ROLE = re.compile(r"\{[\w:-]+\}`")


@pytest.mark.parametrize("source", CHAPTERS)
def test_colab_editions_read_without_myst(source):
    import json

    edition = EDITIONS / Path(source).with_suffix(".ipynb").name
    assert edition.exists(), f"no Colab edition of {source} at {edition}"
    cells = json.loads(edition.read_text())["cells"]
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            raw = ROLE.findall(text)
            assert not raw, f"{edition.name}: raw roles {raw[:3]} in {text[:80]!r}"
        elif "pip install" in text:
            assert re.search(r"git\+https://\S+@[0-9a-f]{40}", text), (
                f"{edition.name}: install cell not pinned to the built commit: {text}"
            )
    assert "Colab edition" in "".join(cells[0]["source"])


@pytest.mark.parametrize("source", CHAPTERS)
def test_colab_button_opens_the_edition(source):
    text = page_of(source).read_text(encoding="utf-8")
    links = re.findall(r"https://colab\.research\.google\.com/[^\"']+", text)
    assert links, f"{source}: no Colab button"
    name = Path(source).with_suffix(".ipynb").name
    assert all(link.endswith(f"/_colab/{name}") for link in links), links
