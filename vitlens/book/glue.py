"""Glue between computations and the book's prose.

Numbers quoted in a chapter's text are computed in its cells and glued (myst-nb ``glue``)
into the prose; nothing is typed in by hand. Outside a Jupyter Book build (Colab, a plain
Jupyter session) the value is printed instead, so the notebooks run everywhere.
"""

from __future__ import annotations

import json
from typing import Any

from vitlens.book.claims import CLAIMS, LABELS

__all__ = ["VERDICTS", "finding", "glue", "ledger_record"]

VERDICTS = ("holds", "partly holds", "does not hold", "not testable here")
"""What a chapter may conclude about one of the paper's claims, for the findings ledger
(the outcomes of :mod:`vitlens.book.verdicts`)."""


def glue(name: str, value: Any, *, display: bool = False) -> Any:
    """Make ``value`` available to the prose as ``{glue:text}`name```; return it.

    Args:
        name: key used in the markdown.
        value: a number (NumPy and torch scalars become Python numbers), string or figure.
        display: also show the value in the cell output.
    """
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()  # NumPy / torch scalar -> Python number, so format specs apply
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: show the value plainly
        print(f"{name} = {value!r}")
        return value
    myst_glue(name, value, display=display)
    return value


def ledger_record(key: str, verdict) -> dict:
    """One ledger row as plain data: the verdict's record with the claim's key, label and text.

    This is what the ledger page's scorecard is drawn from
    (``book/_ext/ledger_counts.py`` reads it where :func:`finding` glued it).

    Args:
        key: the claim's identifier in ``CLAIMS``.
        verdict: a :class:`vitlens.book.verdicts.Verdict`.

    Returns:
        :meth:`vitlens.book.verdicts.Verdict.record` with ``key``, ``label`` (from
        :data:`vitlens.book.claims.LABELS`) and ``claim`` added; JSON-able.
    """
    if key not in CLAIMS:
        raise KeyError(f"no paper claim recorded for {key!r}; add it to vitlens.book.claims")
    return {"key": key, "label": LABELS[key], "claim": CLAIMS[key], **verdict.record()}


def finding(key: str, verdict) -> str:
    """Record one row of the findings ledger: glue ``{key}_claim``, ``_statistic``, ``_verdict``.

    The claim is the paper's, from :data:`vitlens.book.claims.CLAIMS`; the statistic (with
    its interval, its uncertainty source and the rule's margin) and the outcome come from a
    rule of :mod:`vitlens.book.verdicts`. The ledger page (``book/findings.md``) pastes all
    three from the chapter that measured them. In a book build it also glues
    ``{key}_record``, the row as JSON text (:func:`ledger_record`), from which the ledger
    draws its scorecard and the row's short form; outside one (Colab) that is not printed.

    Args:
        key: the claim's identifier in ``CLAIMS``, e.g. ``"ch3_fig3"``.
        verdict: a :class:`vitlens.book.verdicts.Verdict`.

    Returns:
        the outcome, one of :data:`VERDICTS`, for use in the chapter's own prose.

    Raises:
        KeyError: for a key with no claim; ValueError: for an outcome not in ``VERDICTS``.
    """

    if key not in CLAIMS:
        raise KeyError(f"no paper claim recorded for {key!r}; add it to vitlens.book.claims")
    if verdict.outcome not in VERDICTS:
        raise ValueError(f"verdict for {key!r} must be one of {VERDICTS}, got {verdict.outcome!r}")
    record = json.dumps(ledger_record(key, verdict))
    glue(f"{key}_claim", CLAIMS[key])
    glue(f"{key}_statistic", verdict.text())
    glue(f"{key}_verdict", verdict.outcome)
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # not building the book: nothing reads the record
        pass
    else:
        myst_glue(f"{key}_record", record, display=False)
    return verdict.outcome
