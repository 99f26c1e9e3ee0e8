"""The words the prose takes from the numbers are chosen by one rule each, ties included."""

from __future__ import annotations

import math

from vitlens.book.wording import by_step, comparative, listing, never_decreases, steady_rise


def test_comparative_says_more_only_when_strictly_more():
    words = {"more": "larger", "less": "smaller"}
    assert comparative(2.0, 1.0, **words) == "larger"
    assert comparative(1.0, 2.0, **words) == "smaller"
    assert comparative(1.0, 1.0, **words) == "smaller"  # a tie: not "larger"
    assert comparative(1.0, 1.0, **words, same="as large") == "as large"
    assert comparative(2.0, 1.0, **words, same="as large") == "larger"
    assert comparative(math.nan, 1.0, **words) == "smaller"  # NaN reads as a tie
    assert comparative(math.nan, 1.0, **words, same="as large") == "as large"


def test_comparative_against_a_threshold_puts_the_threshold_first():
    words = {"more": "rewrites it", "less": "leaves it"}
    assert comparative(1.0, 0.8, **words) == "rewrites it"  # ratio under 1
    assert comparative(1.0, 1.0, **words) == "leaves it"
    assert comparative(1.0, 1.3, **words) == "leaves it"


def test_listing_joins_items_or_says_none():
    assert listing(["depth", "width"], none="none", sep="; ") == "depth; width"
    assert listing(iter([1, 2]), none="none") == "1, 2"
    assert listing([], none="none of the factors run") == "none of the factors run"
    assert listing((x for x in ()), none="-") == "-"


def test_by_step_or_never():
    assert by_step(1200) == "by step 1,200"
    assert by_step(0) == "by step 0"  # step 0 happened; only None is never
    assert by_step(None) == "never"
    assert by_step(None, never="not within the run") == "not within the run"


def test_steady_rise_allows_equal_neighbours_and_refuses_any_fall():
    assert never_decreases([0.1, 0.2, 0.2, 0.5])
    assert never_decreases([]) and never_decreases([3.0])
    assert not never_decreases([0.1, 0.3, 0.2])
    assert never_decreases(x for x in (1, 2, 3))  # any iterable, read once
    assert steady_rise([0.1, 0.2]) == "rises"
    assert steady_rise([0.2, 0.1]) == "does not rise steadily"
    assert steady_rise({"a": 0.3, "b": 0.1}.values(), rises="up", otherwise="not up") == "not up"
