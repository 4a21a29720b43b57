"""synth_doc: DocVQA/InfoVQA-like small documents - shop receipts (item + price rows) and forms
(field: value rows) - rendered in Pillow's font from a small vocabulary a tiny vision tower can learn.

Questions: copy a field (price of an item, the shop name, a form field), find a row (which item
costs 7?), compare (which costs more? cheapest?), count rows, and arithmetic (two prices together,
difference, total, age in k years). Scored like DocVQA: ANLS; answers copied as written.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from PIL import Image, ImageDraw
from pydantic import Field, model_validator

from vlmcot.world.common import (
    FamilyConfig,
    Sample,
    StepFamily,
    Trace,
    an,
    cap,
    clearly_different,
    conclude,
    fmt_list,
    font,
    font_px,
    join,
    misread_number,
    pick,
    weighted,
    word,
)

DATASET = "synth_doc"
METRIC = "anls"
QTYPE = "short"

# Vocabularies are pairwise far apart (normalised edit distance > 0.5), so under ANLS a wrong
# word scores 0 rather than partial credit (a test checks this).
ITEMS = (
    "tea",
    "milk",
    "bread",
    "soup",
    "cake",
    "rice",
    "salad",
    "jelly",
    "pasta",
    "apple",
    "honey",
    "beans",
    "fish",
    "pizza",
    "nuts",
    "corn",
)
STORES = ("CAFE", "DELI", "MART", "DINER", "BAKERY", "GROCER", "KIOSK", "BISTRO")
TITLES = ("FORM", "MEMBER", "ID CARD", "PASS")
FIELD_VALUES = {
    "Name": (
        "ANNA",
        "BOB",
        "CARL",
        "DORA",
        "EMMA",
        "FINN",
        "ZOE",
        "HUGO",
        "IVAN",
        "JUNE",
        "KATE",
        "LEO",
        "MAX",
        "RUTH",
        "OTTO",
        "NICK",
    ),
    "City": ("ROME", "OSLO", "LIMA", "PARIS", "CAIRO", "DELHI", "TOKYO", "BERN", "QUITO", "MIAMI"),
    "Pet": ("CAT", "DOG", "FISH", "BIRD", "HORSE", "DUCK", "RABBIT", "SNAKE"),
}
PAPER = {"white": (255, 255, 255), "cream": (250, 246, 228), "grey": (236, 236, 236)}
RECEIPT_OPS = ("price", "item_at", "more", "cheapest", "priciest", "store", "count", "sum2", "diff", "total")
FORM_OPS = ("field", "age_plus")
# questions that need arithmetic: their records count as calc, and only they can take a slip
CALC_OPS = frozenset({"sum2", "diff", "total", "age_plus"})


class DocConfig(FamilyConfig):
    """Receipts and forms. Harder: more rows, two-digit prices, more arithmetic questions."""

    OPS = RECEIPT_OPS + FORM_OPS

    min_rows: int = Field(3, ge=2, le=5)  # fewest item rows on a receipt
    max_rows: int = Field(4, ge=2, le=5)  # most item rows (5 is what fits legibly at 64 px)
    max_price: int = Field(9, ge=5, le=99)  # prices are distinct integers in [1, max_price]
    ops: dict[str, float] = Field(
        default_factory=lambda: {
            "price": 1.0,  # copy the price of an item
            "item_at": 0.5,  # which item has price p (find the row)
            "more": 0.75,  # which of two items costs more (read 2, compare)
            "cheapest": 0.4,  # item with the lowest price (read all, compare)
            "priciest": 0.4,  # item with the highest price
            "store": 0.3,  # copy the shop name
            "count": 0.3,  # number of item rows
            "sum2": 0.75,  # two prices together (read 2, add)
            "diff": 0.5,  # price difference of two items (read 2, subtract)
            "total": 0.5,  # all prices together (read all, add)
            "field": 0.75,  # forms: copy a field value (name, age, city, pet)
            "age_plus": 0.5,  # forms: the age in k years (read, add)
        }
    )

    @model_validator(mode="after")
    def _check(self) -> DocConfig:
        if self.min_rows > self.max_rows:
            raise ValueError(f"min_rows ({self.min_rows}) > max_rows ({self.max_rows})")
        return self


# ----------------------------------------------------------------------------------------------------
# generation

_Q = {
    "price": (
        "What is the price of {a}?",
        "How much does {a} cost?",
        "What does the receipt charge for {a}?",
    ),
    "item_at": (
        "Which item costs {p}?",
        "What item has a price of {p}?",
        "Which item on the receipt is priced {p}?",
    ),
    "more": (
        "Which costs more, {a} or {b}?",
        "Which is more expensive: {a} or {b}?",
        "Between {a} and {b}, which has the higher price?",
    ),
    "cheapest": (
        "Which item is the cheapest?",
        "What is the least expensive item?",
        "Which item has the lowest price?",
    ),
    "priciest": (
        "Which item is the most expensive?",
        "Which item has the highest price?",
        "What is the priciest item on the receipt?",
    ),
    "store": (
        "What is the name of the shop?",
        "Which store is this receipt from?",
        "What name is printed at the top of the receipt?",
    ),
    "count": (
        "How many items are on the receipt?",
        "How many items are listed?",
        "How many different items were bought?",
    ),
    "sum2": (
        "How much do {a} and {b} cost together?",
        "What is the combined price of {a} and {b}?",
        "What is the total for {a} and {b}?",
    ),
    "diff": (
        "How much more does {a} cost than {b}?",
        "What is the price difference between {a} and {b}?",
        "By how much is {a} more expensive than {b}?",
    ),
    "total": (
        "What is the total of all items?",
        "How much do all the items cost together?",
        "What is the sum of all prices on the receipt?",
    ),
    "age_plus": (
        "How old will the person be in {k} years?",
        "What will the age on the form be after {k} years?",
        "If {k} years pass, how old will this person be?",
    ),
}
_QF = {
    "Name": (
        "What is the name on the form?",
        "Whose name is written on the form?",
        "What name is filled in?",
    ),
    "Age": (
        "What age is written on the form?",
        "How old is the person on the form?",
        "What number is in the age field?",
    ),
    "City": (
        "What city is written on the form?",
        "Which city does the form list?",
        "What is the city on the form?",
    ),
    "Pet": (
        "What pet is listed on the form?",
        "What kind of pet does the form name?",
        "What is written in the pet field?",
    ),
}


def make(rng: random.Random, cfg: DocConfig) -> Sample:
    op = weighted(rng, cfg.ops)
    paper = rng.choice(sorted(PAPER))
    facts: dict[str, Any] = {"family": "doc", "op": op, "paper": paper, "asked": [], "k": None}
    if op in FORM_OPS:
        extra = rng.sample(["City", "Pet"], rng.randint(1, 2))
        names = ["Name", "Age"] + extra
        rng.shuffle(names)
        fields = [[f, str(rng.randint(18, 69)) if f == "Age" else rng.choice(FIELD_VALUES[f])] for f in names]
        facts.update(layout="form", title=rng.choice(TITLES), fields=fields)
        if op == "field":
            f = rng.choice(names)
            facts["asked"] = [f]
            question = pick(rng, _QF[f])
        else:
            facts["asked"] = ["Age"]
            facts["k"] = rng.randint(2, 9)
            question = pick(rng, _Q["age_plus"]).format(k=facts["k"])
    else:
        n = rng.randint(cfg.min_rows, cfg.max_rows)
        items = rng.sample(ITEMS, n)
        prices = dict(
            zip(items, rng.sample(range(1, cfg.max_price + 1), n))
        )  # distinct: every compare is decided
        facts.update(layout="receipt", store=rng.choice(STORES), items=items, prices=prices)
        a, b = rng.sample(items, 2)
        if op in ("more", "diff", "sum2"):
            if op == "diff" and prices[a] < prices[b]:
                a, b = b, a
            facts["asked"] = [a, b]
        elif op in ("price", "item_at"):
            facts["asked"] = [a]
            if op == "item_at":
                facts["asked_price"] = prices[a]
        question = pick(rng, _Q[op]).format(a=a, b=b, p=prices[a])
    return Sample(question=question, answer=solve(facts), facts=facts)


def draw(facts: dict, size: int) -> Image.Image:
    S = size
    img = Image.new("RGB", (S, S), PAPER[facts["paper"]])
    d = ImageDraw.Draw(img)
    px = font_px(S)
    f, fh = font(px), font(px + 1)
    hdr = round(12 * S / 64)
    head = facts["store"] if facts["layout"] == "receipt" else facts["title"]
    d.text((S / 2, hdr / 2), head, fill="black", font=fh, anchor="mm")
    for x in range(3, S - 3, 4):  # dashed rule under the header, as on a till slip
        d.line([x, hdr, x + 1, hdr], fill=(120, 120, 120))
    if facts["layout"] == "receipt":
        rows = [(it, str(facts["prices"][it])) for it in facts["items"]]
    else:
        rows = [(f"{k}:", v) for k, v in facts["fields"]]
    rh = min(11 * S / 64, (S - hdr - 2) / len(rows))
    for i, (left, right) in enumerate(rows):
        y = hdr + 2 + (i + 0.5) * rh
        if facts["layout"] == "receipt":
            d.text((4, y), left, fill="black", font=f, anchor="lm")
            d.text((S - 4, y), right, fill="black", font=f, anchor="rm")
        else:
            d.text((3, y), f"{left} {right}", fill="black", font=f, anchor="lm")
    return img


def describe(facts: dict) -> str:
    if facts["layout"] == "receipt":
        rows = join([f"{it} costs {facts['prices'][it]}" for it in facts["items"]])
        return (
            f"{cap(an(facts['paper']))} shop receipt headed {facts['store']} with {word(len(facts['items']))} item rows, "
            f"each with a price on the right: {rows}."
        )
    rows = join([f"{k} is {v}" for k, v in facts["fields"]])
    return f"{cap(an(facts['paper']))} form titled {facts['title']} with {word(len(facts['fields']))} fields: {rows}."


# ----------------------------------------------------------------------------------------------------
# rationales


def _reason(seen: dict, trace: Trace, rng: random.Random) -> tuple[list[str], str]:
    op = seen["op"]
    out: list[str] = []
    if seen["layout"] == "form":
        fields = dict((k, v) for k, v in seen["fields"])
        listing = fmt_list(rng, [(k, v) for k, v in seen["fields"]], style=rng.choice((1, 3, 4)))
        out.append(
            pick(
                rng,
                (
                    f"The form is titled {seen['title']} and shows {listing}.",
                    f"This is {an(seen['title'])} form with the fields {listing}.",
                    f"Reading the form: {listing}.",
                ),
            )
        )
        if op == "field":
            k = seen["asked"][0]
            out.append(
                pick(
                    rng,
                    (
                        f"The {k} field says {fields[k]}.",
                        f"Next to {k} it reads {fields[k]}.",
                        f"So the {k.lower()} is {fields[k]}.",
                    ),
                )
            )
            ans = fields[k]
        else:
            age, k = int(fields["Age"]), seen["k"]
            out.append(pick(rng, (f"The age on the form is {age}.", f"The person is {age} now.")))
            r = trace.add(age, k)
            out.append(
                pick(
                    rng,
                    (
                        f"In {k} years: {trace.steps[-1].expr()}.",
                        f"Adding {k} years gives {trace.steps[-1].expr()}.",
                    ),
                )
            )
            ans = str(r)
        out.append(conclude(rng, ans))
        return out, ans

    items, prices = seen["items"], seen["prices"]
    listing = fmt_list(rng, [(it, prices[it]) for it in items])
    n = len(items)
    out.append(
        pick(
            rng,
            (
                f"The receipt from {seen['store']} lists {word(n)} items: {listing}.",
                f"This is {an(seen['store'])} receipt. It shows {listing}.",
                f"The document is a receipt headed {seen['store']}, with {listing}.",
                f"Reading the receipt row by row: {listing}.",
            ),
        )
    )
    asked = seen["asked"]
    if op == "price":
        a = asked[0]
        out.append(
            pick(
                rng,
                (
                    f"The price next to {a} is {prices[a]}.",
                    f"{cap(a)} costs {prices[a]}.",
                    f"On the {a} row the price reads {prices[a]}.",
                ),
            )
        )
        ans = str(prices[a])
    elif op == "item_at":
        p = seen["asked_price"]
        it = next(i for i in items if prices[i] == p)
        out.append(
            pick(
                rng,
                (
                    f"The item with price {p} is {it}.",
                    f"The row showing {p} is {it}.",
                    f"The price {p} stands next to {it}.",
                ),
            )
        )
        ans = it
    elif op == "more":
        a, b = asked
        hi = a if prices[a] > prices[b] else b
        lo = b if hi == a else a
        out.append(f"{cap(a)} costs {prices[a]} and {b} costs {prices[b]}.")
        out.append(
            pick(
                rng,
                (
                    f"{prices[hi]} is more than {prices[lo]}, so {hi} costs more.",
                    f"Since {prices[hi]} > {prices[lo]}, {hi} is more expensive.",
                ),
            )
        )
        ans = hi
    elif op in ("cheapest", "priciest"):
        fn = min if op == "cheapest" else max
        m = fn(prices[i] for i in items)
        it = next(i for i in items if prices[i] == m)
        word_ = "lowest" if op == "cheapest" else "highest"
        out.append(
            pick(
                rng,
                (
                    f"The {word_} price is {m}, for {it}.",
                    f"Comparing the prices, {it} has the {word_} one at {m}.",
                ),
            )
        )
        ans = it
    elif op == "store":
        out.append(
            pick(rng, (f"The name at the top is {seen['store']}.", f"The header reads {seen['store']}."))
        )
        ans = seen["store"]
    elif op == "count":
        out.append(
            pick(rng, (f"Counting the rows gives {word(n)} items.", f"There are {n} rows with a price."))
        )
        ans = str(n)
    elif op in ("sum2", "diff"):
        a, b = asked
        pa, pb = prices[a], prices[b]
        out.append(
            pick(
                rng,
                (
                    f"{cap(a)} costs {pa} and {b} costs {pb}.",
                    f"The {a} row says {pa} and the {b} row says {pb}.",
                ),
            )
        )
        if op == "sum2":
            r = trace.add(pa, pb)
            out.append(
                pick(
                    rng,
                    (f"Together: {trace.steps[-1].expr()}.", f"Adding the prices: {trace.steps[-1].expr()}."),
                )
            )
        else:
            r = trace.sub(max(pa, pb), min(pa, pb))
            out.append(
                pick(
                    rng,
                    (
                        f"The difference is {trace.steps[-1].expr()}.",
                        f"Subtracting: {trace.steps[-1].expr()}.",
                    ),
                )
            )
        ans = str(r)
    else:  # total
        r, e = trace.total([prices[i] for i in items], rng)
        out.append(pick(rng, (f"Adding all the prices: {e}.", f"The total is {e}.")))
        ans = str(r)
    out.append(conclude(rng, ans))
    return out, ans


def _misread(facts: dict, rng: random.Random, attempt: int) -> tuple[dict, dict]:
    """Misreading a document: a wrong digit, a word read as another, a skipped or swapped row."""
    seen = copy.deepcopy(facts)
    op = facts["op"]
    if facts["layout"] == "form":
        k = facts["asked"][0]
        i = next(j for j, (f, _) in enumerate(facts["fields"]) if f == k)
        v = facts["fields"][i][1]
        if k == "Age":
            r = str(misread_number(rng, int(v), attempt))
        else:
            r = rng.choice([w for w in FIELD_VALUES[k] if clearly_different(w, v, METRIC)])
        seen["fields"][i][1] = r
        return seen, {"target": k, "true": v, "read": r}
    if op == "store":
        r = rng.choice([s for s in STORES if clearly_different(s, facts["store"], METRIC)])
        seen["store"] = r
        return seen, {"target": "store", "true": facts["store"], "read": r}
    if op == "count":  # a skipped row: the rationale lists one item fewer
        it = rng.choice(facts["items"])
        seen["items"] = [i for i in facts["items"] if i != it]
        del seen["prices"][it]
        return seen, {"target": it, "skipped_row": True}
    if op == "item_at":  # the eye slips to a neighbouring row: two prices swap places
        a = facts["asked"][0]
        j = facts["items"].index(a)
        nb = [facts["items"][x] for x in (j - 1, j + 1) if 0 <= x < len(facts["items"])]
        b = rng.choice(nb)
        seen["prices"][a], seen["prices"][b] = facts["prices"][b], facts["prices"][a]
        return seen, {"target": a, "swapped_with": b}
    relevant = facts["asked"] if facts["asked"] else facts["items"]
    for _ in range(50):
        it = rng.choice(relevant)
        r = misread_number(rng, facts["prices"][it], attempt)
        others = [facts["prices"][i] for i in facts["items"] if i != it]
        if r not in others:  # keep prices distinct so every comparison stays decided
            break
    seen["prices"][it] = r
    return seen, {"target": it, "true": facts["prices"][it], "read": r}


# solve, error_kinds and explain: the protocol doc shares with chart and geo (vlmcot.world.common)
_family = StepFamily(_reason, _misread, METRIC, CALC_OPS)
solve, error_kinds, explain = _family.solve, _family.error_kinds, _family.explain
