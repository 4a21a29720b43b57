"""Shared pieces of the synthetic world: the per-family config base, what a family returns, fonts and
drawing helpers, and the arithmetic/perception machinery the scripted teacher uses to write (and, on
purpose, get wrong) step-by-step rationales.

Every family module (chart, doc, geo, sci, sign) exposes the same names: ``DATASET``, ``METRIC``,
``QTYPE``, ``CALC_OPS`` (the ops whose questions need arithmetic), ``make(rng, cfg) -> Sample`` (the
question and its facts), ``draw(facts, size)`` and ``describe(facts)`` (the image and its description,
both functions of the facts alone), ``solve(facts)``, ``error_kinds(facts)`` and
``explain(facts, rng, error) -> Explanation``. chart, doc and geo, whose rationales read values and then
calculate, take the last three from one :class:`StepFamily`. Facts are plain JSON (they travel in JSONL
records, where dict keys get sorted), so anything whose order matters is stored as a list.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from PIL import Image, ImageFont
from pydantic import Field, field_validator

from vlmcot.config import StrictModel

# ----------------------------------------------------------------------------------------------------
# config


class FamilyConfig(StrictModel):
    """What every task family shares: whether it runs, how many records, and its question mix."""

    OPS: ClassVar[tuple[str, ...]] = ()  # question types this family knows, set by each subclass

    enabled: bool = True  # generate this family (its dataset) at all
    n_train: int = Field(1500, ge=0)  # train records (questions; one image each)
    n_eval: int = Field(300, ge=0)  # eval records; their images never equal a train image
    # question mix: op name -> relative weight. Ops not listed get weight 0 (never asked).
    ops: dict[str, float] = Field(default_factory=dict)

    @field_validator("ops")
    @classmethod
    def _check_ops(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(cls.OPS))
        if unknown:
            raise ValueError(f"unknown op(s) {unknown}; known: {list(cls.OPS)}")
        bad = [k for k, w in v.items() if not (w >= 0 and math.isfinite(w))]
        if bad:
            raise ValueError(f"op weights must be finite and >= 0 (bad: {bad})")
        if v and sum(v.values()) <= 0:
            raise ValueError("at least one op needs a positive weight")
        return v


# ----------------------------------------------------------------------------------------------------
# what families return


@dataclass
class Sample:
    """One generated question. Its image and description are the family's ``draw(facts, size)`` and
    ``describe(facts)``: vlmcot.world.generate renders them, once for every family."""

    question: str
    answer: str
    facts: dict[str, Any]  # ground truth a rationale needs; facts["family"] names the module
    choices: list[str] | None = None  # multiple choice option texts, in letter order
    answers: list[str] | None = None  # annotator answers (VQA accuracy datasets)


@dataclass
class Explanation:
    """A rationale (without the answer marker) and the answer it leads to."""

    text: str
    answer: str
    error: str | None = None  # the error kind injected, None for a faithful rationale
    detail: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------
# drawing


@functools.lru_cache(maxsize=32)
def font(px: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``px`` pixels (no font files to download)."""
    return ImageFont.load_default(size=px)


def font_px(size: int, at64: int = 10) -> int:
    """Scale a font size chosen for 64 px images to ``size`` px images. 10 px at 64: at 9 px
    Pillow's font draws 5 and 6 nearly alike."""
    return max(7, round(at64 * size / 64))


def text_width(text: str, px: int) -> float:
    return font(px).getlength(text)


