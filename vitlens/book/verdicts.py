"""Verdict rules: does one of the paper's claims hold on this profile?

Every row of the findings ledger is decided here, never in a chapter. A rule takes the
claim's statistic with its uncertainty (an :class:`~vitlens.core.stats.Estimate`: a point
value and a 95% interval, from bootstrap replicates over images, batches, tokens or heads,
or from the spread over probe seeds) and a *stated margin*, and returns a :class:`Verdict`
with one of :data:`OUTCOMES`.

The rules, all in the claim's own direction (a statistic signed so that the claim says
"positive"):

* :func:`exceeds`: *holds* when the whole interval lies above ``null + margin`` (the
  effect is there and as large as the claim means); *partly holds* when the whole interval
  lies above ``null`` but not above ``null + margin`` (the direction is established, the
  size is not); *does not hold* otherwise, including an interval that straddles ``null``:
  an effect this profile cannot tell from noise is not a finding.
* :func:`negligible`: for "X is about zero" claims: *holds* when the whole interval lies
  within ``± margin``; *partly holds* when the point value does but the interval does
  not; *does not hold* when the point value lies outside.
* :func:`all_of`: a claim with several parts: *holds* when every part holds, *does not
  hold* when no part holds or partly holds, *partly holds* otherwise.
* :func:`not_testable`: the claim's premise is absent on this profile (e.g. no local
  heads to compare); the verdict names the missing premise in words.
* :func:`over_seeds`: one claim decided on several training seeds, every part's statistic
  combined over the seeds (:func:`vitlens.core.stats.across_seeds`) and decided again.

A verdict keeps the numbers it was decided on, one :class:`Part` per statistic held
against a rule, and :meth:`Verdict.record` writes them out as plain data (JSON), which
``vitlens.book.finding`` glues beside the ledger row's text; the ledger page's
scorecard (:func:`vitlens.plotting.ledger_scorecard`) is drawn from those records.

Stated margins: ``CKA_MARGIN = 0.05`` (the smallest CKA difference the book reads as one:
a few hundredths are within the estimation noise of a few hundred images, chapter 1) and
``ACCURACY_MARGIN = 0.02`` (two accuracy points); a chapter states any other margin where
it uses it, from what the paper's claim means.

The statistics' intervals come from :mod:`vitlens.core.stats` (bootstraps over items, two
accuracies, spreads over seeds) and, for CKA matrices, from
:func:`vitlens.analyses.compare.cka_estimate` (a paired bootstrap over minibatches).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from vitlens.analyses.attention import local_heads_px, local_threshold_px
from vitlens.analyses.compare import (
    cka_estimate,
    depth_halves,
    diagonal_half_gap,
    diagonal_halves,
    middle_blocks,
    middle_mean,
)
from vitlens.analyses.probes import ProbeResult, probe_difference
from vitlens.core.stats import (
    ONE_SEED,
    Estimate,
    across_seeds,
    bootstrap_difference,
    bootstrap_mean,
    proportion_difference,
    rank_correlation,
)
from vitlens.models import read_manifest
from vitlens.training.zoo import CONVERGED_GAIN, final_stage_gain

__all__ = [
    "ACCURACY_MARGIN",
    "CKA_MARGIN",
    "DATA_PREMISE_DROP",
    "MONOTONE_MARGIN",
    "OUTCOMES",
    "PROBE_SIGNAL",
    "RECORD_SCHEMA",
    "SIMILAR_CKA",
    "TRACKS_MARGIN",
    "UPPER_LOCAL_MARGIN",
    "VERY_SIMILAR_CKA",
    "Part",
    "Verdict",
    "all_of",
    "exceeds",
    "heads_local_then_global",
    "heldout",
    "less_data_less_local",
    "less_data_upper_layers_drift",
    "local_heads_closer_to_cnn",
    "local_then_global",
    "middle_block_skips_cost_accuracy",
    "negligible",
    "not_testable",
    "over_seeds",
    "robust_to_few_points",
    "stronger_intermediate",
    "training_gain",
    "very_similar",
]

CKA_MARGIN = 0.05
"""Smallest CKA difference the book reads as a difference (a few hundredths are within the
estimation noise of a few hundred images, chapter 1; 0.05 is visible on a heatmap)."""

ACCURACY_MARGIN = 0.02
"""Smallest accuracy difference (2 points) the book reads as one model or layer being
better."""

SIMILAR_CKA = 0.8
"""CKA the book reads as "similar" representations (:func:`very_similar` partly holds)."""

VERY_SIMILAR_CKA = 0.9
"""CKA the book reads as "very similar" representations, for claims that two models' layers
are alike in absolute terms (Fig. 12, Appendix G; :func:`very_similar` holds)."""

DATA_PREMISE_DROP = 0.05
"""Accuracy the smallest training set must cost (5 points on held-out images) before "less
data" is the paper's regime: its ImageNet-only ViTs trail the JFT-300M ones by more."""

