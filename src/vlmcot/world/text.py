"""Plain text the world can generate without any QA format: the embedded base model's language pretraining.

A pretrained VLM arrives with a language model that already adds, compares and knows what eats what;
the tiny embedded LLaVA's language model starts from random weights. Before it learns to see (the base
stage), it reads this corpus: arithmetic facts in the ranges the world's questions need, comparisons of
number lists, lists of labelled values with their largest / smallest, and food-chain statements over the
sci family's organisms. No question, no prompt, no ``### Answer:`` and no image ever appears here: those
are what SFT teaches, so the format-only / direct-only / CoT-only comparison stays a comparison of SFT
data, not of pretraining.

Every document is a few sentences drawn by :func:`document` from one ``random.Random``; the corpus is a
pure function of the seed (same seed, same text).
"""

from __future__ import annotations

import random

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.world.chart import LABELS
from vlmcot.world.doc import ITEMS
from vlmcot.world.sci import HABITATS

KINDS = ("add", "add3", "sub", "mul", "compare", "labelled", "chain")


class TextCorpusConfig(StrictModel):
    """params.yaml ``base.text_pretrain.corpus``: what the language pretraining text covers."""

    # largest first addend of a two-term sum (running totals of up to 6 bars of at most 9 reach 54)
    max_addend: int = Field(60, ge=1)
    # largest term of the small operands (bar values, prices, sides: the world draws 1..9)
    max_digit: int = Field(9, ge=1)
    # relative weight of each kind of document (KINDS); unlisted kinds get 0
    kinds: dict[str, float] = Field(default_factory=lambda: {k: 0.5 if k in ("add3", "compare") else 1.0 for k in KINDS})
    # sentences per document
    sentences: int = Field(4, ge=1)


def _join(xs: list[str]) -> str:
    return xs[0] if len(xs) == 1 else ", ".join(xs[:-1]) + " and " + xs[-1]


def _organisms_chain(rng: random.Random) -> list[str]:
    levels = rng.choice(list(HABITATS.values()))
    n = rng.randint(3, len(levels))
    return [rng.choice(levels[i]) for i in range(n)]


def sentence(kind: str, rng: random.Random, cfg: TextCorpusConfig) -> str:
    d = cfg.max_digit
    if kind == "add":
        a = rng.randint(0, cfg.max_addend) if rng.random() < 0.5 else rng.randint(0, d)
        b = rng.randint(0, d)
        a, b = (b, a) if rng.random() < 0.3 else (a, b)
        return f"{a} + {b} = {a + b}."
    if kind == "add3":
        xs = [rng.randint(1, d) for _ in range(3)]
        if rng.random() < 0.5:  # a rectangle's perimeter: 2 x (w + h)
            w, h = xs[:2]
            return f"2 × ({w} + {h}): {w} + {h} = {w + h}, 2 × {w + h} = {2 * (w + h)}."
        return f"{xs[0]} + {xs[1]} + {xs[2]} = {sum(xs)}."
    if kind == "sub":
        a, b = sorted((rng.randint(0, d * 2 if rng.random() < 0.3 else d), rng.randint(0, d)), reverse=True)
        return f"{a} - {b} = {a - b}."
    if kind == "mul":
        a, b = rng.randint(1, d), rng.randint(1, d)
        if rng.random() < 0.25:
            a = 4
        return f"{a} × {b} = {a * b}."
    if kind == "compare":
        xs = [rng.randint(1, d) for _ in range(rng.randint(2, 4))]
        if len(xs) == 2 and xs[0] != xs[1]:
            hi, lo = max(xs), min(xs)
            return f"{hi} is more than {lo}." if rng.random() < 0.5 else f"{lo} is less than {hi}."
        which, val = ("largest", max(xs)) if rng.random() < 0.5 else ("smallest", min(xs))
        return f"Of {_join([str(x) for x in xs])}, the {which} is {val}."
    if kind == "labelled":
        names = rng.sample(LABELS if rng.random() < 0.5 else ITEMS, rng.randint(2, 5))
        vals = [rng.randint(1, d) for _ in names]
        listed = _join([f"{n} is {v}" for n, v in zip(names, vals, strict=True)])
        which, fn = ("largest", max) if rng.random() < 0.5 else ("smallest", min)
        best = fn(vals)
        winners = [n for n, v in zip(names, vals, strict=True) if v == best]
        if len(winners) == 1:
            return f"{listed[0].upper()}{listed[1:]}. The {which} is {winners[0]} with {best}."
        i, j = rng.sample(range(len(names)), 2)
        return f"{listed[0].upper()}{listed[1:]}. {names[i].capitalize()} and {names[j]} give {vals[i]} + {vals[j]} = {vals[i] + vals[j]}."
    if kind == "chain":
        chain = _organisms_chain(rng)
        k = rng.randrange(len(chain) - 1)
        food, eater = chain[k], chain[k + 1]
        form = rng.randrange(4)
        if form == 0:
            return f"In the food chain {' → '.join(chain)}, the {eater} eats the {food}."
        if form == 1:
            return f"The {food} is eaten by the {eater}."
        if form == 2:
            return f"If the {food} disappeared, the {eater} would lose its food and decrease."
        return f"If the {eater} disappeared, the {food} would lose its predator and increase."
    raise ValueError(f"unknown text kind {kind!r}; known: {list(KINDS)}")


def document(rng: random.Random, cfg: TextCorpusConfig) -> str:
    kinds = [k for k in KINDS if cfg.kinds.get(k, 0) > 0]
    weights = [cfg.kinds[k] for k in kinds]
    return " ".join(sentence(rng.choices(kinds, weights)[0], rng, cfg) for _ in range(cfg.sentences))


def corpus(n: int, seed: int, cfg: TextCorpusConfig) -> list[str]:
    """``n`` documents, a pure function of ``seed`` and ``cfg``."""
    unknown = sorted(set(cfg.kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"base.text_pretrain.corpus.kinds: unknown kind(s) {unknown}; known: {list(KINDS)}")
    rng = random.Random(seed)
    return [document(rng, cfg) for _ in range(n)]
