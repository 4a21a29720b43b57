"""synth_geo: MathVision/G-LLaVA-like figures - one or two shapes (rectangle, square, triangle) with
labelled side lengths, drawn roughly to scale.

Questions: the longest side (read, compare), perimeter and area (one or two steps, plus geometry
knowledge: a square's sides are equal, a rectangle's opposite sides are equal), and multi-step
combinations of two shapes (total area, difference of areas, sum of perimeters). Scored with relaxed
accuracy, integer answers.
"""

from __future__ import annotations

import copy
import math
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
    an,
    cap,
    conclude,
    font,
    font_px,
    join,
    misread_number,
    pick,
    text_width,
    weighted,
)

DATASET = "synth_geo"
METRIC = "relaxed_accuracy"
QTYPE = "numeric"

SHAPE_COLORS = ("red", "blue", "green", "purple", "orange", "brown")
KINDS = ("rectangle", "square", "triangle")
AREAL = ("rectangle", "square")
TWO_SHAPE_OPS = {"sum_area", "diff_area", "sum_perimeter"}
# questions that need arithmetic: their records count as calc, and only they can take a slip
CALC_OPS = frozenset({"perimeter", "area", "sum_area", "diff_area", "sum_perimeter"})


class GeoConfig(FamilyConfig):
    """Shapes with labelled sides. Harder: longer sides, two shapes, more multi-step questions."""

    OPS = ("side", "side_long", "perimeter", "area", "sum_area", "diff_area", "sum_perimeter")

    min_side: int = Field(2, ge=1, le=20)  # side lengths are integers in [min_side, max_side]
    max_side: int = Field(9, ge=3, le=20)
    max_shapes: int = Field(2, ge=1, le=2)  # 1 disables the two-shape questions
    distractor_prob: float = Field(0.5, ge=0, le=1)  # one-shape questions: chance of a second, unasked shape
    ops: dict[str, float] = Field(
        default_factory=lambda: {
            "side": 0.5,  # one labelled length: a rectangle's width/height, a square's side (read)
            "side_long": 0.5,  # longest side of a rectangle or triangle (read, compare)
            "perimeter": 1.0,  # perimeter of one shape (1-2 steps)
            "area": 1.0,  # area of a rectangle or square (1 step + knowledge)
            "sum_area": 0.75,  # total area of a rectangle and a square (3 steps)
            "diff_area": 0.5,  # difference of their areas (3 steps)
            "sum_perimeter": 0.5,  # sum of two shapes' perimeters (3-5 steps)
        }
    )

    @model_validator(mode="after")
    def _check(self) -> GeoConfig:
        if self.min_side >= self.max_side:
            raise ValueError(f"min_side ({self.min_side}) must be < max_side ({self.max_side})")
        if self.max_shapes == 1 and not any(w > 0 for k, w in self.ops.items() if k not in TWO_SHAPE_OPS):
            raise ValueError("max_shapes is 1 but every one-shape op has weight 0")
        return self


# ----------------------------------------------------------------------------------------------------
# generation


def _triangle_apex(a: float, b: float, c: float) -> tuple[float, float]:
    """Apex of a triangle with base a on the x axis from (0,0), side b from (0,0), side c from (a,0)."""
    x = (a * a + b * b - c * c) / (2 * a)
    return x, math.sqrt(max(b * b - x * x, 0.0))


def _sides(rng: random.Random, kind: str, cfg: GeoConfig) -> list[int]:
    lo, hi = cfg.min_side, cfg.max_side
    if kind == "square":
        return [rng.randint(lo, hi)]
    if kind == "rectangle":
        w, h = rng.sample(range(lo, hi + 1), 2)
        return [w, h]
    while True:  # a triangle that exists and is not too flat to draw and label
        a, b, c = (rng.randint(lo, hi) for _ in range(3))
        if a + b > c and a + c > b and b + c > a:
            base = max(a, b, c)
            s = sorted([a, b, c])
            if _triangle_apex(s[2], s[1], s[0])[1] >= 0.4 * base:
                return [s[2], s[1], s[0]] if rng.random() < 0.5 else [s[2], s[0], s[1]]