OUTCOMES = ("holds", "partly holds", "does not hold", "not testable here")
"""What the book may conclude about one of the paper's claims."""


RECORD_SCHEMA = "vitlens.verdict/1"
"""The version tag of every verdict record (``Verdict.record``), refused without it."""

_RULES = ("exceeds", "negligible")
_RANK = {"does not hold": 0, "partly holds": 1, "holds": 2}


@dataclass(frozen=True)
class Part:
    """One statistic held against one rule: the numbers behind (a part of) a verdict.

    Attributes:
        what: the statistic in words.
        estimate: its point value and 95% interval, in the statistic's own units, signed
            so that the claim says "above ``null``" (rule ``"exceeds"``) or "about zero"
            (rule ``"negligible"``).
        rule: ``"exceeds"`` (:func:`exceeds`) or ``"negligible"`` (:func:`negligible`).
        null: the value of "no effect" (0 for ``"negligible"``), same units.
        margin: the rule's margin, same units (``>= 0``; ``> 0`` for ``"negligible"``).
        fmt: the number format of the text, e.g. ``".2f"`` or ``".1%"``.
        outcome: what the rule concluded from this statistic alone.
    """

    what: str
    estimate: Estimate
    rule: str
    null: float
    margin: float
    fmt: str
    outcome: str

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise ValueError(f"rule must be one of {_RULES}, got {self.rule!r}")
        if self.outcome not in _RANK:
            raise ValueError(
                f"a part's outcome must be one of {tuple(_RANK)}, got {self.outcome!r}"
            )
        if not (np.isfinite(self.null) and np.isfinite(self.margin)) or self.margin < 0:
            raise ValueError(f"need a finite null and margin >= 0, got {self.null}, {self.margin}")
        if self.rule == "negligible" and (self.margin <= 0 or self.null != 0):
            raise ValueError("a 'negligible' part needs margin > 0 and null 0")

    def threshold(self) -> str:
        """The rule's line for *holds*, e.g. ``"holds above 0.05"``, ``"holds within ±2.0%"``."""
        if self.rule == "negligible":
            return f"holds within ±{self.margin:{self.fmt}}"
        return f"holds above {self.null + self.margin:{self.fmt}}"

    def summary(self) -> str:
        """Estimate, interval and threshold in a few words: ``"0.12 [0.08, 0.15]; holds
        above 0.05"``."""
        return f"{self.estimate.text(self.fmt)}; {self.threshold()}"

    def scaled(self) -> tuple[float, float, float]:
        """``(value, low, high)`` on the scorecard's common axis, where every rule reads alike.

        The axis is in units of the rule's margin, signed in the claim's direction, so that
        *holds* is "the whole interval right of 1" for every part:

        * ``"exceeds"`` with ``margin > 0``: ``(x - null) / margin``; "no effect" is 0, the
          margin 1, *partly holds* an interval right of 0 but not of 1.
        * ``"exceeds"`` with ``margin == 0`` (any effect counts): ``1 + (x - null) / s``,
          the threshold on the margin line, ``s`` the interval's largest distance from
          ``null`` (1 if the interval is the point ``null``).
        * ``"negligible"`` (holds within ``±margin``): ``2 - |x| / margin``, folded so that
          a smaller size is further right; ``x = 0`` is 2, ``|x| = margin`` is 1, and the
          interval runs from the largest size in it to the smallest (0 when it spans 0).
        """
        x, lo, hi = self.estimate.value, self.estimate.low, self.estimate.high
        if self.rule == "negligible":
            near = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
            far = max(abs(lo), abs(hi))
            m = self.margin
            return 2 - abs(x) / m, 2 - far / m, 2 - near / m
        if self.margin > 0:
            m = self.margin
            return (x - self.null) / m, (lo - self.null) / m, (hi - self.null) / m
        s = max(abs(lo - self.null), abs(hi - self.null)) or 1.0
        return 1 + (x - self.null) / s, 1 + (lo - self.null) / s, 1 + (hi - self.null) / s

    def record(self) -> dict:
        """This part as plain JSON-able data (:meth:`from_record` reads it back)."""
        return {  # plain floats: a NumPy or torch scalar in an estimate still writes as JSON
            "what": self.what,
            "value": float(self.estimate.value),
            "low": float(self.estimate.low),
            "high": float(self.estimate.high),
            "source": self.estimate.source,
            "rule": self.rule,
            "null": float(self.null),
            "margin": float(self.margin),
            "fmt": self.fmt,
            "outcome": self.outcome,
            "text": self.estimate.text(self.fmt),
            "summary": self.summary(),
            "scaled": [float(x) for x in self.scaled()],
        }

    @classmethod
    def from_record(cls, record: dict) -> Part:
        """The part :meth:`record` wrote (derived fields, e.g. ``"scaled"``, are ignored)."""
        estimate = Estimate(record["value"], record["low"], record["high"], record["source"])
        fields = ("what", "rule", "null", "margin", "fmt", "outcome")
        return cls(estimate=estimate, **{name: record[name] for name in fields})