def png_bytes(img: Image.Image) -> bytes:
    """Encode deterministically (no metadata, fixed compression) so equal pixels give equal bytes."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def write_bytes(path: Path, data: bytes) -> None:
    """Write only when the content changed (keeps mtimes, and DVC, quiet on re-runs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_bytes() == data:
        return
    path.write_bytes(data)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Named colours: the description and rationales say the name, the image uses the RGB.
COLORS: dict[str, tuple[int, int, int]] = {
    "blue": (50, 90, 200),
    "red": (200, 40, 40),
    "green": (30, 140, 60),
    "orange": (230, 120, 20),
    "purple": (130, 60, 170),
    "brown": (130, 80, 40),
    "black": (20, 20, 20),
    "teal": (0, 130, 130),
}

# ----------------------------------------------------------------------------------------------------
# wording helpers


def pick(rng: random.Random, options: list[str] | tuple[str, ...]) -> str:
    return options[rng.randrange(len(options))]


def weighted(rng: random.Random, weights: dict[str, float]) -> str:
    """Seeded weighted choice over dict keys, in the dict's (stable) order."""
    keys = [k for k, w in weights.items() if w > 0]
    if not keys:
        raise ValueError("no op with a positive weight is available")
    return rng.choices(keys, weights=[weights[k] for k in keys], k=1)[0]


def join(items: list[str], conj: str = "and") -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" {conj} " + items[-1]


_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def word(n: int) -> str:
    return _WORDS[n] if 0 <= n < len(_WORDS) else str(n)


def an(w: str) -> str:
    """'a red square' / 'an orange square'."""
    return ("an " if w[:1].lower() in "aeiou" else "a ") + w


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def conclude(rng: random.Random, answer: str) -> str:
    return pick(
        rng,
        (
            f"So the answer is {answer}.",
            f"Therefore, the answer is {answer}.",
            f"The answer is {answer}.",
            f"That gives {answer}.",
            f"Hence the answer is {answer}.",
        ),
    )


# ----------------------------------------------------------------------------------------------------
# "is this wrong answer clearly wrong?" - a generation-time sanity check, not a metric: an injected
# error must fail the filter under the dataset's metric (relaxed 5% tolerance, ANLS 0.5 threshold).


def levenshtein(a: str, b: str) -> int:
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def clearly_different(wrong: str, right: str, metric: str | None = None) -> bool:
    """True when ``wrong`` scores 0 against ``right`` under ``metric`` (None: under every metric
    this world uses - relaxed accuracy's 5% tolerance, ANLS's 0.5 threshold, exact match)."""
    w, r = wrong.strip().lower(), right.strip().lower()
    if w == r:
        return False
    if metric in (None, "relaxed_accuracy"):
        try:
            fw, fr = float(w), float(r)
            if fr != 0 and abs(fw - fr) <= 0.05 * abs(fr):
                return False
        except ValueError:
            pass
    if metric in (None, "anls", "vqa_accuracy"):
        # ANLS gives 1 - d/len while that is >= 0.5: only d/len > 0.5 scores 0
        return levenshtein(w, r) / max(len(w), len(r)) > 0.5
    return True


# ----------------------------------------------------------------------------------------------------
# perception slips: the digits people (and models) confuse when reading small print

_CONFUSED = {
    0: [8, 6],
    1: [7, 4],
    2: [7, 3],
    3: [8, 5],
    4: [9, 1],
    5: [6, 3],
    6: [5, 8],
    7: [1, 2],
    8: [3, 6, 9],
    9: [4, 8],
}


def misread_number(rng: random.Random, v: int, attempt: int = 0) -> int:
    """A plausible misreading of the printed number ``v`` (never equal to it, never negative).

    Early attempts use small, realistic confusions (off by one, look-alike digits); later attempts
    (the caller retries until the answer changes) allow larger jumps."""
    if attempt < 6 and rng.random() < 0.5:
        digits = [int(c) for c in str(v)]
        k = rng.randrange(len(digits))
        opts = [c for c in _CONFUSED[digits[k]] if not (k == 0 and c == 0 and len(digits) > 1)]
        if opts:
            digits[k] = rng.choice(opts)
            return int("".join(map(str, digits)))
    mag = 1 + attempt // 4
    for _ in range(20):
        d = rng.randint(1, mag) * rng.choice((-1, 1))
        if v + d >= 0 and d != 0:
            return v + d
    return v + mag


# ----------------------------------------------------------------------------------------------------
# arithmetic with an optional slip


@dataclass
class Step:
    op: str  # add / sub / mul
    operands: list[int]
    result: int  # what the rationale writes (wrong if slipped)
    true: int  # the correct result for these operands

    @property
    def slipped(self) -> bool:
        return self.result != self.true

    def expr(self) -> str:
        sym = {"add": " + ", "sub": " - ", "mul": " × "}[self.op]
        return sym.join(str(x) for x in self.operands) + f" = {self.result}"


class Trace:
    """The arithmetic steps of one rationale. With ``slip_at`` set, that step's written result is a
    plausible slip, and later steps use the wrong value, as a real teacher's would."""

    def __init__(self, rng: random.Random | None = None, slip_at: int | None = None):
        self.rng = rng or random.Random(0)
        self.slip_at = slip_at
        self.steps: list[Step] = []

    def _record(self, op: str, operands: list[int], true: int) -> int:
        res = true
        if self.slip_at is not None and len(self.steps) == self.slip_at:
            res = slip(self.rng, op, operands, true)
        self.steps.append(Step(op, list(operands), res, true))
        return res

    def add(self, *xs: int) -> int:
        return self._record("add", list(xs), sum(xs))

    def sub(self, a: int, b: int) -> int:
        return self._record("sub", [a, b], a - b)

    def mul(self, a: int, b: int) -> int:
        return self._record("mul", [a, b], a * b)

    def running_sum(self, xs: list[int]) -> int:
        """x1 + x2 = s1, s1 + x3 = s2, ... (one step per addition)."""
        s = xs[0]
        for x in xs[1:]:
            s = self.add(s, x)
        return s

    def total(self, xs: list[int], rng: random.Random) -> tuple[int, str]:
        """The sum of ``xs`` and how a rationale writes it: step by step (as :meth:`running_sum`) for
        most lists of three or more, otherwise as one addition."""
        n = len(xs)
        if n > 2 and rng.random() < 0.6:
            r = self.running_sum(xs)
            return r, ", ".join(s.expr() for s in self.steps[-(n - 1) :])
        r = self.add(*xs)
        return r, self.steps[-1].expr()


def slip(rng: random.Random, op: str, operands: list[int], true: int) -> int:
    """A plausible wrong result: off by one or two, a forgotten carry or borrow, a neighbouring
    times-table entry. Always differs from ``true`` and is never negative."""
    cands: list[int] = []
    if op == "mul":
        a, b = operands
        cands += [a * (b + 1), a * (b - 1), (a + 1) * b, (a - 1) * b]
    cands += [true + 1, true - 1, true + 2, true - 2]
    if op == "add" and sum(x % 10 for x in operands) >= 10:
        cands.append(true - 10)  # a forgotten carry
    if op == "sub" and operands[0] % 10 < operands[1] % 10:
        cands.append(true + 10)  # a forgotten borrow
    cands = [c for c in cands if c != true and c >= 0]
    return rng.choice(cands)


def fmt_list(rng: random.Random, pairs: list[tuple[str, int | str]], style: int | None = None) -> str:
    """'tea at 4, milk at 7 and jam at 2' in one of several styles (kept within one rationale)."""
    style = rng.randrange(5) if style is None else style
    fmts = ("{k} at {v}", "{k} = {v}", "{k} with {v}", "{k} ({v})", "{k} is {v}")
    return join([fmts[style].format(k=k, v=v) for k, v in pairs])


# ----------------------------------------------------------------------------------------------------
# the protocol of the families that read values, then calculate (chart, doc, geo)


@dataclass(frozen=True)
class StepFamily:
    """``solve``, ``error_kinds`` and ``explain`` of a family whose rationale is written by
    ``reason(seen_facts, trace, rng) -> (sentences, answer)``: what it reads, then arithmetic steps.
    Such a family binds them once, at its end: ``solve, error_kinds, explain = ...`` of its StepFamily.

    ``misread(facts, rng, attempt) -> (seen_facts, detail)`` perturbs what the teacher *reads*;
    ``metric`` is the dataset's (an injected error must score 0 under it); ``calc_ops`` are the ops
    with arithmetic, the only ones a slip can hit.
    """

    reason: Callable[[dict, Trace, random.Random], tuple[list[str], str]]
    misread: Callable[[dict, random.Random, int], tuple[dict, dict]]
    metric: str
    calc_ops: frozenset[str]
    max_tries: int = 80  # explain() attempts at an error that changes the answer

    def solve(self, facts: dict) -> str:
        """The answer a faithful rationale reaches (wording draws from the rng, the answer does not)."""
        return self.reason(facts, Trace(), random.Random(0))[1]

    def error_kinds(self, facts: dict) -> list[str]:
        return ["misread", "slip"] if facts["op"] in self.calc_ops else ["misread"]

    def explain(self, facts: dict, rng: random.Random, error: str | None = None) -> Explanation:
        """A rationale for ``facts``.

        ``error`` None: faithful. "misread": the whole rationale (description included) follows the
        wrong reading. "slip": one arithmetic step gets a wrong result that later steps carry forward.
        Retries until the final answer is clearly wrong (scores 0 under ``metric``), so an injected
        error is always a real error; raises ValueError when the kind cannot change this answer.
        """
        if error is None:
            sentences, ans = self.reason(facts, Trace(), rng)
            return Explanation(" ".join(sentences), ans)
        truth = self.solve(facts)
        for attempt in range(self.max_tries):
            detail: dict[str, Any] = {}
            if error == "misread":
                seen, detail = self.misread(facts, rng, attempt)
                trace = Trace()
            elif error == "slip":
                dry = Trace()
                self.reason(facts, dry, random.Random(0))
                if not dry.steps:
                    raise ValueError("no arithmetic step to slip on")
                # half the slips hit the final step: it decides the answer outright
                n = len(dry.steps)
                k = n - 1 if rng.random() < 0.5 else rng.randrange(n)
                seen, trace = facts, Trace(rng, slip_at=k)
            else:
                raise ValueError(f"unknown error kind {error!r}")
            sentences, ans = self.reason(seen, trace, rng)
            if clearly_different(ans, truth, self.metric):
                if error == "slip":
                    s = trace.steps[trace.slip_at]
                    detail = {"step": trace.slip_at, "true": s.true, "written": s.result}
                return Explanation(" ".join(sentences), ans, error, detail)
        raise ValueError(f"could not inject a {error!r} error that changes the answer")
