"""Preference pairs from the SFT model's own samples (paper section 3.3).

For each question the SFT model produced N candidates, each marked correct or not against the
annotated short answer. A question is kept when its sample accuracy lies in [low, high] (the paper:
[0.25, 0.85], after Dubey et al. 2024); correct and incorrect responses are then paired at random, at
most ``max_pairs_per_question`` pairs (the paper: 3), and both sides are truncated to the first
``truncate_words`` whitespace-separated words (the paper: 90), which often cuts the '### Answer:' line.
That is the paper's choice; we keep it and report how often it happens.

The window assumes a model that knows some questions and not others. Per dataset, ``dispersion`` says
whether it does: a model that guesses (at chance on a multiple-choice set) answers every question
correctly at one rate, so its per-question correct counts spread like one binomial and its chosen
answers are right by luck; the pairs stage reports the statistic and warns at or under the 1% bound.

Pairing is seeded per question (a hash of the seed and the question id), so the pairs of a question do
not depend on the order of the input or on which other questions are present.

    pairs, stats = build_pairs(candidates, records_by_id, **cfg.model_dump(include=PAIRING_KEYS))  # cfg: the pairs Config

The settings have no defaults here: they come from the ``pairs`` params section (vlmcot.pipeline.pairs),
the one place their values are written (PAIRING_KEYS lists them there).
"""

from __future__ import annotations

import collections
import hashlib
import math
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from vlmcot.prompts import ANSWER_MARKER, build_prompt
from vlmcot.records import Candidate, PairRecord, VQARecord

# Why a question produced no pairs, in the order they are tested.
DROP_REASONS = ("no_record", "bad_prompt", "all_correct", "all_wrong", "below_low", "above_high", "no_distinct_pair")

_WORD = re.compile(r"\S+")


TRUNCATE_UNITS = ("whitespace", "space")


def first_words(text: str, n: int | None, unit: str = "whitespace") -> str:
    """The first ``n`` words of ``text``, with the original separators between them.

    ``unit="whitespace"``: words are runs of non-whitespace (``\\S+``); newlines inside the kept prefix
    survive (the answer marker sits on its own line); whitespace after the n-th word is dropped.
    ``unit="space"``: the authors' run_dpo.py, ``' '.join(text.split(' ')[:n])``: only single spaces
    separate words, so "3\\n\\n### Answer:" is one word and two spaces make an empty one.
    ``n=None`` or a text of at most ``n`` words returns ``text`` unchanged.
    """
    if unit not in TRUNCATE_UNITS:
        raise ValueError(f"truncate unit must be one of {TRUNCATE_UNITS}, got {unit!r}")
    if n is None:
        return text
    if n < 1:
        raise ValueError(f"truncate_words must be >= 1 or None, got {n}")
    if unit == "space":
        return " ".join(text.split(" ")[:n])
    end = None
    for i, m in enumerate(_WORD.finditer(text)):
        if i == n - 1:
            end = m.end()
        elif i == n:  # a word beyond the n-th exists: cut after the n-th
            return text[:end]
    return text


