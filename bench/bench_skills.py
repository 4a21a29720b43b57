"""Which skill a trained model lacks: teacher-forced accuracy on the numbers of gold CoT rationales, by role.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_skills.py [--model models/sft/both]
        [--mix data/mix/both.jsonl] [--per-dataset 60] [--tag both] [--no-record]

A CoT answer chains skills: it *reads* the values off the image (the listing sentence), *copies* the
asked ones further on, *computes* (the operand it writes after an operator, the result after "="), and
restates the result after ``### Answer:``. Greedy generation mixes their failures into one accuracy; here
every number token of the gold rationale (the mix's own CoT rows, last ``--per-dataset`` of each dataset)
is scored on its own: is the model's most likely next token, given the image, the question and the gold
text so far, that number's first token? A role far below the others is the one to fix (issue #18: the
committed SFT model read 82% of listed values right but computed 31% of arithmetic results).

Roles, by the text before the number: ``final`` (after ``### Answer:``), ``arith_result`` (after
``a op b =``), ``arith_operand`` (right after + - × in an expression), ``read`` (in the sentence that
lists the most numbers among the first two: the listing or description), ``copy`` (any other number).
An expression's operands are ``arith_operand`` wherever they stand (copying them is part of computing).

These are *train* rows (the committed models saw each once); it measures what the model fits, never the
eval split. Writes bench.skills.<tag>.<dataset|all>.<role> (accuracy, and .n) into metrics/bench.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, "bench")
from common import record  # noqa: E402

NUMBER = re.compile(r"\d+")
RESULT = re.compile(r"\d+ ?[+\-×x*] ?\d+ ?= ?$")
OPERAND = re.compile(r"\d+ ?[+\-×x*] ?$")
FIRST_OPERAND = re.compile(r" ?[+\-×x*] ?\d")
SENTENCE = re.compile(r"[^.]*(?:\.(?!\d)|$)")


def listing_span(text: str) -> tuple[int, int]:
    """Character span of the sentence listing the most numbers among the first two (the reading step)."""
    spans, pos = [], 0
    for m in SENTENCE.finditer(text):
        if m.group().strip():
            spans.append((m.start(), m.end()))
        if len(spans) == 2:
            break
    if not spans:
        return (0, 0)
    return max(spans, key=lambda s: len(NUMBER.findall(text[s[0] : s[1]])))


def roles(answer: str) -> list[tuple[int, str]]:
    """(character offset, role) of every number in a gold CoT answer."""
    marker = answer.find("### Answer:")
    lo, hi = listing_span(answer if marker < 0 else answer[:marker])
    out = []
    for m in NUMBER.finditer(answer):
        s, before = m.start(), answer[: m.start()]
        if 0 <= marker < s:
            role = "final"
        elif RESULT.search(before[-24:]):
            role = "arith_result"
        elif OPERAND.search(before[-8:]) or FIRST_OPERAND.match(answer, m.end()):
            role = "arith_operand"
        elif lo <= s < hi:
            role = "read"
        else:
            role = "copy"
        out.append((s, role))
    return out


def token_starts(tok, ids: list[int]) -> list[int]:
    """Character offset at which each token of ``ids`` begins in their decoded text."""
    starts, prev = [], ""
    for i in range(len(ids)):
        starts.append(len(prev))
        prev = tok.decode(ids[: i + 1], skip_special_tokens=False)
    return starts


def score(model, processor, rows: list[dict]) -> dict[tuple[str, str], list[int]]:
    import torch
    from PIL import Image

    from vlmcot.generation import user_message

    tok = processor.tokenizer
    hits: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    for r in rows:
        question = r["conversations"][0]["value"].replace("<image>\n", "").replace("<image>", "").strip()
        answer = r["conversations"][1]["value"]
        prompt = processor.apply_chat_template(user_message(question), tokenize=False, add_generation_prompt=True)
        with Image.open(r["image"]) as im:
            img = im.convert("RGB")
        kw = dict(images=[img], return_tensors="pt", add_special_tokens=False)
        n_prompt = processor(text=[prompt], **kw)["input_ids"].shape[1]
        enc = processor(text=[prompt + answer], **kw)
        ids = enc["input_ids"][0].tolist()
        with torch.inference_mode():
            pred = model(**enc).logits[0].argmax(-1).tolist()
        starts = token_starts(tok, ids[n_prompt:])
        for offset, role in roles(answer):
            t = max(i for i, s in enumerate(starts) if s <= offset)
            if t == 0:
                continue  # a number that opens the answer has no text before it to condition on
            ok = int(pred[n_prompt + t - 1] == ids[n_prompt + t])
            for key in ((r["dataset"], role), ("all", role)):
                hits[key][0] += ok
                hits[key][1] += 1
    return hits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/sft/both")
    ap.add_argument("--mix", default="data/mix/both.jsonl")
    ap.add_argument("--per-dataset", type=int, default=60, help="last N CoT rows of each dataset")
    ap.add_argument("--tag", default="both")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from vlmcot.io import read_jsonl
    from vlmcot.models.loading import load_model_and_processor

    by: dict[str, list[dict]] = collections.defaultdict(list)
    for row in read_jsonl(args.mix):
        if row.get("kind") == "cot":
            by[row["dataset"]].append(row)
    rows = [r for rs in by.values() for r in rs[-args.per_dataset :]]
    model, processor = load_model_and_processor(args.model)
    model.eval()
    hits = score(model, processor, rows)
    figures: dict[str, float] = {}
    print(f"{args.model}: teacher-forced next-token accuracy on the numbers of {len(rows)} gold CoT rows")
    for (ds, role), (ok, n) in sorted(hits.items()):
        figures[f"{ds}.{role}"] = round(100 * ok / n, 1)
        figures[f"{ds}.{role}.n"] = n
        print(f"   {ds:12s} {role:14s} {100 * ok / n:5.1f}%  n={n}")
    if not args.no_record:
        record(f"bench.skills.{args.tag}", figures)
    print(json.dumps({k: v for k, v in figures.items() if k.startswith("all.") and not k.endswith(".n")}))


if __name__ == "__main__":
    main()
