"""Math sources with a decoded-image column: MathVision (MATH-V) and MathVista.

Both keep the image twice: ``image`` is a path string, ``decoded_image`` holds the pixels. Both mix
multiple-choice and free-form questions, so qtype and metric are set per row. MathVision has no
train split: training on it contaminates its evaluation (DATASETS.md).
"""

from __future__ import annotations

from typing import Any

from vlmcot.adapters.core import Adapter, Row, register
from vlmcot.adapters.text import (
    BadRow,
    as_list,
    check_choices,
    check_letter,
    is_missing,
    letter_for_text,
    neutralise_image_tags,
    numeric_or_short,
)


def _question(adapter: Adapter, row: Row) -> str:
    q = adapter.get(row, "question")
    if not isinstance(q, str) or not q.strip():
        raise BadRow("missing_question", "empty question")
    return neutralise_image_tags(q.strip())


def _answer(adapter: Adapter, row: Row) -> str:
    a = adapter.get(row, "answer")
    if is_missing(a):
        raise BadRow("missing_answer", "no answer (labels withheld in this split?)")
    return str(a).strip()


@register
class MathVision(Adapter):
    name = "mathvision"
    description = "MathVision (MATH-V) test/testmini; options A-E or free-form; no train split"
    dataset = "mathvision"
    hub_ids = ("MathLLMs/MathVision",)
    split = "test"
    metric = "exact_match"
    key_role = "id"
    fields = {"id": "id", "question": "question", "choices": "options", "answer": "answer",
              "image": "decoded_image", "solution": "solution", "level": "level", "subject": "subject"}
    optional = frozenset({"solution", "level", "subject"})

    def convert(self, row: Row) -> dict[str, Any]:
        question, answer = _question(self, row), _answer(self, row)
        meta = {r: self.get(row, r) for r in ("level", "subject", "solution")
                if not is_missing(self.get(row, r))}
        options = as_list(self.get(row, "choices"), "options")
        if options:
            choices = check_choices([neutralise_image_tags(str(o)) for o in options])
            return {"question": question, "choices": choices,
                    "answer": check_letter(answer, len(choices)), "qtype": "multiple_choice",
                    "metric": "mc_accuracy", "meta": meta or None}
        return {"question": question, "answer": answer, "answers": [answer],
                "qtype": numeric_or_short(answer), "meta": meta or None}


@register
class MathVista(Adapter):
    name = "mathvista"
    description = "MathVista testmini (1,000); MC answers are the option text, turned into a letter"
    dataset = "mathvista"
    hub_ids = ("AI4Math/MathVista",)
    split = "testmini"
    metric = "mathvista"
    key_role = "id"
    fields = {"id": "pid", "question": "question", "choices": "choices", "answer": "answer",
              "image": "decoded_image", "question_type": "question_type",
              "answer_type": "answer_type", "unit": "unit", "precision": "precision",
              "query": "query", "metadata": "metadata"}
    optional = frozenset({"unit", "precision", "query", "metadata"})

    def convert(self, row: Row) -> dict[str, Any]:
        question, answer = _question(self, row), _answer(self, row)
        qt, at = self.get(row, "question_type"), self.get(row, "answer_type")
        # MathVista's scorer needs these: the answer's type, unit and float precision; `query` is
        # the benchmark's own full prompt (with its answer-format hint) for styles that want it.
        meta: dict[str, Any] = {"question_type": qt, "answer_type": at}
        for r in ("unit", "precision", "query"):
            v = self.get(row, r)
            if not is_missing(v):
                meta[r] = v
        md = self.get(row, "metadata")
        if isinstance(md, dict):
            meta.update({k: md[k] for k in ("category", "task", "skills", "source") if md.get(k)})
        options = as_list(self.get(row, "choices"), "choices")
        if qt == "multi_choice" or options:
            choices = check_choices(options)
            meta["answer_text"] = answer
            return {"question": question, "choices": choices,
                    "answer": letter_for_text(answer, choices), "qtype": "multiple_choice",
                    "meta": meta}
        qtype = "numeric" if at in ("integer", "float") else "short"
        return {"question": question, "answer": answer, "answers": [answer], "qtype": qtype,
                "meta": meta}