def question_rng(seed: int, qid: str) -> random.Random:
    """A generator private to one question, stable across runs, platforms and input order."""
    digest = hashlib.sha256(f"{seed}\x00{qid}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def drop_reason(n_correct: int, n: int, low: float, high: float) -> str | None:
    """Why a question with ``n_correct`` of ``n`` correct samples gets no pairs (None: keep it)."""
    if n_correct == n:
        return "all_correct"
    if n_correct == 0:
        return "all_wrong"
    acc = n_correct / n
    # a tiny tolerance so that e.g. 8/32 counts as 0.25 despite float rounding
    if acc < low - 1e-12:
        return "below_low"
    if acc > high + 1e-12:
        return "above_high"
    return None


@dataclass
class _Resp:
    text: str  # truncated text: what the pair will hold
    sample: int  # sample index of the first candidate that produced it
    truncated: bool
    answer_cut: bool  # the marker was in the full text and is not in the truncated one


def _unique_responses(cands: list[Candidate], rng: random.Random, n_words: int | None,
                      unit: str = "whitespace") -> list[_Resp]:
    """Shuffle the samples, then keep the first occurrence of each (truncated) text.

    Shuffling samples before deduplication makes a text that the model produced k times k times as
    likely to come early, i.e. the pairing stays uniform over *samples*, as the paper's is.
    """
    order = list(cands)
    rng.shuffle(order)
    seen: set[str] = set()
    out: list[_Resp] = []
    for c in order:
        t = first_words(c.text, n_words, unit)
        if t in seen:
            continue
        seen.add(t)
        out.append(_Resp(t, c.sample, t != c.text, ANSWER_MARKER in c.text and ANSWER_MARKER not in t))
    return out


def select_pairs(chosen: list[str], rejected: list[str], k: int) -> list[tuple[int, int]]:
    """Up to ``k`` (chosen index, rejected index) pairs, never the same pair twice, never equal texts.

    Greedy: each step takes the pair whose two texts have been used least so far, ties going to the
    earliest pair in (chosen, rejected) order. So with enough distinct texts every pair uses fresh
    ones, and texts repeat only when they must. Callers randomise by shuffling the inputs.
    """
    combos = [(i, j) for i in range(len(chosen)) for j in range(len(rejected)) if chosen[i] != rejected[j]]
    used_c: collections.Counter[int] = collections.Counter()
    used_r: collections.Counter[int] = collections.Counter()
    picked: list[tuple[int, int]] = []
    taken: set[tuple[int, int]] = set()
    while len(picked) < k:
        best, best_cost = None, None
        for ij in combos:
            if ij in taken:
                continue
            cost = used_c[ij[0]] + used_r[ij[1]]
            if best_cost is None or cost < best_cost:
                best, best_cost = ij, cost
                if cost == 0:
                    break
        if best is None:
            break
        picked.append(best)
        taken.add(best)
        used_c[best[0]] += 1
        used_r[best[1]] += 1
    return picked


def dispersion(outcomes: list[tuple[int, int]]) -> float | None:
    """Pearson dispersion of per-question correct counts: sum_i (k_i - n_i p)^2 / (n_i p (1 - p)) / (Q - 1),
    p the pooled sample accuracy, for ``outcomes`` = [(k_i correct, n_i samples)] of Q questions.

    About 1 when every question is answered correctly at the same rate, which is what guessing gives
    (a model at chance on a multiple-choice set): a correct sample then says nothing about the question
    and a pair's chosen side is right by luck. Well above 1 when the model knows some questions and not
    others, the case the paper's accuracy window selects from. None with fewer than 2 questions, or when
    no sample (or every sample) is correct."""
    total_k = sum(k for k, _ in outcomes)
    total_n = sum(n for _, n in outcomes)
    if len(outcomes) < 2 or total_n == 0 or total_k in (0, total_n):
        return None
    p = total_k / total_n
    chi2 = sum((k - n * p) ** 2 / (n * p * (1 - p)) for k, n in outcomes if n)
    return chi2 / (len(outcomes) - 1)


def guessing_bound(questions: int, z: float = 2.326) -> float:
    """The dispersion that one common rate exceeds with probability ~1% (z = 2.326) over ``questions``
    questions: the chi-square(Q - 1) quantile (Wilson-Hilferty) over Q - 1. At or below it, the counts
    are consistent with guessing."""
    v = max(1, questions - 1)
    return (1 - 2 / (9 * v) + z * math.sqrt(2 / (9 * v))) ** 3


@dataclass
class DatasetStats:
    questions: int = 0  # questions with at least one candidate
    kept: int = 0  # questions that produced at least one pair
    pairs: int = 0
    candidates: int = 0
    extract_failed: int = 0  # candidates with no extracted answer
    dropped: collections.Counter = field(default_factory=collections.Counter)
    outcomes: list[tuple[int, int]] = field(default_factory=list)  # (correct, samples) per question that had a record
    chance: list[float] = field(default_factory=list)  # 1 / options, per multiple-choice question
    kept_accuracies: list[float] = field(default_factory=list)
    responses_truncated: int = 0  # pair sides shortened by truncation
    answer_cut: int = 0  # pair sides whose '### Answer:' line truncation removed
    identical_after_truncation: int = 0  # correct/incorrect texts that truncation made equal

    @property
    def accuracies(self) -> list[float]:
        """Sample accuracy of each question that had a record."""
        return [k / n for k, n in self.outcomes]


@dataclass
class PairStats:
    """Counts for metrics/pairs.json and the accuracy histogram plot."""

    by_dataset: dict[str, DatasetStats] = field(default_factory=lambda: collections.defaultdict(DatasetStats))
    duplicate_candidates: int = 0  # (question, sample) seen more than once; the first in sort order kept
    sample_counts: collections.Counter = field(default_factory=collections.Counter)  # N -> questions
    errors: list[str] = field(default_factory=list)  # one line per problem, naming the question id

    def total(self) -> DatasetStats:
        t = DatasetStats()
        for s in self.by_dataset.values():
            for name in ("questions", "kept", "pairs", "candidates", "extract_failed", "responses_truncated",
                         "answer_cut", "identical_after_truncation"):
                setattr(t, name, getattr(t, name) + getattr(s, name))
            t.dropped.update(s.dropped)
            t.outcomes.extend(s.outcomes)
            t.kept_accuracies.extend(s.kept_accuracies)
        return t

    def to_metrics(self) -> dict[str, float]:
        """Flat keys ``<dataset>.<name>`` plus ``all.<name>``, e.g. ``chartqa.pairs``, ``all.dropped.all_correct``."""
        out: dict[str, float] = {}
        groups = {**{ds: self.by_dataset[ds] for ds in sorted(self.by_dataset)}, "all": self.total()}
        for ds, s in groups.items():
            out[f"{ds}.questions"] = s.questions
            out[f"{ds}.kept"] = s.kept
            out[f"{ds}.pairs"] = s.pairs
            out[f"{ds}.candidates"] = s.candidates
            out[f"{ds}.kept_rate"] = round(s.kept / s.questions, 4) if s.questions else 0.0
            out[f"{ds}.mean_accuracy"] = round(sum(s.accuracies) / len(s.accuracies), 4) if s.accuracies else 0.0
            if ds != "all":  # one common rate across datasets is not a hypothesis worth a number
                phi = dispersion(s.outcomes)
                if phi is not None:
                    out[f"{ds}.dispersion"] = round(phi, 3)
                    out[f"{ds}.dispersion_guess_bound"] = round(guessing_bound(len(s.outcomes)), 3)
                if s.chance and len(s.chance) == len(s.outcomes):
                    out[f"{ds}.chance_accuracy"] = round(sum(s.chance) / len(s.chance), 4)
            out[f"{ds}.extract_fail_rate"] = round(s.extract_failed / s.candidates, 4) if s.candidates else 0.0
            sides = 2 * s.pairs
            out[f"{ds}.truncated_rate"] = round(s.responses_truncated / sides, 4) if sides else 0.0
            out[f"{ds}.answer_cut_rate"] = round(s.answer_cut / sides, 4) if sides else 0.0
            out[f"{ds}.identical_after_truncation"] = s.identical_after_truncation
            for r in DROP_REASONS:
                out[f"{ds}.dropped.{r}"] = s.dropped[r]
        out["all.duplicate_candidates"] = self.duplicate_candidates
        return out

    def histogram_bins(self) -> int:
        """N of the 1/N bins: the most common number of samples per question (ties: the larger)."""
        if not self.sample_counts:
            return 1
        return max(self.sample_counts.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def histogram(self, n_bins: int | None = None) -> list[dict]:
        """Rows ``{accuracy, questions, kept}`` for accuracy = k/N, k = 0..N (all datasets together).

        A question with a different sample count falls in the bin of floor(accuracy * N).
        """
        n = n_bins or self.histogram_bins()
        t = self.total()

        def counts(accs: list[float]) -> list[int]:
            c = [0] * (n + 1)
            for a in accs:
                c[min(n, int(a * n + 1e-9))] += 1
            return c

        q, k = counts(t.accuracies), counts(t.kept_accuracies)
        return [{"accuracy": round(i / n, 6), "questions": q[i], "kept": k[i]} for i in range(n + 1)]


def build_pairs(
    candidates: Iterable[Candidate],
    records: Mapping[str, VQARecord],
    *,
    low: float,
    high: float,
    max_pairs_per_question: int,
    truncate_words: int | None,
    truncate_unit: str,
    seed: int,
    prompt_style: str,
    prompt_fn: Callable[[VQARecord], str] | None = None,
) -> tuple[list[PairRecord], PairStats]:
    """Pair correct with incorrect candidates of each question; return (pairs sorted by id, stats).

    Every setting is required (the ``pairs`` params section's keys of the same names).

    ``Candidate.id`` is the question id (the VQA record's id) and ``Candidate.sample`` the sample index.
    The pair's prompt is ``build_prompt(record, "cot", prompt_style)``, the CoT prompt the candidates
    were sampled with (``prompt_fn(record)`` replaces it, e.g. in tests).
    A question without a record, or whose prompt cannot be built, is counted and skipped, never fatal.
    """
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"need 0 <= low <= high <= 1, got low={low}, high={high}")
    if max_pairs_per_question < 1:
        raise ValueError(f"max_pairs_per_question must be >= 1, got {max_pairs_per_question}")
    first_words("", truncate_words, truncate_unit)  # validates both before any work

    by_q: dict[str, list[Candidate]] = collections.defaultdict(list)
    for c in candidates:
        by_q[c.id].append(c)

    stats = PairStats()
    pairs: list[PairRecord] = []
    get_prompt = prompt_fn or (lambda rec: build_prompt(rec, "cot", prompt_style))
    for qid in sorted(by_q):
        # sort, then drop repeated sample indices, so that input order never matters
        cands_sorted = sorted(by_q[qid], key=lambda c: (c.sample, c.text, c.correct, c.extracted or ""))
        cands: list[Candidate] = []
        for c in cands_sorted:
            if cands and cands[-1].sample == c.sample:
                stats.duplicate_candidates += 1
                continue
            cands.append(c)
        rec = records.get(qid)
        ds = rec.dataset if rec is not None else cands[0].dataset
        s = stats.by_dataset[ds]
        s.questions += 1
        s.candidates += len(cands)
        s.extract_failed += sum(c.extracted is None for c in cands)
        if rec is None:
            s.dropped["no_record"] += 1
            stats.errors.append(f"question {qid}: candidates but no VQA record")
            continue
        n_correct = sum(c.correct for c in cands)
        acc = n_correct / len(cands)
        s.outcomes.append((n_correct, len(cands)))
        if rec.choices:
            s.chance.append(1 / len(rec.choices))
        stats.sample_counts[len(cands)] += 1
        reason = drop_reason(n_correct, len(cands), low, high)
        if reason:
            s.dropped[reason] += 1
            continue

        rng = question_rng(seed, qid)
        good = _unique_responses([c for c in cands if c.correct], rng, truncate_words, truncate_unit)
        bad = _unique_responses([c for c in cands if not c.correct], rng, truncate_words, truncate_unit)
        bad_texts = {b.text for b in bad}
        s.identical_after_truncation += sum(g.text in bad_texts for g in good)
        picked = select_pairs([g.text for g in good], [b.text for b in bad], max_pairs_per_question)
        if not picked:
            s.dropped["no_distinct_pair"] += 1
            continue
        try:
            prompt = get_prompt(rec)
        except Exception as e:  # one bad record never kills the run
            s.dropped["bad_prompt"] += 1
            stats.errors.append(f"question {qid}: cannot build prompt: {type(e).__name__}: {e}")
            continue
        s.kept += 1
        s.kept_accuracies.append(acc)
        for k, (i, j) in enumerate(picked):
            g, b = good[i], bad[j]
            s.pairs += 1
            s.responses_truncated += g.truncated + b.truncated
            s.answer_cut += g.answer_cut + b.answer_cut
            pairs.append(PairRecord(
                id=f"{qid}-p{k}", image=rec.image, prompt=prompt, chosen=g.text, rejected=b.text,
                answer=rec.answer, dataset=rec.dataset, question=rec.question,
                meta={"accuracy": round(acc, 6), "n_samples": len(cands),
                      "chosen_sample": g.sample, "rejected_sample": b.sample},
            ))
    pairs.sort(key=lambda p: p.id)
    return pairs, stats
