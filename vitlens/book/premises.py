"""Premises: whether what one of the paper's claims needs is present on a profile.

A claim is measured only where its premise holds (two models without a block's skip
connections for Fig. 8, a second training seed for Fig. 12's control, a ViT before and
after fine-tuning for Appendix G). Where it does not, the ledger row reads "not testable
here" with the reason in words, and the numbers the prose quotes read as stated
placeholders. A chapter asks its profile (:meth:`vitlens.book.profiles.Profile.premise`)
and hands the rule and the values to the :class:`Premise`; it never decides with its own
``if profile.has(...)``, so every chapter states a missing premise the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vitlens.book.glue import glue as glue_value
from vitlens.book.verdicts import Verdict, not_testable

__all__ = ["Premise"]


@dataclass(frozen=True)
class Premise:
    """Whether what a claim needs is present here and, if not, why, in words.

    Attributes:
        met: whether everything the claim needs is present.
        reason: why it is not, in words (the ledger shows it as the missing premise);
            ``""`` exactly when ``met``.
    """

    met: bool
    reason: str = ""

    def __post_init__(self) -> None:
        if self.met == bool(self.reason):
            raise ValueError("a premise states a reason exactly when it is not met")

    def verdict(self, rule: Callable[..., Verdict], *args: Any, **kwargs: Any) -> Verdict:
        """``rule(*args, **kwargs)`` when met, else :func:`~vitlens.book.verdicts.not_testable`
        with :attr:`reason`.

        The rule is not called when the premise is unmet (its inputs were never measured);
        arguments that exist only when it is met go inside a ``lambda``:
        ``premise.verdict(lambda: all_of(parts))``.
        """
        if not self.met:
            return not_testable(self.reason)
        return rule(*args, **kwargs)

    def value(self, compute: Callable[[], Any], otherwise: Any = None) -> Any:
        """``compute()`` when met, else ``otherwise`` (``compute`` is then not called).

        For an optional input of a rule, e.g. a control curve the rule uses where the
        profile has one: ``seed.value(lambda: seed_curve.result)``.
        """
        return compute() if self.met else otherwise

    def glue(
        self,
        values: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
        placeholders: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Glue ``values`` when met, else ``placeholders``, key by key; return what was glued.

        The prose quotes the same keys either way, so both must name the same keys (a key
        the prose quotes but nothing glued would fail the book's build only on the profile
        that lacks the premise). ``values`` may be a function returning the mapping, called
        only when met (its numbers exist only then).

        Raises:
            ValueError: when the values' keys are not the placeholders' keys.
        """
        glued = dict(values() if callable(values) else values) if self.met else dict(placeholders)
        if set(glued) != set(placeholders):
            raise ValueError(
                f"the values glue {sorted(glued)} but the placeholders {sorted(placeholders)}; "
                "both must glue the keys the prose quotes"
            )
        for name, value in glued.items():
            glue_value(name, value)
        return glued
