"""A premise runs a claim's rule and glues its numbers only where it is met; elsewhere the
claim is "not testable here" for the stated reason and the prose reads the placeholders."""

from __future__ import annotations

import math
import sys

import pytest

from vitlens.book.premises import Premise
from vitlens.book.verdicts import exceeds
from vitlens.core.stats import Estimate


def test_a_premise_states_a_reason_exactly_when_it_is_not_met():
    assert Premise(True).met and Premise(True).reason == ""
    assert not Premise(False, "no second seed").met
    with pytest.raises(ValueError):
        Premise(False)
    with pytest.raises(ValueError):
        Premise(True, "a reason for nothing")


def test_verdict_runs_the_rule_only_when_met():
    def rule(value, margin=0.0):
        return exceeds("x", Estimate.exact(value), margin)

    assert Premise(True).verdict(rule, 1.0, margin=0.5).outcome == "holds"
    calls = []
    unmet = Premise(False, "no models without skips: none public")
    verdict = unmet.verdict(lambda: calls.append(1))
    assert not calls, "the rule of an unmet premise must not run"
    assert verdict.outcome == "not testable here"
    assert verdict.premise == "no models without skips: none public"
    assert verdict.text() == "missing premise: no models without skips: none public"


def test_value_computes_only_when_met():
    assert Premise(True).value(lambda: 3) == 3
    assert Premise(False, "absent").value(lambda: 1 / 0) is None
    assert Premise(False, "absent").value(lambda: 1 / 0, otherwise=[]) == []


def test_glue_glues_values_or_placeholders_under_the_same_keys(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # print, as outside a book
    placeholders = {"early_block": math.nan, "rows": "not measured: absent"}
    glued = Premise(True).glue(lambda: {"early_block": 2, "rows": "a; b"}, placeholders)
    assert glued == {"early_block": 2, "rows": "a; b"}
    assert "early_block = 2\nrows = 'a; b'\n" == capsys.readouterr().out
    glued = Premise(False, "absent").glue(lambda: 1 / 0, placeholders)
    assert glued["rows"] == "not measured: absent" and math.isnan(glued["early_block"])
    assert "early_block = nan\nrows = 'not measured: absent'\n" == capsys.readouterr().out
    assert Premise(True).glue({"rows": "x"}, {"rows": "-"}) == {"rows": "x"}
    with pytest.raises(ValueError, match="both must glue the keys the prose quotes"):
        Premise(True).glue({"rows": "x", "extra": 1}, {"rows": "-"})
