"""A trained model as a verifier: rerank sampled candidates (paper section 5.2, Figures 6 and 7).

A candidate y's reward is the implicit reward of a KL-regularised policy against its reference (the
paper's: the DPO model against the SFT model; a GRPO model against its KL reference reads the same way),

    r(y) = beta * sum_t ( log pi_dpo(y_t | x, V, y_<t) - log pi_sft(y_t | x, V, y_<t) ),

summed over response tokens. Three ways to pick one answer from N candidates:

- self-consistency (the baseline): majority vote over extracted answers;
- best-of-N: the answer of the highest-reward candidate;
- weighted voting: sum per distinct answer of a weight per candidate (softmax of rewards with a
  temperature, rank-based, or the raw rewards).

Rules shared by all methods, so they compare fairly:
- answers are grouped by ``key(answer)`` (normalisation); the answer returned is the first original
  spelling of the winning group, and correctness is decided per question by ``is_correct(answer)``
  (the dataset's metric), never by string equality here;
- a candidate without an extracted answer (None) takes no part; if no candidate has one, the prediction
  is None, which counts as wrong;
- ties go to the answer that occurs first in candidate order (sample index order), unless a seeded
  ``random.Random`` is passed to :func:`majority_vote`, which then picks among the tied answers.

:func:`rerank_curves` draws, for N = 1, 2, 4, ..., several random subsets of size N of each question's
candidates (``n_subsets``, default 16; one when N is all of them), applies every method to the *same*
subsets, and averages accuracy over subsets and then over questions. Subsets are seeded per (seed,
question, N), so a question's numbers do not depend on which other questions are present.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Weighting = str  # "softmax" | "rank" | "raw"
WEIGHTINGS = ("softmax", "rank", "raw")
METHODS = ("majority", "best_of_n", "weighted", "oracle")
# the methods that read the rewards (majority voting and the oracle do not: one verifier's run gives them all)
REWARD_METHODS = ("best_of_n", "weighted")


def normalize_answer(answer: str) -> str:
    """Default grouping key: case-folded, whitespace collapsed, one trailing period dropped.

    Pass the dataset metric's own normalisation as ``key`` where it has one.
    """
    s = " ".join(answer.split()).casefold()
    return s[:-1].rstrip() if s.endswith(".") else s


def sequence_reward(
    logp_policy: Sequence[float] | np.ndarray,
    logp_ref: Sequence[float] | np.ndarray,
    beta: float,
    mask: Sequence[bool] | np.ndarray | None = None,
) -> float:
    """beta * sum over response tokens of (log pi_dpo - log pi_sft); ``mask`` selects response tokens."""
    p = np.asarray(logp_policy, dtype=np.float64)
    r = np.asarray(logp_ref, dtype=np.float64)
    if p.shape != r.shape or p.ndim != 1:
        raise ValueError(f"per-token log-probs must be 1-D and the same length, got {p.shape} and {r.shape}")
    d = p - r
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != d.shape:
            raise ValueError(f"mask has shape {m.shape}, log-probs {d.shape}")
        d = d[m]
    if not np.all(np.isfinite(d)):
        raise ValueError("per-token log-probs contain inf or nan")
    return float(beta * d.sum())


def _groups(answers: Sequence[str | None], key: Callable[[str], str]) -> tuple[dict[str, list[int]], dict[str, str]]:
    """key -> candidate indices (first-occurrence order), and key -> first original spelling."""
    idx: dict[str, list[int]] = {}
    first: dict[str, str] = {}
    for i, a in enumerate(answers):
        if a is None:
            continue
        k = key(a)
        if k not in idx:
            idx[k], first[k] = [], a
        idx[k].append(i)
    return idx, first


def majority_vote(
    answers: Sequence[str | None],
    key: Callable[[str], str] = normalize_answer,
    rng: random.Random | None = None,
) -> str | None:
    """Self-consistency: the most frequent answer. Ties: first occurrence, or ``rng.choice`` if given."""
    idx, first = _groups(answers, key)
    if not idx:
        return None
    top = max(len(v) for v in idx.values())
    tied = [k for k, v in idx.items() if len(v) == top]  # in first-occurrence order
    winner = tied[0] if rng is None or len(tied) == 1 else rng.choice(tied)
    return first[winner]


def _check(answers: Sequence, rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (len(answers),):
        raise ValueError(f"{len(answers)} answers but rewards of shape {r.shape}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards contain inf or nan")
    return r


def best_of_n(answers: Sequence[str | None], rewards: Sequence[float] | np.ndarray) -> str | None:
    """The answer of the highest-reward candidate that has one (ties: the earliest candidate)."""
    r = _check(answers, rewards)
    best = None
    for i, a in enumerate(answers):
        if a is not None and (best is None or r[i] > r[best]):
            best = i
    return None if best is None else answers[best]


def vote_weights(rewards: Sequence[float] | np.ndarray, weighting: Weighting = "softmax",
                 temperature: float = 1.0) -> np.ndarray:
    """Per-candidate weights: softmax(r / temperature), rank (1 = lowest, ties averaged), or raw r."""
    r = np.asarray(rewards, dtype=np.float64)
    if weighting == "softmax":
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        z = (r - r.max()) / temperature if r.size else r
        e = np.exp(z)
        return e / e.sum() if r.size else e
    if weighting == "rank":
        order = np.argsort(r, kind="stable")
        ranks = np.empty(r.size, dtype=np.float64)
        ranks[order] = np.arange(1, r.size + 1)
        for v in np.unique(r):  # equal rewards share their average rank
            same = r == v
            ranks[same] = ranks[same].mean()
        return ranks
    if weighting == "raw":
        return r.copy()
    raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")


def weighted_vote(
    answers: Sequence[str | None],
    rewards: Sequence[float] | np.ndarray,
    weighting: Weighting = "softmax",
    temperature: float = 1.0,
    key: Callable[[str], str] = normalize_answer,
) -> str | None:
    """The answer with the largest summed weight; weights are computed over candidates that have an answer."""
    r = _check(answers, rewards)
    keep = [i for i, a in enumerate(answers) if a is not None]
    if not keep:
        return None
    w = vote_weights(r[keep], weighting, temperature)
    idx, first = _groups([answers[i] for i in keep], key)
    best_k, best_s = None, -math.inf
    for k, members in idx.items():  # first-occurrence order: strict '>' keeps the earliest on ties
        s = float(w[members].sum())
        if s > best_s:
            best_k, best_s = k, s
    return first[best_k]


@dataclass
class Question:
    """One question's candidates, in sample order, and the metric that judges an answer."""

    id: str
    answers: list[str | None]  # extracted answer per candidate (None: extraction failed)
    rewards: list[float]  # sequence_reward per candidate
    is_correct: Callable[[str], bool]


