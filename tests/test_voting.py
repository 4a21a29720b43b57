import math
import random

import numpy as np
import pytest

from vlmcot.voting import (
    Question,
    best_of_n,
    curve_rows,
    default_ns,
    majority_vote,
    rerank_curves,
    sequence_reward,
    vote_weights,
    weighted_vote,
)


# rerank_curves takes its settings from the rerank section: these are params.yaml's
RERANK = dict(n_subsets=16, seed=0, weighting="softmax", temperature=1.0)

def test_sequence_reward_by_hand():
    # diffs: (-1 - -2) + (-2 - -2.5) = 1 + 0.5 = 1.5; beta 0.1 -> 0.15
    assert sequence_reward([-1.0, -2.0], [-2.0, -2.5], beta=0.1) == pytest.approx(0.15)
    # mask keeps only the second token: 0.5 * 0.2 = 0.1
    assert sequence_reward([-1.0, -2.0], [-2.0, -2.5], beta=0.2, mask=[False, True]) == pytest.approx(0.1)
    assert sequence_reward(np.array([-0.5]), np.array([-0.5]), 0.1) == 0.0


def test_sequence_reward_rejects_bad_input():
    with pytest.raises(ValueError, match="same length"):
        sequence_reward([-1.0, -2.0], [-1.0], 0.1)
    with pytest.raises(ValueError, match="nan"):
        sequence_reward([-1.0, float("nan")], [-1.0, -1.0], 0.1)


def test_majority_vote_normalises_and_ignores_missing():
    assert majority_vote(["4", "5", "4 ", "5", " 4."]) == "4"
    assert majority_vote([None, None, "x"]) == "x"
    assert majority_vote([None, None]) is None
    assert majority_vote(["Dog", "dog", "cat"]) == "Dog"  # first spelling of the winning group


def test_majority_vote_ties():
    assert majority_vote(["b", "a", "a", "b"]) == "b"  # first occurrence
    picks = {majority_vote(["b", "a", "a", "b"], rng=random.Random(s)) for s in range(30)}
    assert picks == {"a", "b"}
    assert majority_vote(["b", "a"], rng=random.Random(5)) == majority_vote(["b", "a"], rng=random.Random(5))


def test_best_of_n_skips_unanswered_and_breaks_ties_early():
    assert best_of_n(["a", "b", None, "c"], [0.1, 0.5, 0.9, 0.2]) == "b"
    assert best_of_n(["a", "b"], [0.3, 0.3]) == "a"
    assert best_of_n([None], [1.0]) is None
    with pytest.raises(ValueError, match="rewards"):
        best_of_n(["a", "b"], [0.1])


def test_weighted_vote_softmax_by_hand():
    # weights e^0, e^0, e^ln3 = 1, 1, 3: 'b' has 3/5 > 2/5
    assert weighted_vote(["a", "a", "b"], [0.0, 0.0, math.log(3)]) == "b"
    # at temperature 2: e^(ln3/2) = sqrt(3) ~ 1.73 < 2, so 'a' wins
    assert weighted_vote(["a", "a", "b"], [0.0, 0.0, math.log(3)], temperature=2.0) == "a"


def test_weighted_vote_raw_and_rank_differ_from_softmax():
    answers, rewards = ["a", "a", "b"], [1.0, 1.0, 1.5]
    assert weighted_vote(answers, rewards, "raw") == "a"  # 2.0 vs 1.5
    assert weighted_vote(answers, rewards, "softmax", temperature=0.1) == "b"  # 2e^-5 vs 1
    assert weighted_vote(answers, rewards, "rank") == "a"  # ranks 1.5 + 1.5 vs 3: tie, first occurrence
    assert weighted_vote(["a", "b", "a"], [0.1, 0.3, 0.2], "rank") == "a"  # 1 + 2 vs 3: tie -> first
    assert weighted_vote(["a", "b", "a"], [0.2, 0.1, 0.3], "rank") == "a"  # 2 + 3 vs 1
    assert weighted_vote([None, "x"], [5.0, -1.0]) == "x"
    assert weighted_vote([None], [5.0]) is None


def test_vote_weights():
    assert vote_weights([1.0, 1.0, 2.0], "rank").tolist() == [1.5, 1.5, 3.0]
    w = vote_weights([0.0, math.log(3)], "softmax")
    assert w.tolist() == pytest.approx([0.25, 0.75])
    assert vote_weights([1000.0, 1000.0], "softmax").tolist() == pytest.approx([0.5, 0.5])  # no overflow
    assert vote_weights([-1.0, 2.0], "raw").tolist() == [-1.0, 2.0]
    with pytest.raises(ValueError, match="weighting"):
        vote_weights([1.0], "median")


def test_default_ns():
    assert default_ns(64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_ns(6) == [1, 2, 4, 6]
    assert default_ns(1) == [1]


def _questions():
    # q1: majority picks the wrong '2', the reward points at the right '1'
    q1 = Question("q1", ["1", "2", "2", "3"], [2.0, 0.0, 0.0, 0.0], lambda a: a == "1")
    # q2: every candidate right
    q2 = Question("q2", ["7", "7", "7", "7"], [0.0, 0.1, 0.2, 0.3], lambda a: a == "7")
    return [q1, q2]


def test_curves_at_full_n_by_hand():
    curves = rerank_curves(_questions(), ns=[4], **RERANK)
    assert curves["majority"][4] == 0.5
    assert curves["best_of_n"][4] == 1.0
    assert curves["weighted"][4] == 1.0  # e^2 = 7.4 for '1' vs 2 for '2'
    assert curves["oracle"][4] == 1.0


def test_curves_at_n1_all_methods_agree_and_order_is_irrelevant():
    qs = _questions()
    curves = rerank_curves(qs, ns=[1, 2], **{**RERANK, "n_subsets": 32, "seed": 7})
    at1 = {m: c[1] for m, c in curves.items()}
    assert len(set(at1.values())) == 1  # one candidate: every method returns it
    assert 0.5 < at1["majority"] < 1.0  # q2 always right, q1 right only when candidate 0 is drawn
    again = rerank_curves(list(reversed(qs)), ns=[1, 2], **{**RERANK, "n_subsets": 32, "seed": 7})
    assert {m: pytest.approx(c) for m, c in curves.items()} == again
    # oracle is an upper bound at every N
    for m in ("majority", "best_of_n", "weighted"):
        assert all(curves[m][n] <= curves["oracle"][n] + 1e-12 for n in (1, 2))


def test_curves_judge_each_answer_once():
    calls = []
    q = Question("q", ["x", "y", "x", "y", "z"], [0.0] * 5, lambda a: calls.append(a) or a == "x")
    rerank_curves([q], **{**RERANK, "n_subsets": 8})
    assert sorted(calls) == ["x", "y", "z"]


def test_curves_reject_n_beyond_candidates():
    with pytest.raises(ValueError, match="q1"):
        rerank_curves(_questions()[:1], ns=[8], **RERANK)
    with pytest.raises(ValueError, match="methods"):
        rerank_curves(_questions(), methods=["vote"], **RERANK)


def test_curve_rows():
    rows = curve_rows({"majority": {2: 0.5, 1: 0.25}})
    assert rows == [{"n": 1, "method": "majority", "accuracy": 0.25}, {"n": 2, "method": "majority", "accuracy": 0.5}]
