"""Confidence intervals over questions: percentile bootstrap, plain and paired, seeded.

Why the bootstrap (not Wilson): scores are not always 0/1 (ANLS, partial credit), the paper's "avg" is
a macro average over datasets, and a claim compares two models on the *same* questions. Resampling
questions covers all three with one rule:

- a dataset's accuracy: resample its questions with replacement, the interval is the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of the resampled means;
- a macro average over datasets (strata): resample each dataset's questions on its own (its size is
  fixed by the eval split), average the per-dataset means;
- a paired difference (arm A - arm B on the same questions): resample question ids once and score both
  arms on that resample, i.e. resample the per-question differences. The questions' shared difficulty
  cancels, which makes the interval much narrower than two independent intervals would suggest.

Deterministic: the generator is ``numpy.random.default_rng(seed)``; the same inputs and seed give the
same interval on every machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import Field

from vlmcot.config import StrictModel


class BootstrapConfig(StrictModel):
    # resamples of the questions (2000 puts the 95% percentile interval's own noise well under 1 point)
    n_boot: int = Field(2000, ge=100)
    # seeds numpy's generator: the same predictions give the same interval
    seed: int = 0
    # coverage of the interval (0.95: the 2.5th and 97.5th percentiles)
    level: float = Field(0.95, gt=0, lt=1)


def _strata_means(groups: Sequence[np.ndarray], cfg: BootstrapConfig) -> np.ndarray:
    """(n_boot,) macro means: each group resampled on its own, then the groups' means averaged."""
    rng = np.random.default_rng(cfg.seed)
    total = np.zeros(cfg.n_boot)
    for g in groups:
        idx = rng.integers(0, len(g), size=(cfg.n_boot, len(g)))
        total += g[idx].mean(axis=1)
    return total / len(groups)


def _interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _groups(values: Sequence[Sequence[float]] | Sequence[float]) -> list[np.ndarray]:
    if len(values) and not isinstance(values[0], (Sequence, np.ndarray)):
        values = [values]
    groups = [np.asarray(v, dtype=np.float64) for v in values]
    if not groups or any(g.ndim != 1 or g.size == 0 for g in groups):
        raise ValueError("bootstrap needs at least one non-empty group of per-question scores")
    return groups


def mean_ci(values: Sequence[Sequence[float]] | Sequence[float], cfg: BootstrapConfig) -> tuple[float, float, float]:
    """(mean, ci_low, ci_high) of per-question scores; a list of lists is strata (macro average)."""
    groups = _groups(values)
    point = float(np.mean([g.mean() for g in groups]))
    return (point, *_interval(_strata_means(groups, cfg), cfg.level))


def paired_diff_ci(a: Mapping[str, float], b: Mapping[str, float], cfg: BootstrapConfig,
                   strata: Mapping[str, str] | None = None) -> dict[str, float]:
    """Arm A - arm B over the questions both arms answered, with a paired bootstrap interval.

    ``a`` and ``b`` map question id -> score; ``strata`` maps question id -> stratum (dataset), and
    then the estimate is the macro average over strata of the per-stratum mean difference (each stratum
    resampled on its own); without it, the plain mean over questions. Returns delta, ci_low, ci_high,
    acc_a, acc_b (on the shared questions, the same averaging) and n (shared questions).
    """
    ids = sorted(a.keys() & b.keys())
    if not ids:
        raise ValueError("the two arms share no question")
    by: dict[str, list[str]] = {}
    for q in ids:
        by.setdefault(strata[q] if strata is not None else "", []).append(q)
    keys = sorted(by)
    da = [np.array([a[q] for q in by[k]], dtype=np.float64) for k in keys]
    db = [np.array([b[q] for q in by[k]], dtype=np.float64) for k in keys]
    diffs = [x - y for x, y in zip(da, db, strict=True)]  # the same resample for both arms
    delta, lo, hi = mean_ci(diffs, cfg)
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "acc_a": float(np.mean([x.mean() for x in da])),
            "acc_b": float(np.mean([y.mean() for y in db])), "n": len(ids)}


# The verdict rule, on the 95% interval of a delta (A - B, where the paper claims A > B):
#   supported     : ci_low > 0   (the interval excludes 0 on the claimed side)
#   contradicted  : ci_high < 0  (the interval excludes 0 on the other side)
#   inconclusive  : the interval contains 0 (whatever the sign of the point estimate)
#   not measured  : an input is missing (a model not evaluated, no rerank file)
VERDICTS = ("supported", "contradicted", "inconclusive", "not measured")


def verdict(ci_low: float | None, ci_high: float | None) -> str:
    if ci_low is None or ci_high is None:
        return "not measured"
    if ci_low > 0:
        return "supported"
    if ci_high < 0:
        return "contradicted"
    return "inconclusive"