def _rng(seed: int, qid: str, n: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{qid}\x00{n}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def default_ns(n_max: int) -> list[int]:
    """1, 2, 4, ... up to n_max, plus n_max itself when it is not a power of two."""
    ns, n = [], 1
    while n <= n_max:
        ns.append(n)
        n *= 2
    if n_max >= 1 and ns[-1] != n_max:
        ns.append(n_max)
    return ns


def rerank_curves(
    questions: Sequence[Question],
    ns: Sequence[int] | None = None,
    *,
    n_subsets: int,
    seed: int,
    weighting: Weighting,
    temperature: float,
    key: Callable[[str], str] = normalize_answer,
    methods: Sequence[str] = METHODS,
) -> dict[str, dict[int, float]]:
    """Accuracy of each method at each N: ``{method: {N: accuracy}}``.

    ``ns`` defaults to :func:`default_ns` of the smallest candidate count, so every point averages the
    same questions; an N larger than some question's candidate count is an error naming the question.
    "oracle" is pass@N (some candidate in the subset is correct), an upper bound for any reranker.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {METHODS}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be >= 1, got {n_subsets}")
    if not questions:
        return {m: {} for m in methods}
    for q in questions:
        if len(q.answers) != len(q.rewards) or not q.answers:
            raise ValueError(f"question {q.id}: {len(q.answers)} answers, {len(q.rewards)} rewards")
    if ns is None:
        ns = default_ns(min(len(q.answers) for q in questions))
    for n in ns:
        short = next((q for q in questions if not 1 <= n <= len(q.answers)), None)
        if short is not None:
            raise ValueError(f"N={n} but question {short.id} has {len(short.answers)} candidates")

    sums = {m: {n: 0.0 for n in ns} for m in methods}
    for q in questions:
        cache: dict[str, bool] = {}

        def correct(a: str | None, q=q, cache=cache) -> bool:
            if a is None:
                return False
            if a not in cache:  # metrics (ANLS, relaxed accuracy) are not free: judge each answer once
                cache[a] = bool(q.is_correct(a))
            return cache[a]

        rewards = np.asarray(q.rewards, dtype=np.float64)
        total = len(q.answers)
        for n in ns:
            rng = _rng(seed, q.id, n)
            # sorted subsets keep sample order, so first-occurrence tie-breaking stays well defined
            if n == total:
                subsets = [list(range(total))]
            else:
                subsets = [sorted(rng.sample(range(total), n)) for _ in range(n_subsets)]
            hits = {m: 0 for m in methods}
            for sub in subsets:
                ans = [q.answers[i] for i in sub]
                rw = rewards[sub]
                for m in methods:
                    if m == "majority":
                        hits[m] += correct(majority_vote(ans, key))
                    elif m == "best_of_n":
                        hits[m] += correct(best_of_n(ans, rw))
                    elif m == "weighted":
                        hits[m] += correct(weighted_vote(ans, rw, weighting, temperature, key))
                    else:  # oracle
                        hits[m] += any(correct(a) for a in ans)
            for m in methods:
                sums[m][n] += hits[m] / len(subsets)
    return {m: {n: sums[m][n] / len(questions) for n in ns} for m in methods}


def curve_rows(curves: dict[str, dict[int, float]]) -> list[dict]:
    """Long-format rows ``{n, method, accuracy}`` for a DVC plot CSV, sorted by method then N."""
    return [{"n": n, "method": m, "accuracy": round(acc, 6)}
            for m in sorted(curves) for n, acc in sorted(curves[m].items())]
