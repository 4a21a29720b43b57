"""synth_chart: ChartQA-like horizontal bar charts with 2-6 labelled bars and small integer values.

Questions range from reading one value (lookup) over comparisons (argmax/argmin answer the *label*)
and counting to multi-step arithmetic (sum or difference of two bars, total of all bars, highest
minus lowest). Scored like ChartQA: relaxed accuracy, numeric answers without units.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from PIL import Image, ImageDraw
from pydantic import Field, model_validator

from vlmcot.world.common import (
    COLORS,
    FamilyConfig,
    Sample,
    StepFamily,
    Trace,
    cap,
    conclude,
    fmt_list,
    font,
    font_px,
    join,
    misread_number,
    pick,
    text_width,
    weighted,
    word,
)

DATASET = "synth_chart"
METRIC = "relaxed_accuracy"
QTYPE = "numeric"

# Short words so a label fits beside its bar at 64 px.
LABELS = (
    "tea",
    "milk",
    "jam",
    "egg",
    "pie",
    "nut",
    "rice",
    "corn",
    "fig",
    "kiwi",
    "lime",
    "plum",
    "bean",
    "oat",
    "bun",
    "cod",
)
BAR_COLORS = ("blue", "red", "green", "orange", "purple", "teal")
# questions that need arithmetic: their records count as calc, and only they can take a slip
CALC_OPS = frozenset({"diff", "sum2", "total", "range"})


class ChartConfig(FamilyConfig):
    """Bar charts. Harder: more bars, larger values, no printed values, more total/range questions."""

    OPS = ("lookup", "argmax", "argmin", "diff", "sum2", "count", "total", "range")

    min_bars: int = Field(3, ge=2, le=6)  # fewest bars in a chart
    max_bars: int = Field(6, ge=2, le=6)  # most bars (6 is what fits legibly at 64 px)
    max_value: int = Field(9, ge=3, le=99)  # values are integers in [1, max_value]
    show_values: bool = True  # print each value beside its bar; False draws unit gridlines instead
    ops: dict[str, float] = Field(
        default_factory=lambda: {
            "lookup": 1.0,  # value of one bar (read)
            "argmax": 0.5,  # label of the highest bar (compare)
            "argmin": 0.5,  # label of the lowest bar (compare)
            "diff": 1.0,  # difference of two bars (read 2, subtract)
            "sum2": 1.0,  # sum of two bars (read 2, add)
            "count": 0.75,  # bars above a threshold (read all, compare)
            "total": 0.75,  # sum of all bars (read all, add n-1 times)
            "range": 0.5,  # highest minus lowest (read all, compare, subtract)
        }
    )

    @model_validator(mode="after")
    def _check(self) -> ChartConfig:
        if self.min_bars > self.max_bars:
            raise ValueError(f"min_bars ({self.min_bars}) > max_bars ({self.max_bars})")
        return self


# ----------------------------------------------------------------------------------------------------
# generation


def _unique_extreme(values: list[int], fn) -> bool:
    return values.count(fn(values)) == 1


def _values_ok(op: str, values: list[int]) -> bool:
    if op in ("argmax", "range") and not _unique_extreme(values, max):
        return False
    if op in ("argmin", "range") and not _unique_extreme(values, min):
        return False
    if op == "diff" and len(set(values)) < 2:
        return False
    return True


def make(rng: random.Random, cfg: ChartConfig) -> Sample:
    op = weighted(rng, cfg.ops)
    n = rng.randint(cfg.min_bars, cfg.max_bars)
    labels = rng.sample(LABELS, n)
    while True:
        values = [rng.randint(1, cfg.max_value) for _ in labels]
        if _values_ok(op, values):
            break
    vals = dict(zip(labels, values))
    color = rng.choice(BAR_COLORS)
    asked: list[str] = []
    threshold = None
    if op == "lookup":
        asked = [rng.choice(labels)]
        q = pick(
            rng,
            (
                "What is the value of {a}?",
                "How much is {a} in the chart?",
                "What value does the {a} bar show?",
                "According to the chart, what is the value for {a}?",
            ),
        )
    elif op == "argmax":
        q = pick(
            rng,
            (
                "Which category has the highest value?",
                "Which bar is the longest?",
                "Which label has the largest value?",
            ),
        )
    elif op == "argmin":
        q = pick(
            rng,
            (
                "Which category has the lowest value?",
                "Which bar is the shortest?",
                "Which label has the smallest value?",
            ),
        )
    elif op == "diff":
        a, b = rng.sample([lab for lab in labels], 2)
        while vals[a] == vals[b]:
            a, b = rng.sample(labels, 2)
        if vals[a] < vals[b]:
            a, b = b, a
        asked = [a, b]
        q = pick(
            rng,
            (
                "How much larger is {a} than {b}?",
                "What is the difference between {a} and {b}?",
                "By how much does {a} exceed {b}?",
            ),
        )
    elif op == "sum2":
        asked = rng.sample(labels, 2)
        q = pick(
            rng,
            (
                "What is the sum of {a} and {b}?",
                "What do {a} and {b} add up to?",
                "What is the total of {a} and {b}?",
            ),
        )
    elif op == "count":
        free = [t for t in range(1, cfg.max_value) if t not in values] or list(range(1, cfg.max_value))
        threshold = rng.choice(free)
        q = pick(
            rng,
            (
                "How many bars have a value greater than {t}?",
                "How many categories are above {t}?",
                "How many bars exceed {t}?",
            ),
        )
    elif op == "total":
        q = pick(
            rng,
            (
                "What is the total of all the values?",
                "What do all the bars add up to?",
                "What is the sum of all values in the chart?",
            ),
        )
    else:  # range
        q = pick(
            rng,
            (
                "What is the difference between the highest and the lowest value?",
                "How much larger is the largest value than the smallest?",
                "What is the highest value minus the lowest value?",
            ),
        )
    a = asked[0] if asked else ""
    b = asked[1] if len(asked) > 1 else ""
    question = q.format(a=a, b=b, t=threshold)
    facts: dict[str, Any] = {
        "family": "chart",
        "labels": labels,  # top to bottom, as drawn
        "values": vals,
        "color": color,
        "op": op,
        "asked": asked,
        "threshold": threshold,
        "max_value": cfg.max_value,
        "show_values": cfg.show_values,
    }
    return Sample(question=question, answer=solve(facts), facts=facts)


def draw(facts: dict, size: int) -> Image.Image:
    S = size
    img = Image.new("RGB", (S, S), "white")
    d = ImageDraw.Draw(img)
    labels, vals = facts["labels"], facts["values"]
    n = len(labels)
    rh = S / n
    px = min(font_px(S), int(rh))
    f = font(px)
    x0 = max(text_width(lab, px) for lab in labels) + 3
    vw = text_width(str(facts["max_value"]), px) + 4 if facts["show_values"] else 1
    maxlen = S - x0 - vw - 1
    unit = maxlen / facts["max_value"]
    if not facts["show_values"]:
        for k in range(1, facts["max_value"] + 1):
            x = round(x0 + k * unit)
            d.line([x, 0, x, S], fill=(215, 215, 215))
    rgb = COLORS[facts["color"]]
    for i, lab in enumerate(labels):
        yc = (i + 0.5) * rh
        half = max(2.0, rh * 0.32)
        d.text((1, yc), lab, fill="black", font=f, anchor="lm")
        x1 = x0 + vals[lab] * unit
        d.rectangle([x0, round(yc - half), round(x1), round(yc + half)], fill=rgb)
        if facts["show_values"]:
            d.text((x1 + 2, yc), str(vals[lab]), fill="black", font=f, anchor="lm")
    d.line([x0 - 1, 0, x0 - 1, S], fill="black")
    return img


def describe(facts: dict) -> str:
    labels, vals = facts["labels"], facts["values"]
    parts = join([f"{lab} is {vals[lab]}" for lab in labels])
    s = f"A horizontal bar chart with {word(len(labels))} {facts['color']} bars. From top to bottom: {parts}."
    if facts["show_values"]:
        s += " Each value is printed at the end of its bar."
    else:
        s += " Values are not printed; light gridlines mark every unit."
    return s


# ----------------------------------------------------------------------------------------------------
# rationales


def _goal(rng: random.Random, facts: dict) -> str:
    op, asked, t = facts["op"], facts["asked"], facts["threshold"]
    a = asked[0] if asked else ""
    b = asked[1] if len(asked) > 1 else ""
    return {
        "lookup": f"The question asks for the value of {a}.",
        "argmax": "I need the category with the highest value.",
        "argmin": "I need the category with the lowest value.",
        "diff": f"I need the difference between {a} and {b}.",
        "sum2": f"I need to add {a} and {b}.",
        "count": f"I need to count the bars above {t}.",
        "total": "I need the sum of every bar.",
        "range": "I need the highest value minus the lowest value.",
    }[op]


def _reason(seen: dict, trace: Trace, rng: random.Random) -> tuple[list[str], str]:
    labels, vals, op = seen["labels"], seen["values"], seen["op"]
    n = len(labels)
    out: list[str] = []
    if rng.random() < 0.4:
        out.append(_goal(rng, seen))
    listing = fmt_list(rng, [(lab, vals[lab]) for lab in labels])
    out.append(
        pick(
            rng,
            (
                f"The bar chart has {word(n)} {seen['color']} bars: {listing}.",
                f"The chart shows {word(n)} categories. Reading from top to bottom: {listing}.",
                f"I can see {word(n)} horizontal bars with these values: {listing}.",
                f"Reading each bar of the chart gives {listing}.",
            ),
        )
    )
    asked = seen["asked"]
    if op == "lookup":
        a = asked[0]
        v = vals[a]
        out.append(
            pick(
                rng,
                (
                    f"The bar for {a} ends at {v}.",
                    f"The number next to {a} is {v}.",
                    f"{cap(a)} has a value of {v}.",
                ),
            )
        )
        ans = v
    elif op in ("argmax", "argmin"):
        fn = max if op == "argmax" else min
        m = fn(vals[lab] for lab in labels)
        lab = next(lab for lab in labels if vals[lab] == m)
        if op == "argmax":
            out.append(
                pick(
                    rng,
                    (
                        f"The largest value is {m}, for {lab}.",
                        f"Comparing the bars, {lab} is the longest at {m}.",
                        f"The highest bar is {lab} with {m}.",
                    ),
                )
            )
        else:
            out.append(
                pick(
                    rng,
                    (
                        f"The smallest value is {m}, for {lab}.",
                        f"Comparing the bars, {lab} is the shortest at {m}.",
                        f"The lowest bar is {lab} with {m}.",
                    ),
                )
            )
        ans = lab
    elif op in ("diff", "sum2"):
        a, b = asked
        va, vb = vals[a], vals[b]
        out.append(
            pick(
                rng,
                (
                    f"{cap(a)} is {va} and {b} is {vb}.",
                    f"The bar for {a} shows {va} and the bar for {b} shows {vb}.",
                    f"So {a} = {va} and {b} = {vb}.",
                ),
            )
        )
        if op == "diff":
            r = trace.sub(max(va, vb), min(va, vb))
            e = trace.steps[-1].expr()
            out.append(
                pick(rng, (f"The difference is {e}.", f"Subtracting: {e}.", f"{e}, so the gap is {r}."))
            )
        else:
            r = trace.add(va, vb)
            e = trace.steps[-1].expr()
            out.append(pick(rng, (f"Adding them: {e}.", f"Together: {e}.", f"Their sum is {e}.")))
        ans = r
    elif op == "count":
        t = seen["threshold"]
        above = [lab for lab in labels if vals[lab] > t]
        if above:
            out.append(
                pick(
                    rng,
                    (
                        f"The bars above {t} are {join([f'{lab} ({vals[lab]})' for lab in above])}.",
                        f"Values greater than {t}: {join([str(vals[lab]) for lab in above])}.",
                    ),
                )
            )
            out.append(
                pick(rng, (f"That makes {word(len(above))} bars.", f"Counting them gives {len(above)}."))
            )
        else:
            out.append(f"No bar is above {t}.")
        ans = len(above)
    elif op == "total":
        r, e = trace.total([vals[lab] for lab in labels], rng)
        out.append(
            pick(rng, (f"Adding all the values: {e}.", f"The total is {e}.", f"Summing the bars: {e}."))
        )
        ans = r
    else:  # range
        mx = max(vals[lab] for lab in labels)
        mn = min(vals[lab] for lab in labels)
        lmx = next(lab for lab in labels if vals[lab] == mx)
        lmn = next(lab for lab in labels if vals[lab] == mn)
        out.append(
            pick(
                rng,
                (
                    f"The highest value is {mx} ({lmx}) and the lowest is {mn} ({lmn}).",
                    f"{cap(lmx)} is the largest at {mx} and {lmn} the smallest at {mn}.",
                ),
            )
        )
        r = trace.sub(mx, mn)
        out.append(
            pick(rng, (f"The difference is {trace.steps[-1].expr()}.", f"{cap(trace.steps[-1].expr())}."))
        )
        ans = r
    ans_s = str(ans)
    out.append(conclude(rng, ans_s))
    return out, ans_s


def _misread(facts: dict, rng: random.Random, attempt: int) -> tuple[dict, dict]:
    op = facts["op"]
    relevant = facts["asked"] if op in ("lookup", "diff", "sum2") else facts["labels"]
    for _ in range(50):
        target = rng.choice(relevant)
        v = facts["values"][target]
        r = misread_number(rng, v, attempt)
        seen = copy.deepcopy(facts)
        seen["values"][target] = r
        # a misreading that creates a tie would make "the highest bar" ill-defined: read again
        # (late attempts accept a tie: some charts leave no other way to misjudge the extreme)
        if attempt > 40 or _values_ok(op, [seen["values"][lab] for lab in seen["labels"]]):
            break
    return seen, {"target": target, "true": v, "read": r}


# solve, error_kinds and explain: the protocol chart shares with doc and geo (vlmcot.world.common)
_family = StepFamily(_reason, _misread, METRIC, CALC_OPS)
solve, error_kinds, explain = _family.solve, _family.error_kinds, _family.explain
