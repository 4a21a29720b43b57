"""Bootstrap intervals over questions: coverage of known effects, pairing, strata, determinism, verdicts."""

import numpy as np
import pytest

from vlmcot.stats import BootstrapConfig, mean_ci, paired_diff_ci, verdict

CFG = BootstrapConfig(n_boot=2000, seed=0)


def test_mean_ci_brackets_the_mean_and_is_deterministic():
    x = [1.0] * 30 + [0.0] * 70
    m, lo, hi = mean_ci(x, CFG)
    assert m == pytest.approx(0.3) and lo < 0.3 < hi
    # binomial standard error sqrt(.3 * .7 / 100) = 0.046: the 95% interval is about +-0.09
    assert 0.07 < 0.3 - lo < 0.11 and 0.07 < hi - 0.3 < 0.11
    assert mean_ci(x, CFG) == (m, lo, hi)  # same seed, same interval
    partial = list(np.random.default_rng(0).random(100))  # partial credit (ANLS): the seed is what varies
    assert mean_ci(partial, CFG) == mean_ci(partial, CFG) != mean_ci(partial, BootstrapConfig(seed=1))


def test_constant_scores_give_a_point_interval():
    assert mean_ci([0.0] * 50, CFG) == (0.0, 0.0, 0.0)


def test_strata_are_a_macro_average_resampled_within_each_stratum():
    small, big = [1.0] * 10, [0.0] * 1000  # the macro mean is 0.5 whatever the sizes
    m, lo, hi = mean_ci([small, big], CFG)
    assert m == pytest.approx(0.5) and lo == hi == pytest.approx(0.5)  # no stratum varies: no width


def test_a_known_effect_gives_an_interval_excluding_zero():
    rng = np.random.default_rng(42)
    ids = [f"q{i}" for i in range(300)]
    b = {q: float(v) for q, v in zip(ids, rng.random(300) < 0.4, strict=True)}
    a = {q: float(v) for q, v in zip(ids, rng.random(300) < 0.6, strict=True)}  # +20 points
    r = paired_diff_ci(a, b, CFG)
    assert r["n"] == 300 and r["ci_low"] > 0.05 and r["ci_low"] < r["delta"] < r["ci_high"]
    assert r["delta"] == pytest.approx(r["acc_a"] - r["acc_b"])
    assert verdict(r["ci_low"], r["ci_high"]) == "supported"
    assert verdict(*[-x for x in (r["ci_high"], r["ci_low"])]) == "contradicted"


def test_identical_arms_give_zero_and_inconclusive():
    a = {f"q{i}": float(i % 3 == 0) for i in range(100)}
    r = paired_diff_ci(a, dict(a), CFG)
    assert (r["delta"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0)
    assert verdict(r["ci_low"], r["ci_high"]) == "inconclusive"


def test_pairing_resamples_the_same_questions_for_both_arms():
    """Questions differ a lot in difficulty and arm A gets 10 more of them right than B. Independent
    intervals of the two arms overlap widely; the paired interval of the difference excludes 0, which is
    only possible if each resample scores both arms on the same questions."""
    ids = [f"q{i}" for i in range(200)]
    b = {q: float(i < 100) for i, q in enumerate(ids)}  # easy half right
    a = {q: float(i < 110) for i, q in enumerate(ids)}  # the same, plus 10 harder questions
    r = paired_diff_ci(a, b, CFG)
    assert r["delta"] == pytest.approx(0.05) and r["ci_low"] > 0
    _, lo_a, hi_a = mean_ci(list(a.values()), CFG)
    _, lo_b, hi_b = mean_ci(list(b.values()), CFG)
    unpaired_half_width = ((hi_a - lo_a) ** 2 + (hi_b - lo_b) ** 2) ** 0.5 / 2  # independent arms
    assert unpaired_half_width > 0.09 and (r["ci_high"] - r["ci_low"]) / 2 < 0.045
    assert hi_b > lo_a  # the arms' own intervals overlap


def test_paired_uses_shared_questions_only_and_strata():
    a = {"x1": 1.0, "x2": 1.0, "y1": 0.0, "extra": 1.0}
    b = {"x1": 0.0, "x2": 1.0, "y1": 0.0}
    r = paired_diff_ci(a, b, CFG, strata={"x1": "x", "x2": "x", "y1": "y", "extra": "x"})
    assert r["n"] == 3
    assert r["delta"] == pytest.approx((0.5 + 0.0) / 2)  # macro over datasets x and y
    with pytest.raises(ValueError, match="share no question"):
        paired_diff_ci({"a": 1.0}, {"b": 1.0}, CFG)


def test_verdict_rule():
    assert verdict(0.1, 3.0) == "supported"
    assert verdict(-3.0, -0.1) == "contradicted"
    assert verdict(0.0, 2.0) == "inconclusive"  # an interval touching 0 does not exclude it
    assert verdict(-1.0, 1.0) == "inconclusive"
    assert verdict(None, None) == "not measured"