@dataclass(frozen=True)
class Verdict:
    """One ledger row's conclusion.

    Attributes:
        outcome: one of :data:`OUTCOMES`.
        statistic: what was measured, with its numbers, 95% interval and uncertainty source.
        margin: the rule and the margin the statistic was held against, in words.
        premise: for ``"not testable here"``, the missing premise in words; else ``""``.
        parts: the statistics the outcome was decided on, one :class:`Part` each, in the
            order of ``statistic`` (empty for a claim not testable here, whose rule was
            not applied, and for a verdict written by hand).
    """

    outcome: str
    statistic: str
    margin: str
    premise: str = ""
    parts: tuple[Part, ...] = ()

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if (self.outcome == "not testable here") != bool(self.premise):
            raise ValueError("a premise is given exactly when the outcome is 'not testable here'")
        object.__setattr__(self, "parts", tuple(self.parts))
        if not all(isinstance(part, Part) for part in self.parts):
            raise TypeError("a verdict's parts must be Part objects")

    def text(self) -> str:
        """The statistic and the rule in one line, as the ledger shows them."""
        parts = [self.statistic] if self.statistic else []
        if self.premise:
            parts.append(f"missing premise: {self.premise}")
        if self.margin:
            parts.append(f"rule: {self.margin}")
        return "; ".join(parts)

    @property
    def lead(self) -> int | None:
        """Index of the part that decides the outcome, the first with the worst outcome.

        For one part, that part; for :func:`all_of`, the part that keeps the claim from
        holding (the weakest), or the first part when all hold. ``None`` without parts.
        """
        if not self.parts:
            return None
        ranks = [_RANK[part.outcome] for part in self.parts]
        return ranks.index(min(ranks))

    def headline(self) -> str:
        """The statistic in one short line, for the ledger's row: the deciding part's
        estimate, interval and threshold (``"weakest of 3: 0.03 [0.01, 0.05]; holds above
        0.05"``), or the missing premise's first words."""
        if self.outcome == "not testable here":
            return f"missing premise: {_first_words(self.premise)}"
        if self.lead is None:
            return _first_words(self.statistic)
        summary = self.parts[self.lead].summary()
        if len(self.parts) == 1:
            return summary
        return f"weakest of {len(self.parts)}: {summary}"

    def record(self) -> dict:
        """The verdict as plain JSON-able data, for the ledger's scorecard.

        Keys: ``schema`` (:data:`RECORD_SCHEMA`), ``outcome``, ``statistic``, ``margin``,
        ``premise``, ``parts`` (:meth:`Part.record` each, which adds the part's
        ``"scaled"`` ``[value, low, high]`` on the scorecard's axis), ``lead``
        (:attr:`lead`), ``headline`` (:meth:`headline`) and ``text`` (:meth:`text`).
        """
        return {
            "schema": RECORD_SCHEMA,
            "outcome": self.outcome,
            "statistic": self.statistic,
            "margin": self.margin,
            "premise": self.premise,
            "parts": [part.record() for part in self.parts],
            "lead": self.lead,
            "headline": self.headline(),
            "text": self.text(),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Verdict:
        """The verdict :meth:`record` wrote (also after a JSON round trip).

        Raises:
            ValueError: for data without :data:`RECORD_SCHEMA`'s tag.
        """
        if not isinstance(record, dict) or record.get("schema") != RECORD_SCHEMA:
            raise ValueError(f"not a verdict record ({RECORD_SCHEMA!r} expected)")
        return cls(
            record["outcome"],
            record["statistic"],
            record["margin"],
            record["premise"],
            tuple(Part.from_record(part) for part in record["parts"]),
        )


def _first_words(text: str, limit: int = 60) -> str:
    """A sentence's gist: without parentheses, up to its first colon, at most ``limit``
    characters (cut at a word, with an ellipsis)."""
    previous = None
    while previous != text:
        previous, text = text, re.sub(r"\s*\([^()]*\)", "", text)
    text = text.split(": ")[0].strip()
    if len(text) > limit:
        text = text[:limit].rsplit(" ", 1)[0].rstrip(",;") + "…"
    return text


def _describe(what: str, estimate: Estimate, fmt: str) -> str:
    return f"{what} {estimate.text(fmt)} (95% interval: {estimate.source})"


def exceeds(
    what: str, estimate: Estimate, margin: float, *, null: float = 0.0, fmt: str = ".2f"
) -> Verdict:
    """Is the statistic above ``null`` by at least ``margin``, beyond its uncertainty?

    Args:
        what: the statistic in words, e.g. ``"own-minus-other CKA, ResNet minus ViT"``.
        estimate: the statistic, signed so that the claim says it is above ``null``.
        margin: the smallest excess over ``null`` that the claim means (``>= 0``).
        null: the value of "no effect".
        fmt: number format for the text.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if estimate.low > null + margin:
        outcome = "holds"
    elif estimate.low > null:
        outcome = "partly holds"
    else:
        outcome = "does not hold"
    rule = (
        f"holds if the interval lies above {null + margin:{fmt}}, partly if only above {null:{fmt}}"
    )
    part = Part(what, estimate, "exceeds", float(null), float(margin), fmt, outcome)
    return Verdict(outcome, _describe(what, estimate, fmt), rule, parts=(part,))


def negligible(what: str, estimate: Estimate, margin: float, *, fmt: str = ".2f") -> Verdict:
    """Is the statistic zero within ``± margin``, beyond its uncertainty?"""
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if max(abs(estimate.low), abs(estimate.high)) < margin:
        outcome = "holds"
    elif abs(estimate.value) < margin:
        outcome = "partly holds"
    else:
        outcome = "does not hold"
    rule = f"holds if the interval lies within ±{margin:{fmt}}, partly if the estimate does"
    part = Part(what, estimate, "negligible", 0.0, float(margin), fmt, outcome)
    return Verdict(outcome, _describe(what, estimate, fmt), rule, parts=(part,))


def very_similar(what: str, estimate: Estimate) -> Verdict:
    """Are two representations "very similar"? CKA whose whole interval lies above
    :data:`VERY_SIMILAR_CKA` *holds*, above :data:`SIMILAR_CKA` *partly holds*."""
    return exceeds(what, estimate, VERY_SIMILAR_CKA - SIMILAR_CKA, null=SIMILAR_CKA)


def all_of(parts: Sequence[Verdict]) -> Verdict:
    """A claim of several parts: holds if all hold, does not hold if none even partly holds.

    A part that is not testable makes the whole claim not testable. The result keeps every
    part's numbers (``Verdict.parts``, the parts' own parts in order); its
    :attr:`Verdict.lead` is the part that decides, the first with the worst outcome.
    """
    if not parts:
        raise ValueError("all_of needs at least one part")
    untestable = [p for p in parts if p.outcome == "not testable here"]
    statistic = "; ".join(p.statistic for p in parts if p.statistic)
    margin = "every part: " + " / ".join(dict.fromkeys(p.margin for p in parts if p.margin))
    numbers = tuple(number for p in parts for number in p.parts)
    if untestable:
        return Verdict(
            "not testable here",
            statistic,
            margin,
            "; ".join(p.premise for p in untestable),
            numbers,
        )
    outcomes = [p.outcome for p in parts]
    if all(o == "holds" for o in outcomes):
        outcome = "holds"
    elif all(o == "does not hold" for o in outcomes):
        outcome = "does not hold"
    else:
        outcome = "partly holds"
    return Verdict(outcome, statistic, margin, parts=numbers)


def not_testable(premise: str, statistic: str = "") -> Verdict:
    """The claim's premise is absent here; ``premise`` says which, in words."""
    if not premise:
        raise ValueError("say which premise is missing")
    return Verdict("not testable here", statistic, "", premise)