def _area(shape: dict) -> int:
    s = shape["sides"]
    return s[0] * s[0] if shape["kind"] == "square" else s[0] * s[1]


_Q_SIDE = {
    "width": ("What is the width of the rectangle?", "How wide is the rectangle?"),
    "height": ("What is the height of the rectangle?", "How tall is the rectangle?"),
    "side": (
        "What is the side length of the square?",
        "How long is each side of the square?",
        "What is the length of one side of the square?",
    ),
}
_Q = {
    "side_long": (
        "What is the length of the longest side of the {k}?",
        "How long is the longest side of the {k}?",
        "What is the greatest side length of the {k}?",
    ),
    "perimeter": (
        "What is the perimeter of the {k}?",
        "Find the perimeter of the {k}.",
        "What is the total length of all sides of the {k}?",
    ),
    "area": (
        "What is the area of the {k}?",
        "Find the area of the {k}.",
        "How many square units does the {k} cover?",
    ),
    "sum_area": (
        "What is the total area of the {k} and the {k2}?",
        "What are the areas of the {k} and the {k2} added together?",
        "Find the combined area of the two shapes.",
    ),
    "diff_area": (
        "How much larger is the area of the {k} than that of the {k2}?",
        "What is the difference between the areas of the {k} and the {k2}?",
        "By how much does the area of the {k} exceed the area of the {k2}?",
    ),
    "sum_perimeter": (
        "What is the sum of the perimeters of the {k} and the {k2}?",
        "What are the perimeters of both shapes added together?",
        "Find the perimeter of the {k} plus the perimeter of the {k2}.",
    ),
}


def make(rng: random.Random, cfg: GeoConfig) -> Sample:
    ops = dict(cfg.ops)
    if cfg.max_shapes == 1:
        ops = {k: w for k, w in ops.items() if k not in TWO_SHAPE_OPS}
    op = weighted(rng, ops)
    if op == "side":
        kinds = [rng.choice(AREAL)]
    elif op == "side_long":
        kinds = [rng.choice(("rectangle", "triangle"))]
    elif op == "perimeter":
        kinds = [rng.choice(KINDS)]
    elif op == "area":
        kinds = [rng.choice(AREAL)]
    elif op in ("sum_area", "diff_area"):
        kinds = list(AREAL)
    else:
        kinds = rng.sample(KINDS, 2)
    n_targets = len(kinds)
    if n_targets == 1 and cfg.max_shapes == 2 and rng.random() < cfg.distractor_prob:
        kinds.append(rng.choice([k for k in KINDS if k != kinds[0]]))
    colors = rng.sample(SHAPE_COLORS, len(kinds))
    while True:
        shapes = [{"kind": k, "color": c, "sides": _sides(rng, k, cfg)} for k, c in zip(kinds, colors)]
        if op != "diff_area" or _area(shapes[0]) != _area(shapes[1]):
            break
    targets = list(range(n_targets))
    if op == "diff_area" and _area(shapes[0]) < _area(shapes[1]):
        targets = [1, 0]  # the question names the larger shape first
    order = list(range(len(shapes)))
    rng.shuffle(order)  # left-to-right placement
    shapes = [shapes[i] for i in order]
    targets = [order.index(t) for t in targets]
    # side by side, or stacked when a triangle needs the width for its three labels
    layout = (
        "stacked" if len(shapes) == 2 and any(sh["kind"] == "triangle" for sh in shapes) else "side_by_side"
    )
    facts: dict[str, Any] = {
        "family": "geo",
        "shapes": shapes,
        "op": op,
        "targets": targets,
        "layout": layout,
    }
    k = shapes[targets[0]]["kind"]
    k2 = shapes[targets[1]]["kind"] if len(targets) > 1 else ""
    if op == "side":
        facts["which"] = "side" if k == "square" else rng.choice(("width", "height"))
        question = pick(rng, _Q_SIDE[facts["which"]])
    else:
        question = pick(rng, _Q[op]).format(k=k, k2=k2)
    return Sample(question=question, answer=solve(facts), facts=facts)


