"""The error machinery the scripted teacher relies on: slips, misreadings, 'clearly wrong'."""

from __future__ import annotations

import random

import pytest

from vlmcot.world.common import (
    StepFamily,
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


def test_total_writes_one_addition_or_running_steps():
    forms = set()
    for seed in range(40):
        t = Trace()
        r, written = t.total([3, 4, 5, 6], random.Random(seed))
        assert r == 18 and written == ", ".join(s.expr() for s in t.steps)
        forms.add(len(t.steps))
    assert forms == {1, 3}  # "3 + 4 + 5 + 6 = 18" or "3 + 4 = 7, 7 + 5 = 12, 12 + 6 = 18"
    rng = random.Random(0)
    before = rng.getstate()
    assert Trace().total([2, 5], rng) == (7, "2 + 5 = 7")
    assert rng.getstate() == before  # two terms: always one addition, the rng untouched


def _sum_reason(seen, trace, rng):
    """A minimal family's rationale: read the values, add them."""
    total = trace.add(*seen["values"])
    return [f"The values are {seen['values']}.", f"{trace.steps[-1].expr()}."], str(total)


def _sum_misread(facts, rng, attempt):
    seen = {**facts, "values": [facts["values"][0] + 3 + attempt, *facts["values"][1:]]}
    return seen, {"target": 0}


SUMS = StepFamily(_sum_reason, _sum_misread, "relaxed_accuracy", frozenset({"sum"}))


def test_step_family_solves_and_names_its_error_kinds():
    facts = {"op": "sum", "values": [3, 4]}
    assert SUMS.solve(facts) == "7"
    assert SUMS.error_kinds(facts) == ["misread", "slip"]
    assert SUMS.error_kinds({"op": "read", "values": [3]}) == ["misread"]  # no arithmetic to slip on
    faithful = SUMS.explain(facts, random.Random(0))
    assert (faithful.answer, faithful.error) == ("7", None)


def test_step_family_injects_errors_that_change_the_answer():
    facts = {"op": "sum", "values": [3, 4]}
    for seed in range(20):
        e = SUMS.explain(facts, random.Random(seed), "slip")
        assert e.error == "slip" and e.answer != "7" and e.detail["step"] == 0 and e.detail["true"] == 7
        m = SUMS.explain(facts, random.Random(seed), "misread")
        assert m.error == "misread" and clearly_different(m.answer, "7", "relaxed_accuracy")
    with pytest.raises(ValueError, match="no arithmetic step"):
        StepFamily(lambda s, t, r: ([], "x"), _sum_misread, "anls", frozenset()).explain(facts, random.Random(0), "slip")
    with pytest.raises(ValueError, match="unknown error kind"):
        SUMS.explain(facts, random.Random(0), "typo")


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