def over_seeds(verdicts: Sequence[Verdict], *, seeds: str = "training seeds") -> Verdict:
    """One claim decided on several training seeds, each seed's verdict by the same rule:
    the verdict on their statistics combined.

    Each part's estimate becomes :func:`vitlens.core.stats.across_seeds` of that part in
    every seed (the mean over seeds, its interval over the seeds and the images), and the
    part is decided again by its own rule and margin (its words, and any number in them,
    are the first seed's); a claim of several parts is then :func:`all_of` them. The
    claim's premise must hold in every seed: where it is missing in some, the claim is *not
    testable here*, naming those seeds (a premise present by chance of one training run is
    not the paper's regime). Seeds whose rules took different paths
    (e.g. one seed with no local head at all, where Fig. 3's rule stops after its first
    part) are not averaged: the weakest seed's verdict is kept and the statistic says so.

    Args:
        verdicts: one verdict per seed, the first seed first, at least 2.
        seeds: what the seeds are, in words.
    """
    if len(verdicts) < 2:
        raise ValueError(f"combining over seeds needs at least 2 verdicts, got {len(verdicts)}")
    untestable = [i for i, v in enumerate(verdicts) if v.outcome == "not testable here"]
    if untestable:
        if len(untestable) == len(verdicts):
            return verdicts[0]
        missing = "; ".join(f"seed {i}: {verdicts[i].premise}" for i in untestable)
        return not_testable(
            f"the premise holds in {len(verdicts) - len(untestable)} of {len(verdicts)} "
            f"{seeds} only ({missing})",
            verdicts[0].statistic,
        )
    forms = {tuple((p.rule, p.null, p.margin, p.fmt) for p in v.parts) for v in verdicts}
    if len(forms) != 1 or not verdicts[0].parts:
        weakest = min(range(len(verdicts)), key=lambda i: _RANK[verdicts[i].outcome])
        outcomes = ", ".join(f"seed {i}: {v.outcome}" for i, v in enumerate(verdicts))
        kept = verdicts[weakest]
        return replace(
            kept,
            statistic=f"the {seeds}' rules took different paths ({outcomes}); seed {weakest}, "
            f"the weakest, shown: {kept.statistic}",
        )
    decided = []
    for parts in zip(*(v.parts for v in verdicts), strict=True):
        first = parts[0]
        estimate = across_seeds([p.estimate for p in parts], seeds=seeds)
        if first.rule == "negligible":
            decided.append(negligible(first.what, estimate, first.margin, fmt=first.fmt))
        else:
            decided.append(
                exceeds(first.what, estimate, first.margin, null=first.null, fmt=first.fmt)
            )
    return decided[0] if len(decided) == 1 else all_of(decided)