def draw(facts: dict, size: int) -> Image.Image:
    """Each shape fills its own cell (left/right half, or the whole image), keeping its aspect
    ratio roughly (clamped so thin shapes stay visible), with room around it for the labels."""
    S = size
    img = Image.new("RGB", (S, S), "white")
    d = ImageDraw.Draw(img)
    px = font_px(S)
    f = font(px)
    lw = max(1, round(2 * S / 64))
    shapes = facts["shapes"]
    widest = max(max(sh["sides"]) for sh in shapes)
    m = text_width(str(widest), px) + 3  # margin kept free for side labels
    n = len(shapes)
    for i, sh in enumerate(shapes):
        if facts["layout"] == "stacked":
            cx0, cy0, cx1, cy1 = 0.0, i * S / n, float(S), (i + 1) * S / n
        else:
            cx0, cy0, cx1, cy1 = i * S / n, 0.0, (i + 1) * S / n, float(S)
        x0, x1 = cx0 + m, cx1 - (m if sh["kind"] == "triangle" else 3)
        y0, y1 = cy0 + 3, cy1 - px - 2
        bw, bh = x1 - x0, y1 - y0
        rgb = COLORS[sh["color"]]
        sides = sh["sides"]
        if sh["kind"] in AREAL:
            w, h = (sides[0], sides[0]) if sh["kind"] == "square" else sides
            ratio = min(max(w / h, 0.4), 2.5)
            pw, ph = (bw, bw / ratio) if bw / ratio <= bh else (bh * ratio, bh)
            pw, ph = pw * 0.9, ph * 0.9
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            box = [round(cx - pw / 2), round(cy - ph / 2), round(cx + pw / 2), round(cy + ph / 2)]
            d.rectangle(box, outline=rgb, width=lw)
            d.text(((box[0] + box[2]) / 2, box[3] + 2), str(sides[0]), fill="black", font=f, anchor="mt")
            if sh["kind"] == "rectangle":
                d.text((box[0] - 2, (box[1] + box[3]) / 2), str(sides[1]), fill="black", font=f, anchor="rm")
        else:
            a, b, c = sides
            ax, ay = _triangle_apex(a, b, c)
            xs = [0.0, float(a), ax]
            span_x = max(xs) - min(xs)
            # not to scale (as in textbook figures): width and height fill the cell separately,
            # within a factor of 2 of the true proportions
            sx = bw / span_x
            sy = min(bh / max(ay, 1e-6), 2 * sx)
            sx = min(sx, 2 * sy)
            ox = x0 + (bw - span_x * sx) / 2 - min(xs) * sx
            base_y = y0 + (bh + ay * sy) / 2
            P = [(ox, base_y), (ox + a * sx, base_y), (ox + ax * sx, base_y - ay * sy)]
            d.polygon(P, outline=rgb, width=lw)
            gx, gy = sum(p[0] for p in P) / 3, sum(p[1] for p in P) / 3
            for (p, q), lab in zip(((P[0], P[1]), (P[0], P[2]), (P[1], P[2])), (a, b, c)):
                mx, my = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
                vx, vy = mx - gx, my - gy
                nrm = math.hypot(vx, vy) or 1.0
                off = px * 0.6
                d.text(
                    (mx + vx / nrm * off, my + vy / nrm * off), str(lab), fill="black", font=f, anchor="mm"
                )
    return img


def _shape_phrase(sh: dict, rng: random.Random | None = None) -> str:
    s, k, c = sh["sides"], sh["kind"], sh["color"]
    v = 0 if rng is None else rng.randrange(2)
    if k == "square":
        return (f"{an(c)} square with side {s[0]}", f"{an(c)} square whose side is {s[0]}")[v]
    if k == "rectangle":
        return (
            f"{an(c)} rectangle with width {s[0]} and height {s[1]}",
            f"{an(c)} rectangle with sides {s[0]} and {s[1]}",
        )[v]
    return (
        f"{an(c)} triangle with sides {join([str(x) for x in s])}",
        f"{an(c)} triangle whose sides are {join([str(x) for x in s])}",
    )[v]


