"""synth_sci: AI2D/ScienceQA/A-OKVQA-like multiple choice over food-chain diagrams.

A chain of 3-4 named organisms in boxes joined by arrows that point from the food to the eater
(AI2D's convention); the chain is drawn top-down or bottom-up, so the arrows must be read. Some
questions need only the diagram (what does X eat?), some the diagram plus ecology (if X disappeared,
which population would grow?), some the fixed knowledge table below (which of these can fly?).
Four options; the answer is a letter. Distractors are the other organisms in the picture first
(the plausible mistakes: reading an arrow backwards, picking a neighbour), then same-level organisms
from the table.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from PIL import Image, ImageDraw
from pydantic import Field, model_validator

from vlmcot.records import LETTERS
from vlmcot.world.common import (
    Explanation,
    FamilyConfig,
    Sample,
    font,
    font_px,
    join,
    pick,
    weighted,
    word,
)

DATASET = "synth_sci"
METRIC = "mc_accuracy"
QTYPE = "multiple_choice"
# questions that need arithmetic (a population change followed along the chain): their records count as calc
CALC_OPS = frozenset({"increase", "decrease"})

# Trophic levels per habitat: a chain takes one organism per level (a 3-chain skips level 2 or 3).
HABITATS = {
    "land": (
        ("grass", "seeds", "leaves", "corn"),
        ("mouse", "snail", "hare", "moth"),
        ("frog", "snake", "lizard", "toad"),
        ("hawk", "owl", "fox", "eagle"),
    ),
    "water": (("algae", "kelp"), ("krill", "shrimp"), ("fish", "crab"), ("shark", "seal")),
}
LEVELS = tuple(tuple(o for h in HABITATS.values() for o in h[lv]) for lv in range(4))
# The knowledge table a model has to learn (it is never drawn).
CAN_FLY = {"moth", "hawk", "owl", "eagle"}
LIVES_IN_WATER = {"algae", "kelp", "krill", "shrimp", "fish", "crab", "shark", "seal"}
TRAITS = {"fly": CAN_FLY, "water": LIVES_IN_WATER}
N_CHOICES = 4


class SciConfig(FamilyConfig):
    """Food chains. Harder: longer chains, more flipped diagrams, more two-step/knowledge questions."""

    OPS = ("eats", "eaten_by", "producer", "top", "increase", "decrease", "trait", "count")

    min_chain: int = Field(3, ge=3, le=4)  # fewest organisms in a chain
    max_chain: int = Field(4, ge=3, le=4)  # most organisms (4 is what fits legibly at 64 px)
    flip_prob: float = Field(0.5, ge=0, le=1)  # chance the producer is drawn at the bottom (arrows up)
    ops: dict[str, float] = Field(
        default_factory=lambda: {
            "eats": 1.0,  # what X eats (read one arrow)
            "eaten_by": 1.0,  # what eats X (read one arrow)
            "producer": 0.5,  # which is the producer (knowledge: plants make food)
            "top": 0.5,  # the top predator (follow the chain to its end)
            "increase": 0.75,  # if X disappeared, which population grows (arrow + ecology)
            "decrease": 0.75,  # if X disappeared, which population shrinks (arrow + ecology)
            "trait": 0.5,  # which of these can fly / lives in water (knowledge table)
            "count": 0.5,  # how many animals are in the chain (count, exclude the plant)
        }
    )

    @model_validator(mode="after")
    def _check(self) -> SciConfig:
        if self.min_chain > self.max_chain:
            raise ValueError(f"min_chain ({self.min_chain}) > max_chain ({self.max_chain})")
        return self


# ----------------------------------------------------------------------------------------------------
# generation


def _level_of(name: str) -> int:
    return next(i for i, lv in enumerate(LEVELS) if name in lv)


def _op_ok(op: str, chain: list[str], asked: str | None) -> bool:
    if op in ("eats", "increase"):
        return asked is not None and chain.index(asked) > 0
    if op in ("eaten_by", "decrease"):
        return asked is not None and chain.index(asked) < len(chain) - 1
    return True


_Q = {
    "eats": (
        "What does the {x} eat in this food chain?",
        "According to the diagram, what is the food of the {x}?",
        "Which organism does the {x} feed on?",
    ),
    "eaten_by": (
        "Which organism eats the {x}?",
        "In this food chain, what eats the {x}?",
        "Which organism feeds on the {x}?",
    ),
    "producer": (
        "Which organism is the producer in this food chain?",
        "Which organism makes its own food?",
        "Which organism is at the start of this food chain?",
    ),
    "top": (
        "Which organism is the top predator in this food chain?",
        "Which organism is at the end of this food chain?",
        "Which organism is not eaten by anything in the diagram?",
    ),
    "increase": (
        "If the {x} disappeared, which population would most likely increase?",
        "Suppose all the {x}s were removed. Which organism would become more common?",
        "Which population would grow if the {x} died out?",
    ),
    "decrease": (
        "If the {x} disappeared, which population would most likely decrease?",
        "Suppose all the {x}s were removed. Which animal would lose its food?",
        "Which population would shrink if the {x} died out?",
    ),
    "trait": {
        "fly": ("Which of these organisms can fly?", "Which organism in the options is able to fly?"),
        "water": (
            "Which of these organisms lives in water?",
            "Which organism in the options is found in water?",
        ),
    },
    "count": (
        "How many animals are in this food chain?",
        "How many of the organisms in the diagram are animals?",
        "Count the animals in this food chain.",
    ),
}


def _correct_text(rng: random.Random, op: str, chain: list[str], asked: str | None, trait: str | None) -> str:
    if op in ("eats", "increase"):
        return chain[chain.index(asked) - 1]
    if op in ("eaten_by", "decrease"):
        return chain[chain.index(asked) + 1]
    if op == "producer":
        return chain[0]
    if op == "top":
        return chain[-1]
    if (
        op == "trait"
    ):  # the one organism in the picture with the trait if there is exactly one, else one from the table
        have = [o for o in chain if o in TRAITS[trait]]
        return have[0] if len(have) == 1 else rng.choice(sorted(TRAITS[trait] - set(chain)))
    return str(len(chain) - 1)  # count: every organism but the producer is an animal


def _choices(rng: random.Random, op: str, chain: list[str], correct: str, trait: str | None) -> list[str]:
    if op == "count":
        n = int(correct)
        pool = [str(k) for k in range(max(1, n - 2), n + 4) if k != n]
        opts = [str(len(chain))] + [
            p for p in pool if p != str(len(chain))
        ]  # counting the plant too is the classic slip
        distract = opts[:1] + rng.sample(opts[1:], N_CHOICES - 2)
    else:
        ok = (lambda o: o not in TRAITS[trait]) if op == "trait" else (lambda o: True)
        in_chain = [o for o in chain if o != correct and ok(o)]
        distract = rng.sample(in_chain, min(len(in_chain), N_CHOICES - 1))
        lv = LEVELS[_level_of(correct)]
        pool = [
            o for o in lv + tuple(o for L in LEVELS for o in L) if o not in chain and o != correct and ok(o)
        ]
        rng.shuffle(pool)  # shuffled, then same-level organisms moved first (stable sort)
        pool.sort(key=lambda o: o not in lv)
        pool = list(dict.fromkeys(pool))  # no duplicates
        distract += pool[: N_CHOICES - 1 - len(distract)]
    opts = distract + [correct]
    rng.shuffle(opts)
    return opts


def make(rng: random.Random, cfg: SciConfig) -> Sample:
    op = weighted(rng, cfg.ops)
    while True:
        n = rng.randint(cfg.min_chain, cfg.max_chain)
        habitat = HABITATS[rng.choice(sorted(HABITATS))]
        levels = [0, 1, 2, 3] if n == 4 else [0, 1, rng.choice((2, 3))]
        chain = [rng.choice(habitat[lv]) for lv in levels]
        asked = rng.choice(chain) if op in ("eats", "eaten_by", "increase", "decrease") else None
        if _op_ok(op, chain, asked):
            break
    trait = rng.choice(sorted(TRAITS)) if op == "trait" else None
    flipped = rng.random() < cfg.flip_prob
    correct = _correct_text(rng, op, chain, asked, trait)
    choices = _choices(rng, op, chain, correct, trait)
    qs = _Q["trait"][trait] if op == "trait" else _Q[op]
    question = pick(rng, qs).format(x=asked)
    facts: dict[str, Any] = {
        "family": "sci",
        "chain": chain,  # producer first; arrows point from food to eater
        "flipped": flipped,  # True: producer drawn at the bottom, arrows point up
        "op": op,
        "asked": asked,
        "trait": trait,
        "choices": choices,
        "correct": correct,
        "knowledge": {
            o: sorted(t for t, s in TRAITS.items() if o in s)
            for o in sorted(set(chain) | set(choices))
            if not o.isdigit()
        },
    }
    return Sample(question=question, answer=solve(facts), facts=facts, choices=choices)


def draw(facts: dict, size: int) -> Image.Image:
    S = size
    img = Image.new("RGB", (S, S), "white")
    d = ImageDraw.Draw(img)
    px = font_px(S)
    f = font(px)
    chain = facts["chain"]
    order = chain[::-1] if facts["flipped"] else chain  # top of the image first
    n = len(order)
    bh = round(11 * S / 64)
    gap = (S - n * bh) / (n - 1)
    x0, x1 = round(8 * S / 64), S - round(8 * S / 64)
    cx = S / 2
    for i, name in enumerate(order):
        y = round(i * (bh + gap))
        d.rounded_rectangle([x0, y, x1, y + bh - 1], radius=3, fill=(228, 242, 228), outline="black")
        d.text((cx, y + bh / 2), name, fill="black", font=f, anchor="mm")
        if i < n - 1:
            ya, yb = y + bh, round((i + 1) * (bh + gap)) - 1
            d.line([cx, ya, cx, yb], fill="black")
            hw = max(2, round(3 * S / 64))
            if facts["flipped"]:  # arrow points up, to the eater drawn above
                d.polygon([(cx - hw, ya + hw), (cx + hw, ya + hw), (cx, ya)], fill="black")
            else:
                d.polygon([(cx - hw, yb - hw), (cx + hw, yb - hw), (cx, yb)], fill="black")
    return img


def _arrow_list(chain: list[str]) -> str:
    return " → ".join(chain)


def describe(facts: dict) -> str:
    chain = facts["chain"]
    where = (
        "at the bottom, with arrows pointing up"
        if facts["flipped"]
        else "at the top, with arrows pointing down"
    )
    links = join([f"the {a} is eaten by the {b}" for a, b in zip(chain, chain[1:])])
    return f"A food chain diagram of {word(len(chain))} boxes, the {chain[0]} {where}: {links}."


# ----------------------------------------------------------------------------------------------------
# rationales


def _reason(
    facts: dict, chain_read: list[str], rng: random.Random, wrong_fact: str | None = None
) -> tuple[list[str], str]:
    """Reason over the chain as *read* (reversed when the arrows were misread)."""
    op, asked, trait, choices = facts["op"], facts["asked"], facts["trait"], facts["choices"]
    out: list[str] = []
    out.append(
        pick(
            rng,
            (
                f"The diagram is a food chain: {_arrow_list(chain_read)}, with each arrow pointing from the food to the eater.",
                f"Following the arrows, energy passes {_arrow_list(chain_read)}.",
                f"The boxes are linked by arrows from food to eater: {_arrow_list(chain_read)}.",
            ),
        )
    )
    if op in ("eats", "increase"):
        i = chain_read.index(asked)
        prey = chain_read[i - 1] if i > 0 else None
        if op == "eats":
            out.append(
                pick(
                    rng,
                    (
                        f"The arrow into the {asked} comes from the {prey}, so the {asked} eats the {prey}.",
                        f"The {prey} points to the {asked}, which means the {asked} feeds on the {prey}.",
                    ),
                )
            )
        else:
            out.append(f"The {asked} eats the {prey}.")
            out.append(
                pick(
                    rng,
                    (
                        f"Without the {asked}, nothing would eat the {prey}, so the {prey} population would grow.",
                        f"If the {asked} disappeared, the {prey} would lose its predator and increase.",
                    ),
                )
            )
        pick_text = prey
    elif op in ("eaten_by", "decrease"):
        i = chain_read.index(asked)
        pred = chain_read[i + 1] if i + 1 < len(chain_read) else None
        if op == "eaten_by":
            out.append(
                pick(
                    rng,
                    (
                        f"The arrow from the {asked} points to the {pred}, so the {pred} eats the {asked}.",
                        f"The {asked} is food for the {pred}.",
                    ),
                )
            )
        else:
            out.append(f"The {pred} eats the {asked}.")
            out.append(
                pick(
                    rng,
                    (
                        f"Without the {asked}, the {pred} would lose its food and decrease.",
                        f"If the {asked} disappeared, the {pred} would have less to eat, so its population would shrink.",
                    ),
                )
            )
        pick_text = pred
    elif op == "producer":
        out.append(
            pick(
                rng,
                (
                    f"The chain starts with the {chain_read[0]}, which makes its own food, so it is the producer.",
                    f"The first link, the {chain_read[0]}, is the producer.",
                ),
            )
        )
        pick_text = chain_read[0]
    elif op == "top":
        out.append(
            pick(
                rng,
                (
                    f"The chain ends at the {chain_read[-1]}; nothing eats it, so it is the top predator.",
                    f"No arrow leaves the {chain_read[-1]}, so it is at the top.",
                ),
            )
        )
        pick_text = chain_read[-1]
    elif op == "trait":
        verb = "can fly" if trait == "fly" else "lives in water"
        sel = wrong_fact or next((o for o in choices if o in TRAITS[trait]), None)
        others = [o for o in choices if o != sel]
        out.append(
            pick(
                rng,
                (
                    f"Of the options, the {sel} {verb}; the {join(others, 'and the')} do not.",
                    f"Among {join(choices)}, only the {sel} {verb}.",
                ),
            )
        )
        pick_text = sel
    else:  # count
        animals = chain_read[1:] if wrong_fact is None else chain_read
        if wrong_fact is None:
            out.append(
                pick(
                    rng,
                    (
                        f"The {chain_read[0]} is a plant, so the animals are the {join(animals, 'and the')}.",
                        f"Leaving out the {chain_read[0]}, which is a plant, the animals are {join(animals)}.",
                    ),
                )
            )
        else:
            out.append(f"Counting every box: {join(animals)}.")
        out.append(f"That is {word(len(animals))} animals.")
        pick_text = str(len(animals))
    if pick_text is None or pick_text not in choices:
        raise ValueError("the misread chain leads to no option")
    letter = LETTERS[choices.index(pick_text)]
    out.append(
        pick(
            rng,
            (
                f"Among the options, {pick_text} is {letter}.",
                f"That is option {letter}, {pick_text}.",
                f"The matching choice is {letter} ({pick_text}).",
            ),
        )
    )
    return out, letter


def solve(facts: dict) -> str:
    return LETTERS[facts["choices"].index(facts["correct"])]


def error_kinds(facts: dict) -> list[str]:
    """'reversed': the arrows read backwards; 'confusion': a wrong fact (a plant counted as an
    animal, a trait given to the wrong organism)."""
    op = facts["op"]
    if op in ("trait", "count"):
        return ["confusion"]
    kinds = []
    rev = facts["chain"][::-1]
    try:
        _, ans = _reason(facts, rev, random.Random(0))
        if ans != solve(facts):
            kinds.append("reversed")
    except ValueError:
        pass
    return kinds or ["confusion"]


def explain(facts: dict, rng: random.Random, error: str | None = None) -> Explanation:
    truth = solve(facts)
    chain = facts["chain"]
    if error is None:
        sentences, ans = _reason(facts, chain, rng)
        return Explanation(" ".join(sentences), ans)
    if error == "reversed":
        sentences, ans = _reason(facts, chain[::-1], rng)
        if ans != truth:
            return Explanation(" ".join(sentences), ans, error, {"read_chain": chain[::-1]})
    elif error == "confusion":
        op = facts["op"]
        if op == "trait":
            wrong = rng.choice([o for o in facts["choices"] if o != facts["correct"]])
            sentences, ans = _reason(facts, chain, rng, wrong_fact=wrong)
            return Explanation(" ".join(sentences), ans, error, {"claimed": wrong})
        if op == "count" and str(len(chain)) in facts["choices"]:
            sentences, ans = _reason(facts, chain, rng, wrong_fact="plant_as_animal")
            return Explanation(" ".join(sentences), ans, error, {"claimed": "plant_as_animal"})
        # otherwise: the teacher misreads which box is which - a neighbour's name in the asked slot
        seen = copy.deepcopy(facts)
        for _ in range(40):
            alt = list(chain)
            i, j = rng.sample(range(len(chain)), 2)
            alt[i], alt[j] = alt[j], alt[i]
            try:
                sentences, ans = _reason(seen, alt, rng)
            except ValueError:
                continue
            if ans != truth:
                return Explanation(" ".join(sentences), ans, error, {"read_chain": alt})
    raise ValueError(f"could not inject a {error!r} error that changes the answer")
