"""Stage `credit`: which pairs get drawn (one per question, round-robin over datasets, shortest first)."""

from vlmcot.pipeline.credit import pick_pairs


def _p(pid, ds, n):
    return {"id": pid, "dataset": ds, "chosen": "x" * n, "rejected": "y"}


def test_pick_pairs():
    pairs = [_p("a1-p0", "A", 5), _p("a1-p1", "A", 1), _p("a2-p0", "A", 3), _p("b1-p0", "B", 9)]
    got = [p["id"] for p in pick_pairs(pairs, 3, None)]
    assert got == ["a1-p1", "b1-p0", "a2-p0"]
    assert [p["id"] for p in pick_pairs(pairs, 5, ["B"])] == ["b1-p0"]