def _places(facts: dict) -> tuple[str, str]:
    return (
        ("at the top", "at the bottom") if facts["layout"] == "stacked" else ("on the left", "on the right")
    )


def describe(facts: dict) -> str:
    shapes = facts["shapes"]
    if len(shapes) == 1:
        return (
            f"A geometry figure: {_shape_phrase(shapes[0])}, with the side lengths written beside the sides."
        )
    p0, p1 = _places(facts)
    return (
        f"A geometry figure with two shapes: {p0} {_shape_phrase(shapes[0])}; {p1} "
        f"{_shape_phrase(shapes[1])}. Side lengths are written beside the sides."
    )


# ----------------------------------------------------------------------------------------------------
# rationales


def _perimeter(sh: dict, trace: Trace, rng: random.Random, out: list[str], short: bool = False) -> int:
    s, k = sh["sides"], sh["kind"]
    if short:  # two perimeters in one rationale: keep each to one compact sentence
        if k == "square":
            p = trace.mul(4, s[0])
            out.append(f"The square's perimeter is {trace.steps[-1].expr()}.")
        elif k == "rectangle":
            h = trace.add(s[0], s[1])
            p = trace.mul(2, h)
            out.append(
                f"The rectangle's perimeter is 2 × ({s[0]} + {s[1]}): {trace.steps[-2].expr()}, {trace.steps[-1].expr()}."
            )
        else:
            p = trace.add(*s)
            out.append(f"The triangle's perimeter is {trace.steps[-1].expr()}.")
        return p
    if k == "square":
        if rng.random() < 0.6:
            p = trace.mul(4, s[0])
            out.append(
                pick(
                    rng,
                    (
                        f"A square has four equal sides, so its perimeter is {trace.steps[-1].expr()}.",
                        f"All four sides of the square are {s[0]}, so the perimeter is {trace.steps[-1].expr()}.",
                    ),
                )
            )
        else:
            p = trace.add(s[0], s[0], s[0], s[0])
            out.append(f"The square has four sides of {s[0]}: {trace.steps[-1].expr()}.")
    elif k == "rectangle":
        if rng.random() < 0.6:
            h = trace.add(s[0], s[1])
            p = trace.mul(2, h)
            out.append(
                pick(
                    rng,
                    (
                        f"The perimeter of the rectangle is 2 × (width + height). {cap(trace.steps[-2].expr())}, and {trace.steps[-1].expr()}.",
                        f"Opposite sides of a rectangle are equal, so the perimeter is twice {s[0]} + {s[1]}: {trace.steps[-2].expr()}, 2 × {h} = {p}.",
                    ),
                )
            )
        else:
            p = trace.add(s[0], s[1], s[0], s[1])
            out.append(f"Adding all four sides of the rectangle: {trace.steps[-1].expr()}.")
    else:
        p = trace.add(*s)
        out.append(
            pick(
                rng,
                (
                    f"The perimeter of the triangle is the sum of its sides: {trace.steps[-1].expr()}.",
                    f"Adding the three sides of the triangle: {trace.steps[-1].expr()}.",
                ),
            )
        )
    return p


def _area_steps(sh: dict, trace: Trace, rng: random.Random, out: list[str]) -> int:
    s = sh["sides"]
    if sh["kind"] == "square":
        a = trace.mul(s[0], s[0])
        out.append(
            pick(
                rng,
                (
                    f"The sides of a square are equal, so its area is {trace.steps[-1].expr()}.",
                    f"The square's area is side times side: {trace.steps[-1].expr()}.",
                ),
            )
        )
    else:
        a = trace.mul(s[0], s[1])
        out.append(
            pick(
                rng,
                (
                    f"The area of the rectangle is width times height: {trace.steps[-1].expr()}.",
                    f"For the rectangle, {trace.steps[-1].expr()}.",
                ),
            )
        )
    return a


