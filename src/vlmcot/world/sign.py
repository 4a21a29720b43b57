"""synth_sign: TextVQA-like scene text - a coloured sign on a pole with one word on it.

Questions: what the sign says, what colour it is, how many letters the word has. Scored like
TextVQA: VQA accuracy over 10 annotator answers, which vary the way real annotators do (case,
"open sign" instead of "open", the odd typo, a neighbouring colour name). Off by default.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from PIL import Image, ImageDraw
from pydantic import Field

from vlmcot.world.common import (
    COLORS,
    Explanation,
    FamilyConfig,
    Sample,
    an,
    cap,
    clearly_different,
    conclude,
    font,
    font_px,
    pick,
    weighted,
    word,
)

DATASET = "synth_sign"
METRIC = "vqa_accuracy"
QTYPE = "short"
CALC_OPS: frozenset[str] = frozenset()  # no question needs arithmetic

WORDS = ("OPEN", "EXIT", "STOP", "SALE", "WIFI", "HOTEL", "TAXI", "BANK", "MENU", "GIFTS", "ZOO", "QUIET")
SIGN_COLORS = ("red", "blue", "green", "orange", "purple", "black")
# what an annotator who hesitates over a colour might write instead
NEAR_COLOR = {
    "red": "orange",
    "blue": "purple",
    "green": "teal",
    "orange": "red",
    "purple": "blue",
    "black": "gray",
}
SKY = {"day": (200, 225, 245), "dusk": (235, 215, 200), "fog": (225, 225, 225)}


class SignConfig(FamilyConfig):
    """Signs with one word. Harder: noisier annotators (lower ceiling), more letter-count questions."""

    OPS = ("text", "color", "letters")

    enabled: bool = False  # a fifth dataset, off in the embedded default to keep it small
    n_annotators: int = Field(10, ge=1, le=10)  # annotator answers per question (TextVQA has 10)
    annotator_noise: float = Field(0.2, ge=0, le=1)  # chance an annotator deviates from the canonical answer
    ops: dict[str, float] = Field(
        default_factory=lambda: {
            "text": 1.0,  # what the sign says (read)
            "color": 0.5,  # the sign's colour (perceive)
            "letters": 0.5,  # letters in the word (read, count)
        }
    )


def _typo(rng: random.Random, w: str) -> str:
    if len(w) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(w) - 1)
        return w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    i = rng.randrange(len(w))
    return w[:i] + w[i + 1 :]


def _annotators(rng: random.Random, cfg: SignConfig, op: str, canonical: str) -> list[str]:
    out = []
    for _ in range(cfg.n_annotators):
        if rng.random() >= cfg.annotator_noise:
            out.append(
                pick(rng, (canonical, canonical.upper(), canonical.capitalize()))
                if op == "text"
                else canonical
            )
            continue
        if op == "text":
            out.append(pick(rng, (f"{canonical} sign", _typo(rng, canonical), f"the word {canonical}")))
        elif op == "color":
            out.append(pick(rng, (NEAR_COLOR[canonical], f"{canonical} and white", f"dark {canonical}")))
        else:
            out.append(pick(rng, (word(int(canonical)), str(int(canonical) + 1))))
    return out


def make(rng: random.Random, cfg: SignConfig) -> Sample:
    op = weighted(rng, cfg.ops)
    facts: dict[str, Any] = {
        "family": "sign",
        "word": rng.choice(WORDS),
        "color": rng.choice(SIGN_COLORS),
        "shape": rng.choice(("rectangle", "rounded")),
        "sky": rng.choice(sorted(SKY)),
        "op": op,
    }
    q = {
        "text": (
            "What does the sign say?",
            "What word is written on the sign?",
            "What is written on this sign?",
        ),
        "color": (
            "What color is the sign?",
            "What is the color of the sign?",
            "Which color is the sign painted?",
        ),
        "letters": (
            "How many letters are on the sign?",
            "How many letters does the word on the sign have?",
            "Count the letters on the sign.",
        ),
    }[op]
    question = pick(rng, q)  # before the annotators: the rng's order fixes every record's bytes
    answer = solve(facts)
    return Sample(question=question, answer=answer, facts=facts, answers=_annotators(rng, cfg, op, answer))


def draw(facts: dict, size: int) -> Image.Image:
    S = size
    img = Image.new("RGB", (S, S), SKY[facts["sky"]])
    d = ImageDraw.Draw(img)
    d.rectangle([0, round(S * 0.82), S, S], fill=(120, 160, 90))  # ground
    d.rectangle(
        [round(S * 0.47), round(S * 0.5), round(S * 0.53), round(S * 0.9)], fill=(110, 110, 110)
    )  # pole
    px = font_px(S, 13)
    box = [round(S * 0.06), round(S * 0.2), round(S * 0.94), round(S * 0.55)]
    rgb = COLORS[facts["color"]]
    if facts["shape"] == "rounded":
        d.rounded_rectangle(box, radius=round(S * 0.08), fill=rgb, outline="white", width=1)
    else:
        d.rectangle(box, fill=rgb, outline="white", width=1)
    d.text(
        ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2),
        facts["word"],
        fill="white",
        font=font(px),
        anchor="mm",
    )
    return img


def describe(facts: dict) -> str:
    return (
        f"{cap(an(facts['color']))} {facts['shape']} sign on a grey pole against a {facts['sky']} sky. "
        f"It says {facts['word']} in white capital letters."
    )


def _reason(seen: dict, rng: random.Random) -> tuple[list[str], str]:
    w, c, op = seen["word"], seen["color"], seen["op"]
    out = [
        pick(
            rng,
            (
                f"The image shows {an(c)} sign on a pole with white capital letters that spell {w}.",
                f"There is {an(c)} {seen['shape']} sign; its white letters read {w}.",
                f"{cap(an(c))} sign stands on a pole, and the word on it is {w}.",
            ),
        )
    ]
    if op == "text":
        out.append(
            pick(
                rng,
                ("Text answers are written in lower case.", f"Written in lower case, that is {w.lower()}."),
            )
        )
        ans = w.lower()
    elif op == "color":
        out.append(pick(rng, (f"The background of the sign is {c}.", f"The sign itself is painted {c}.")))
        ans = c
    else:
        out.append(pick(rng, (f"Spelling it out: {'-'.join(w)}.", f"The letters are {' '.join(w)}.")))
        out.append(f"That is {word(len(w))} letters.")
        ans = str(len(w))
    out.append(conclude(rng, ans))
    return out, ans


def solve(facts: dict) -> str:
    return _reason(facts, random.Random(0))[1]


def error_kinds(facts: dict) -> list[str]:
    return ["misread"]


def explain(facts: dict, rng: random.Random, error: str | None = None) -> Explanation:
    if error is None:
        s, a = _reason(facts, rng)
        return Explanation(" ".join(s), a)
    if error != "misread":
        raise ValueError(f"could not inject a {error!r} error that changes the answer")
    seen = copy.deepcopy(facts)
    truth = solve(facts)
    if facts["op"] == "color":
        seen["color"] = (
            NEAR_COLOR[facts["color"]]
            if rng.random() < 0.7
            else rng.choice([c for c in SIGN_COLORS if c != facts["color"]])
        )
        detail = {"target": "color", "true": facts["color"], "read": seen["color"]}
    else:
        ok = [
            w
            for w in WORDS
            if clearly_different(w, facts["word"], METRIC)
            and (facts["op"] == "text" or len(w) != len(facts["word"]))
        ]
        seen["word"] = rng.choice(ok)
        detail = {"target": "word", "true": facts["word"], "read": seen["word"]}
    s, a = _reason(seen, rng)
    if not clearly_different(a, truth, METRIC):
        raise ValueError("misread did not change the answer")
    return Explanation(" ".join(s), a, "misread", detail)