TRACKS_MARGIN = 0.5
"""Rank correlation the book reads as "a measure moves with what a probe loses" (chapter
"Can we trust the heatmap?"): half-way from no relation (0) to the same order (1)."""


def robust_to_few_points(what: str, drop: Estimate, accuracy_change: Estimate) -> Verdict:
    """Does a measure stay put when a few images' features move, as a probe's accuracy does?

    The premise is that the probe does not notice the move: if its accuracy change is not
    negligible within :data:`ACCURACY_MARGIN` (the interval outside it), the claim is not
    testable. Otherwise the measure's ``1 - similarity`` must be negligible within
    :data:`CKA_MARGIN` (:func:`negligible`).

    Args:
        what: the statistic in words.
        drop: ``1 - similarity`` between the features and their moved copy.
        accuracy_change: the probe's accuracy on the moved copy minus on the original.
    """
    probe = negligible("probe accuracy change", accuracy_change, ACCURACY_MARGIN)
    if probe.outcome == "does not hold":
        return not_testable(
            f"the probe's accuracy changed by {accuracy_change.text()} when the points moved "
            f"(more than {ACCURACY_MARGIN} either way), so the move is not one that leaves "
            "what the network computes intact",
            drop.text(),
        )
    return negligible(what, drop, CKA_MARGIN, fmt=".3f")


MONOTONE_MARGIN = 0.7
"""Rank correlation the book reads as "decreases monotonically" (one swap of neighbours
among four subsets gives 0.8, a strictly monotone sequence 1)."""


