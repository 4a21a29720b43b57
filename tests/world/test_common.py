"""The error machinery the scripted teacher relies on: slips, misreadings, 'clearly wrong'."""

from __future__ import annotations

import random

import pytest

from vlmcot.world.common import (
    Trace,
    an,
    clearly_different,
    join,
    levenshtein,
    misread_number,
    slip,
    weighted,
)


def test_trace_without_slip_is_exact():
    t = Trace()
    assert t.add(4, 7) == 11 and t.mul(2, 11) == 22 and t.sub(22, 5) == 17
    assert t.running_sum([1, 2, 3, 4]) == 10
    assert [s.expr() for s in t.steps[:3]] == ["4 + 7 = 11", "2 × 11 = 22", "22 - 5 = 17"]
    assert not any(s.slipped for s in t.steps)


def test_slip_is_carried_forward():
    for seed in range(50):
        t = Trace(random.Random(seed), slip_at=0)
        h = t.add(4, 7)
        p = t.mul(2, h)
        assert h != 11 and t.steps[0].slipped
        assert p == 2 * h and not t.steps[1].slipped  # later steps compute correctly from the wrong value


def test_slip_values_are_plausible():
    rng = random.Random(0)
    for _ in range(500):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        w = slip(rng, "mul", [a, b], a * b)
        assert w != a * b and w >= 0
        w = slip(rng, "add", [a, b], a + b)
        assert w != a + b and abs(w - (a + b)) <= 10


def test_misread_number_differs_and_stays_non_negative():
    rng = random.Random(1)
    for v in list(range(0, 30)) + [45, 99]:
        for attempt in (0, 5, 30, 79):
            r = misread_number(rng, v, attempt)
            assert r != v and r >= 0


@pytest.mark.parametrize(
    "wrong, right, expected",
    [
        ("12", "12", False),
        ("12.0", "12", False),
        ("21", "20", False),  # within ChartQA's 5%: the metric would accept it
        ("22", "20", False),  # 10% off (relaxed: wrong) but one digit of two (ANLS: 0.5)
        ("23", "20", False),
        ("32", "20", True),
        ("1", "0", True),
        ("tea", "TEA", False),
        ("tea", "pie", True),
        ("CAFE", "CAKE", False),  # ANLS would still give 0.75: not clearly wrong
        ("B", "C", True),
        ("13", "12", False),  # relaxed: 8% off, wrong; but ANLS still gives 0.5
        ("31", "12", True),
    ],
)
def test_clearly_different(wrong, right, expected):
    assert clearly_different(wrong, right) is expected


def test_clearly_different_per_metric():
    assert not clearly_different("58", "59")  # within 5%: not wrong for every metric
    assert not clearly_different("58", "59", "anls")  # ANLS: d/len = 0.5 still earns 0.5
    assert clearly_different("61", "59", "anls")
    assert not clearly_different("58", "59", "relaxed_accuracy")
    assert clearly_different("22", "20", "relaxed_accuracy")
    assert not clearly_different("CAFE", "CAKE", "anls")
    assert clearly_different("CAFE", "CAKE", "exact_match")


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


def test_wording_helpers():
    assert join(["a"]) == "a" and join(["a", "b", "c"]) == "a, b and c"
    assert an("orange") == "an orange" and an("red") == "a red" and an("ID CARD") == "an ID CARD"
    rng = random.Random(0)
    assert {weighted(rng, {"x": 1.0, "y": 0.0}) for _ in range(50)} == {"x"}
    with pytest.raises(ValueError):
        weighted(rng, {"x": 0.0})