def _reason(seen: dict, trace: Trace, rng: random.Random) -> tuple[list[str], str]:
    shapes, op, targets = seen["shapes"], seen["op"], seen["targets"]
    out: list[str] = []
    if len(shapes) == 1:
        out.append(
            pick(
                rng,
                (
                    f"The figure shows {_shape_phrase(shapes[0], rng)}.",
                    f"I see {_shape_phrase(shapes[0], rng)}.",
                    f"There is {_shape_phrase(shapes[0], rng)} in the picture.",
                ),
            )
        )
    else:
        a, b = _shape_phrase(shapes[0], rng), _shape_phrase(shapes[1], rng)
        p0, p1 = _places(seen)
        out.append(
            pick(
                rng,
                (
                    f"{cap(p0)} is {a}; {p1} is {b}.",
                    f"The figure shows {a} and {b}.",
                    f"There are two shapes: {a}, and {b}.",
                ),
            )
        )
    t = [shapes[i] for i in targets]
    if op == "side":
        which = seen["which"]
        ans = t[0]["sides"][1 if which == "height" else 0]
        if which == "side":
            out.append(
                pick(
                    rng,
                    (
                        f"The label beside the square reads {ans}, and all its sides are equal.",
                        f"Each side of the square is {ans}.",
                    ),
                )
            )
        else:
            where = "below" if which == "width" else "to the left of"
            out.append(
                pick(
                    rng,
                    (
                        f"The {which} is the label {where} the rectangle: {ans}.",
                        f"The rectangle's {which} is {ans}.",
                    ),
                )
            )
    elif op == "side_long":
        s = t[0]["sides"]
        ans = max(s)
        out.append(
            pick(
                rng,
                (
                    f"Comparing {join([str(x) for x in s])}, the longest side is {ans}.",
                    f"The largest of the side lengths {join([str(x) for x in s])} is {ans}.",
                ),
            )
        )
    elif op == "perimeter":
        ans = _perimeter(t[0], trace, rng, out)
    elif op == "area":
        ans = _area_steps(t[0], trace, rng, out)
    elif op in ("sum_area", "diff_area"):
        a1 = _area_steps(t[0], trace, rng, out)
        a2 = _area_steps(t[1], trace, rng, out)
        if op == "sum_area":
            ans = trace.add(a1, a2)
            out.append(
                pick(
                    rng,
                    (f"Together: {trace.steps[-1].expr()}.", f"The total area is {trace.steps[-1].expr()}."),
                )
            )
        else:
            ans = trace.sub(max(a1, a2), min(a1, a2))
            out.append(
                pick(
                    rng,
                    (
                        f"The difference is {trace.steps[-1].expr()}.",
                        f"Subtracting the areas: {trace.steps[-1].expr()}.",
                    ),
                )
            )
    else:  # sum_perimeter
        p1 = _perimeter(t[0], trace, rng, out, short=True)
        p2 = _perimeter(t[1], trace, rng, out, short=True)
        ans = trace.add(p1, p2)
        out.append(
            pick(
                rng,
                (
                    f"Adding both perimeters: {trace.steps[-1].expr()}.",
                    f"Together they give {trace.steps[-1].expr()}.",
                ),
            )
        )
    out.append(conclude(rng, str(ans)))
    return out, str(ans)


def _misread(facts: dict, rng: random.Random, attempt: int) -> tuple[dict, dict]:
    """A side label read wrong (a look-alike digit or off by one); the rest follows from it."""
    seen = copy.deepcopy(facts)
    i = rng.choice(facts["targets"])
    j = rng.randrange(len(facts["shapes"][i]["sides"]))
    v = facts["shapes"][i]["sides"][j]
    r = max(1, misread_number(rng, v, attempt))
    seen["shapes"][i]["sides"][j] = r
    return seen, {"target": f"{facts['shapes'][i]['kind']}.side{j}", "true": v, "read": r}


# solve, error_kinds and explain: the protocol geo shares with chart and doc (vlmcot.world.common)
_family = StepFamily(_reason, _misread, METRIC, CALC_OPS)
solve, error_kinds, explain = _family.solve, _family.error_kinds, _family.explain