def local_heads_closer_to_cnn(
    subsets,
    subset_distance: Sequence[float],
    local_heads: int,
    *,
    threshold: str,
    unit: str = "px",
) -> Verdict:
    """Figure 5's rule: lower CNN layers are most similar to a block's local heads and less
    and less similar as the heads grow more global.

    The paper's premise is a block that *has* local heads; without one the claim is not
    testable here (an all-global block cannot show whether locality brings a head closer
    to a convolution). With local heads, two parts, each with a bootstrap over minibatches:
    the most local subset's CKA with the CNN's lower layers minus the most global one's,
    held against :data:`CKA_MARGIN`; and "decrease monotonically", the rank correlation
    between a subset's place in the order (local to global) and its CKA, negated, held
    against :data:`MONOTONE_MARGIN`.

    Args:
        subsets: :class:`vitlens.analyses.attention.HeadSubsetCKA` (rows: head subsets from
            most local to most global; columns: the CNN's lower layers).
        subset_distance: each subset's mean attention distance, same order, in ``unit``.
        local_heads: number of local heads in the block.
        threshold: the local-head line in words (e.g. ``"8.2 px"``), for the premise.
        unit: unit of ``subset_distance``.
    """
    rows = len(subsets.matrix)
    if len(subset_distance) != rows or rows < 2:
        raise ValueError(
            "need one distance per head subset, at least two subsets; got "
            f"{rows} subsets and {len(subset_distance)} distances"
        )
    per_subset = np.asarray(subsets.matrix, dtype=float).mean(axis=1)
    statistic = (
        f"CKA with the ResNet's lower layers: most local heads "
        f"({float(subset_distance[0]):.2f} {unit}) {per_subset[0]:.2f}, most global "
        f"({float(subset_distance[-1]):.2f} {unit}) {per_subset[-1]:.2f}"
    )
    if local_heads < 1:
        return not_testable(f"the block has no local head (none under {threshold})", statistic)
    order = np.arange(rows)
    note = ONE_SEED
    gap = cka_estimate(lambda m: m[0].mean() - m[-1].mean(), subsets, note=note)
    trend = cka_estimate(lambda m: -rank_correlation(order, m.mean(axis=1)), subsets, note=note)
    return all_of(
        [
            exceeds(f"{statistic}; most local minus most global subset", gap, CKA_MARGIN),
            exceeds(
                f"decrease from local to global: minus the rank correlation of CKA with the "
                f"order of {rows} subsets",
                trend,
                MONOTONE_MARGIN,
            ),
        ]
    )


UPPER_LOCAL_MARGIN = 0.05
"""Largest share of local heads in the upper half that still reads as "entirely global"
(fewer than one head in twenty)."""


def local_then_global(
    lower_local: Sequence[bool], upper_local: Sequence[bool], *, threshold: str, source: str
) -> Verdict:
    """Figure 3's rule: lower layers attend locally *and* globally, higher ones only globally.

    Three parts, each a share of heads with a bootstrap over the half's heads: the lower
    half has local heads (share above 0) and global ones (share of non-local heads above
    0), and the upper half's share of local heads is within :data:`UPPER_LOCAL_MARGIN` of
    0. Without a single local head in the lower half the claim's contrast is absent and
    "entirely global" above would hold vacuously, so the claim *does not hold* (its first
    part fails) and its upper-half part is not counted.

    Args:
        lower_local, upper_local: one flag per head of the lower / upper half's blocks
            (True: local, under ``threshold``).
        threshold: the local-head line in words, for the text.
        source: the uncertainty in words.
    """
    lower = np.asarray(lower_local, dtype=float).ravel()
    upper = np.asarray(upper_local, dtype=float).ravel()
    if lower.size < 2 or upper.size < 2:
        raise ValueError("each half needs at least 2 heads")
    local_lower = exceeds(
        f"lower half: share of local heads (under {threshold})",
        bootstrap_mean(lower, source=source),
        0.0,
        fmt=".0%",
    )
    global_lower = exceeds(
        "lower half: share of global heads",
        bootstrap_mean(1 - lower, source=source),
        0.0,
        fmt=".0%",
    )
    upper_share = bootstrap_mean(upper, source=source)
    if lower.sum() == 0:
        statistic = (
            f"{local_lower.statistic}; upper half: share of local heads "
            f"{upper_share.text('.0%')} (not counted: with no local head below, 'entirely "
            "global' above holds vacuously)"
        )
        return Verdict("does not hold", statistic, local_lower.margin, parts=local_lower.parts)
    return all_of(
        [
            local_lower,
            global_lower,
            negligible(
                "upper half: share of local heads", upper_share, UPPER_LOCAL_MARGIN, fmt=".0%"
            ),
        ]
    )


def heads_local_then_global(distances, model, *, source: str) -> Verdict:
    """:func:`local_then_global` on one ViT's mean attention distances (Figures 3 and C.6).

    The heads of the lower and upper half of the blocks
    (:func:`~vitlens.analyses.compare.depth_halves`), each local when under the model's
    threshold in pixels (:func:`~vitlens.analyses.attention.local_heads_px`).

    Args:
        distances: ``(blocks, heads)`` mean attention distances in pixels
            (:func:`vitlens.analyses.attention.mean_attention_distance`).
        model: the ViT they were measured on (its grid and patch size set the threshold).
        source: the uncertainty in words.
    """
    lower, upper = depth_halves(len(distances))
    local = local_heads_px(distances, model)
    return local_then_global(
        local[lower].flatten().numpy(),
        local[upper].flatten().numpy(),
        threshold=f"{local_threshold_px(model):.1f} px",
        source=source,
    )


