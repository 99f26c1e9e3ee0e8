"""Sphinx extension: drop repeated identical ``<script>`` entries from every page.

sphinx-thebe (pulled in by Jupyter Book 1) adds its inline configuration script once per
``env-before-read-docs`` event; with notebook execution that event fires twice (once with
filename ``None``, once with ``''``), and every page then declares ``const THEBE_JS_URL``
twice, a JavaScript error in every browser.
"""

from __future__ import annotations


def _script_key(script) -> tuple:
    """Identity of a script: its file (``None`` and ``''`` both mean inline) and attributes."""
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), tuple(sorted(attributes.items()))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    seen: set[tuple] = set()
    unique = []
    for script in context.get("script_files", []):
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
