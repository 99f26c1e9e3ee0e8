"""Sphinx extension for the book's readers: static explorers and Colab editions.

* Sets ``VITLENS_BOOK_BUILD=1`` before the chapters execute, so that
  :func:`vitlens.book.explorers.explorer` pre-renders every view into an HTML selector
  (``_static/vitlens-explorer.js`` swaps the images on the page).
* After an HTML build, writes a *Colab edition* of every chapter to ``_colab/<name>.ipynb``:
  the chapter's notebook with each ``{glue:text}`` role replaced by the value this build
  computed (in bold, and said so in a note at the top), each citation written out as text,
  and the install cell pinned to the commit the site was built from. The site's Colab
  buttons open these editions (``launch_buttons.colab_url`` + the published ``_colab``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

GLUE_ROLE = re.compile(r"\{glue(?::text|:any|:)?\}`([^`]+)`")
CITE_ROLE = re.compile(r"\{cite(?::[pt])?\}`([^`]+)`")
ANY_ROLE = re.compile(r"\{[\w:-]+\}`([^`]+)`")
INSTALL = "vitlens @ git+https://github.com/vitlens/vitlens"
EDITIONS = "_colab"


def _commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def glued_values(executed: dict) -> dict[str, str]:
    """``{name: text/plain}`` of every value a chapter glued (myst-nb's scrapbook outputs)."""
    values = {}
    for cell in executed.get("cells", []):
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                data = output.get("data", {})  # keys carry myst-nb's mime prefix
                text = next((v for k, v in data.items() if k.endswith("text/plain")), "")
                values[name] = "".join(text) if isinstance(text, list) else text
    return values


def executed_notebook(cache_dir: Path, notebook: Path) -> dict:
    """The chapter as the build's execution cache holds it, glued outputs included.

    (The copies under ``jupyter_execute/`` have the glued outputs stripped.) The record
    whose code matches the notebook's is used, else the latest record of that file.
    """
    import nbformat
    from jupyter_cache import get_cache

    cache = get_cache(cache_dir)
    source = nbformat.read(notebook, as_version=4)
    try:
        record = cache.match_cache_notebook(source)
    except KeyError:
        records = [r for r in cache.list_cache_records() if Path(r.uri) == notebook.resolve()]
        if not records:
            raise
        record = max(records, key=lambda r: r.created)
    return nbformat.from_dict(cache.get_cache_bundle(record.pk).nb)


def format_glued(text: str, spec: str) -> str:
    """The text ``{glue:text}`name:spec``` shows for a glued ``text/plain`` repr."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    return format(value, spec) if spec else str(value)


def _citations(bibfile: Path) -> dict[str, str]:
    """``{key: "Raghu et al. (2021)"}`` for every entry of the bibliography."""
    from pybtex.database import parse_file

    names = {}
    for key, entry in parse_file(str(bibfile)).entries.items():
        people = entry.persons.get("author", [])
        last = [" ".join(p.last_names) for p in people]
        who = (
            last[0]
            if len(last) == 1
            else (f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} et al.")
        )
        names[key] = f"{who} ({entry.fields.get('year', 'n.d.')})"
    return names


def colab_edition(
    source: dict, executed: dict, cites: dict[str, str], commit: str | None, site: str
) -> dict:
    """A copy of the chapter ``source`` whose prose reads without myst-nb (see module doc)."""
    values = glued_values(executed)

    def glue(match: re.Match) -> str:
        name, _, spec = match[1].partition(":")
        if name not in values:
            raise KeyError(f"no glued value {name!r} in the executed notebook")
        return f"**{format_glued(values[name], spec)}**"

    def cite(match: re.Match) -> str:
        keys = [k.strip() for k in match[1].split(",")]
        return "; ".join(f"[{cites.get(k, k)}]({site}book/references.html)" for k in keys)

    edition = json.loads(json.dumps(source))
    for cell in edition["cells"]:
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            text = GLUE_ROLE.sub(glue, text)
            text = CITE_ROLE.sub(cite, text)
            text = ANY_ROLE.sub(lambda m: m[1].split(" <")[0], text)
        elif commit and INSTALL in text:
            text = text.replace(INSTALL, f"{INSTALL}@{commit}")
        cell["source"] = text
    where = f"commit `{commit[:12]}`" if commit else "this build"
    note = (
        "> **Colab edition** of a chapter of the book "
        f"[*Do Vision Transformers See Like CNNs?*]({site}). Numbers in **bold** in the "
        f"text are the values the site's build computed ({where}, the `tiny` profile); "
        "running the cells recomputes them in the outputs. The first code cell installs "
        "the version of `vitlens` the site was built from."
    )
    edition["cells"].insert(0, {"cell_type": "markdown", "metadata": {}, "source": note})
    return edition


def write_colab_editions(app, exception) -> None:
    if exception is not None or app.builder.name != "html":
        return
    root = Path(app.srcdir)
    out = Path(app.outdir)
    cache_dir = Path(app.config.nb_execution_cache_path or out.parent / ".jupyter_cache")
    commit = os.environ.get("VITLENS_COMMIT") or _commit(root)
    site = app.config.html_baseurl or "./"
    cites = _citations(root / "book" / "references.bib")
    (out / EDITIONS).mkdir(exist_ok=True)
    for notebook in sorted((root / "notebooks").glob("*.ipynb")):
        docname = f"notebooks/{notebook.stem}"
        if docname not in app.env.found_docs:
            continue
        executed = executed_notebook(cache_dir, notebook)
        edition = colab_edition(json.loads(notebook.read_text()), executed, cites, commit, site)
        (out / EDITIONS / notebook.name).write_text(json.dumps(edition, indent=1) + "\n")
    _point_colab_buttons(app, out)


def _point_colab_buttons(app, out: Path) -> None:
    """Make every page's Colab button open the chapter's edition on the published site."""
    repo = app.config.html_theme_options.get("repository_url", "").removeprefix(
        "https://github.com/"
    )
    if not repo:
        return
    branch = app.config.html_theme_options.get("repository_branch", "main")
    old = f"https://colab.research.google.com/github/{repo}/blob/{branch}/notebooks/"
    new = f"https://colab.research.google.com/github/{repo}/blob/gh-pages/{EDITIONS}/"
    for page in (out / "notebooks").glob("*.html"):
        text = page.read_text()
        if old in text:
            page.write_text(text.replace(old, new))


def setup(app):
    os.environ["VITLENS_BOOK_BUILD"] = "1"
    app.add_js_file("vitlens-explorer.js")
    app.connect("build-finished", write_colab_editions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