def less_data_less_local(
    accuracy: dict[int, tuple[float, int] | None],
    distances: dict[int, np.ndarray],
    *,
    margin: float,
    source: str,
) -> Verdict:
    """Figure 4's rule: with less training data, lower blocks attend less locally.

    Premise: a data axis where less data clearly costs accuracy (the smallest set at least
    :data:`DATA_PREMISE_DROP` below the largest on held-out images); without it the claim
    is *not testable here*. With it, the statistic is the mean attention distance of the
    lowest blocks' heads, smallest minus largest training set (bootstrap over heads), held
    against ``margin``.

    Args:
        accuracy: training images -> ``(held-out accuracy, test images)`` or ``None`` if
            unknown, for the smallest and the largest set at least.
        distances: training images -> the lowest blocks' head distances (any shape; pixels).
        margin: the smallest distance difference the claim means, in pixels.
        source: the uncertainty in words.
    """
    distances = {n: np.asarray(d, dtype=float) for n, d in distances.items()}
    least, most = min(distances), max(distances)
    means = ", ".join(
        f"{n:,} images {float(np.mean(d)):.1f} px" for n, d in sorted(distances.items())
    )
    statistic = f"mean distance in the lowest blocks: {means}"
    if accuracy.get(least) is None or accuracy.get(most) is None:
        return not_testable("no held-out accuracies for the data-scale models", statistic)
    (acc_least, _), (acc_most, _) = accuracy[least], accuracy[most]
    if acc_most - acc_least < DATA_PREMISE_DROP:
        return not_testable(
            f"less data does not clearly hurt here: held-out accuracy {acc_least:.1%} with "
            f"{least:,} images vs {acc_most:.1%} with {most:,} (premise: at least "
            f"{DATA_PREMISE_DROP:.0%} lower)",
            statistic,
        )
    return exceeds(
        f"{statistic}; {least:,} minus {most:,} images (px)",
        bootstrap_difference(np.ravel(distances[least]), np.ravel(distances[most]), source=source),
        margin,
        fmt=".1f",
    )


def less_data_upper_layers_drift(least, most, seed=None, *, names: tuple[str, str]) -> Verdict:
    """Figure 12's rule: with little data the lower layers stay very similar to the
    full-data model's, the upper ones do not.

    Parts, each a statistic of block-by-block CKA with the full-data model (the diagonal of
    a cross-model :class:`vitlens.analyses.compare.CKAResult`) with a bootstrap over
    minibatches: the least-data model's lower half is :func:`very_similar`; its lower half
    exceeds its upper half by :data:`CKA_MARGIN`; and a control. Two models trained on the
    *same* data with different seeds also drift apart in their upper layers, so with a
    second seed of the full-data model (``seed``) the control asks that the least-data
    model's upper half be further from the full-data model than the other seed's is, by
    :data:`CKA_MARGIN`. Without one, it asks that the lower-minus-upper gap grow as the data
    shrink (least-data model minus the ``most``-data one below full), which seed noise
    alone would not do.

    Args:
        least, most: CKA results of the least- and the most-data model below full against
            the full-data model, on the same images in the same batches.
        seed: the same for a second training seed of the full-data model, or ``None``.
        names: ``(least, most)`` labels for the text.
    """

    least_name, most_name = names
    parts = [
        very_similar(
            f"{least_name}: lower half's mean CKA with the full-data model",
            cka_estimate(lambda m: diagonal_halves(m)[0], least),
        ),
        exceeds(
            f"{least_name}: CKA with the full-data model, lower minus upper half",
            cka_estimate(diagonal_half_gap, least),
            CKA_MARGIN,
        ),
    ]
    if seed is not None:
        parts.append(
            exceeds(
                f"upper half's CKA with the full-data model: another seed on the same data minus "
                f"{least_name}",
                cka_estimate(
                    lambda s, m: diagonal_halves(s)[1] - diagonal_halves(m)[1], seed, least
                ),
                CKA_MARGIN,
            )
        )
    else:
        parts.append(
            exceeds(
                f"lower-minus-upper gap, {least_name} minus {most_name}",
                cka_estimate(lambda a, b: diagonal_half_gap(a) - diagonal_half_gap(b), least, most),
                CKA_MARGIN,
            )
        )
    return all_of(parts)


