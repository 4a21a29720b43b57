"""Training data of the controls that DPO must beat (the careful researcher's baselines).

- Rejection-sampling fine-tuning (RFT, as in STaR / Yuan et al. 2023): SFT on the model's *own*
  correct samples. :func:`rft_conversations` turns sampled candidates into LLaVA conversation rows,
  at most ``max_per_question`` distinct correct responses per question, chosen at random but seeded
  per question (so the rows do not depend on input order).
- Continued SFT needs no new data (the "both" mix again): the control stage reuses the mix file.

Both then go through the SFT engineer's :func:`vlmcot.training.sft.train_sft`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from vlmcot.pairing import first_words, question_rng
from vlmcot.prompts import build_prompt
from vlmcot.records import Candidate, VQARecord


def rft_conversations(
    candidates: Iterable[Candidate],
    records: Mapping[str, VQARecord],
    *,
    max_per_question: int,
    seed: int,
    prompt_style: str,
    truncate_words: int | None,
    truncate_unit: str,
) -> tuple[list[dict], dict[str, int]]:
    """(LLaVA rows sorted by id, counts). A question whose record is missing is counted, never fatal.

    Every setting is required (the ``control`` section's ``rft_*`` keys, ``seed`` and ``prompt_style``)."""
    if max_per_question < 1:
        raise ValueError(f"max_per_question must be >= 1, got {max_per_question}")
    first_words("", truncate_words, truncate_unit)  # validates both before any work
    by_q: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_q[c.id].append(c)
    rows: list[dict] = []
    stats = {"questions": 0, "questions_with_correct": 0, "rows": 0, "no_record": 0}
    for qid in sorted(by_q):
        stats["questions"] += 1
        rec = records.get(qid)
        if rec is None:
            stats["no_record"] += 1
            continue
        correct = sorted((c for c in by_q[qid] if c.correct), key=lambda c: c.sample)
        if not correct:
            continue
        stats["questions_with_correct"] += 1
        rng = question_rng(seed, qid)
        rng.shuffle(correct)
        seen: set[str] = set()
        prompt = "<image>\n" + build_prompt(rec, "cot", prompt_style)
        for c in correct:
            text = first_words(c.text, truncate_words, truncate_unit).strip()
            if not text or text in seen:
                continue
            seen.add(text)
            rows.append({"id": f"{qid}-rft{len(seen) - 1}", "image": rec.image, "dataset": rec.dataset, "kind": "rft",
                         "conversations": [{"from": "human", "value": prompt}, {"from": "gpt", "value": text}]})
            if len(seen) >= max_per_question:
                break
    rows.sort(key=lambda r: r["id"])
    stats["rows"] = len(rows)
    return rows, stats