def middle_block_skips_cost_accuracy(
    intact: tuple[float, int],
    without: dict[int, tuple[float, int]],
    depth: int,
    *,
    still_rising: dict[int, float] | None = None,
) -> Verdict:
    """Figure 8's accuracy rule: "For middle blocks without skip connections, we observe a
    performance drop of 4%."

    Only models whose block without skips is a middle one
    (:func:`vitlens.analyses.compare.middle_blocks` of ``depth``) count; each must be less
    accurate on held-out images than the intact model by :data:`ACCURACY_MARGIN`
    (:func:`~vitlens.core.stats.proportion_difference`). Without such a model the claim is
    *not testable here*; so it is where a counted model's training had not converged (its
    held-out accuracy still rising by :data:`vitlens.training.zoo.CONVERGED_GAIN` or more over
    the end of its training): its drop would count unfinished training as the skips' cost.

    Args:
        intact: ``(accuracy, test images)`` of the intact model.
        without: block whose skips were removed -> ``(accuracy, test images)`` of that model.
        depth: the models' number of blocks.
        still_rising: block -> held-out accuracy gained over the last 20 % of that model's
            training (:func:`training_gain`), where it was logged.
    """

    middle = middle_blocks(depth)
    counted = {block: acc for block, acc in sorted(without.items()) if block in middle}
    if not counted:
        return not_testable(
            f"no model without the skips of a middle block (blocks {middle.start} to "
            f"{middle.stop - 1} of {depth}; models: blocks {sorted(without)})"
        )
    rising = {
        block: gain
        for block, gain in sorted((still_rising or {}).items())
        if block in counted and gain >= CONVERGED_GAIN
    }
    if rising:
        return not_testable(
            "the training of the model without the skips of block "
            + ", ".join(
                f"{block} had not converged (held-out accuracy still rose {gain:.1%} over "
                "its last 20 % of steps)"
                for block, gain in rising.items()
            )
        )
    return all_of(
        [
            exceeds(
                f"held-out accuracy, intact minus no skips in block {block}",
                proportion_difference(
                    *intact,
                    *acc,
                    source=f"binomial, {intact[1]:,} held-out images; {ONE_SEED}",
                ),
                ACCURACY_MARGIN,
                fmt=".1%",
            )
            for block, acc in counted.items()
        ]
    )


PROBE_SIGNAL = 0.05
"""How far above chance (5 points) a few-shot probe must read a task before a comparison
of probe accuracies between models says anything about their representations."""


def stronger_intermediate(
    better: tuple[str, ProbeResult],
    worse: tuple[str, ProbeResult],
    *,
    chance: float,
    source: str,
    what: str = "10-shot probe accuracy",
) -> Verdict:
    """Fig. 13 (right) and F.2's rule: model ``better`` keeps stronger intermediate
    representations than model ``worse``.

    The statistic is the probe accuracy averaged over each model's middle half of blocks
    (:func:`vitlens.analyses.compare.middle_blocks`), ``better`` minus ``worse``, with an
    interval over the probe seeds and the scored images
    (:func:`vitlens.analyses.probes.probe_difference`), held against
    :data:`ACCURACY_MARGIN`. Premise: the probes read the task, the better of the two
    middle-block means at least :data:`PROBE_SIGNAL` above ``chance``; without it the
    comparison is *not testable here*.

    Args:
        better, worse: ``(name, result)``, per-block probe results
            (:func:`vitlens.analyses.probes.probe_by_layer`).
        chance: the task's chance accuracy.
        source: what the interval does not cover, in words.
        what: the probe in words.
    """

    (name_a, result_a), (name_b, result_b) = better, worse
    mid_a, mid_b = middle_mean(result_a.mean), middle_mean(result_b.mean)
    statistic = f"{what} on the middle half of the blocks, {name_a} minus {name_b}"
    if max(mid_a, mid_b) < chance + PROBE_SIGNAL:
        return not_testable(
            f"the probes do not read this task: {name_a} {mid_a:.1%}, {name_b} {mid_b:.1%} on "
            f"their middle blocks, chance {chance:.1%} (premise: at least "
            f"{PROBE_SIGNAL:.0%} above chance)",
            statistic,
        )
    return exceeds(
        statistic,
        probe_difference(
            result_a,
            result_b,
            at_a=middle_blocks(result_a.mean.shape[0]),
            at_b=middle_blocks(result_b.mean.shape[0]),
            source=source,
        ),
        ACCURACY_MARGIN,
        fmt=".1%",
    )


def training_gain(model_name: str) -> float | None:
    """Held-out accuracy a zoo model gained over the last 20 % of its (last) training stage
    (:func:`vitlens.training.zoo.final_stage_gain`), or ``None`` where its manifest entry
    logged no held-out history."""

    history = read_manifest().get(model_name, {}).get("history") or []
    if sum(row.get("heldout_acc") is not None for row in history) < 2:
        return None
    return final_stage_gain(history)


def heldout(model_name: str) -> tuple[float, int] | None:
    """``(accuracy, images)`` of a zoo model on its held-out test split, or ``None``."""

    entry = read_manifest().get(model_name, {}).get("heldout")
    return None if entry is None else (float(entry["accuracy"]), int(entry["n"]))
