"""Open-ended VQA sources: ChartQA (eval and train copies), DocVQA, InfoVQA, TextVQA, OCRBench.

Short answers, scored against every annotator answer (``answers``): relaxed accuracy (ChartQA),
ANLS (DocVQA, InfoVQA), VQA accuracy (TextVQA), OCRBench's substring rule. Schemas as in
/work/shared/paper/DATASETS.md.
"""

from __future__ import annotations

from typing import Any

from vlmcot.adapters.core import Adapter, Row, register
from vlmcot.adapters.text import BadRow, as_list, clean_answers, majority_answer, numeric_or_short


def _answers(adapter: Adapter, row: Row, role: str = "answers") -> list[str]:
    answers = clean_answers(as_list(adapter.get(row, role), role))
    if not answers:
        raise BadRow("missing_answer", "no non-empty answer (labels hidden in this split?)")
    return answers


def _question(adapter: Adapter, row: Row) -> str:
    q = adapter.get(row, "question")
    if not isinstance(q, str) or not q.strip():
        raise BadRow("missing_question", "empty question")
    return q.strip()


def _meta(adapter: Adapter, row: Row, roles: tuple[str, ...]) -> dict[str, Any] | None:
    meta = {r: adapter.get(row, r) for r in roles if adapter.get(row, r) is not None}
    return meta or None


@register
class ChartQA(Adapter):
    name = "chartqa"
    description = "ChartQA test (human + augmented), lmms-eval copy: question/answer columns"
    dataset = "chartqa"
    hub_ids = ("lmms-lab/ChartQA",)
    split = "test"
    metric = "relaxed_accuracy"
    fields = {"question": "question", "answer": "answer", "image": "image", "type": "type"}
    optional = frozenset({"type"})

    def convert(self, row: Row) -> dict[str, Any]:
        answers = _answers(self, row, "answer")
        return {"question": _question(self, row), "answer": answers[0], "answers": answers,
                "qtype": numeric_or_short(answers[0]), "meta": _meta(self, row, ("type",))}


@register
class ChartQATrain(Adapter):
    name = "chartqa_train"
    description = "ChartQA train/val/test, HuggingFaceM4 copy: query/label columns"
    dataset = "chartqa"
    hub_ids = ("HuggingFaceM4/ChartQA",)
    split = "train"
    metric = "relaxed_accuracy"
    fields = {"question": "query", "answers": "label", "image": "image", "source": "human_or_machine"}
    optional = frozenset({"source"})

    def convert(self, row: Row) -> dict[str, Any]:
        answers = _answers(self, row)
        source = self.get(row, "source")
        meta = {"source": self.class_name("source", source)} if source is not None else None
        return {"question": _question(self, row), "answer": answers[0], "answers": answers,
                "qtype": numeric_or_short(answers[0]), "meta": meta}


@register
class DocVQA(Adapter):
    name = "docvqa"
    description = "DocVQA, lmms-eval copy (config DocVQA); train via HuggingFaceM4/DocumentVQA"
    dataset = "docvqa"
    hub_ids = ("lmms-lab/DocVQA", "HuggingFaceM4/DocumentVQA")
    config = "DocVQA"
    hub_configs = {"HuggingFaceM4/DocumentVQA": None}
    split = "validation"
    metric = "anls"
    key_role = "id"
    fields = {"id": "questionId", "question": "question", "answers": "answers", "image": "image",
              "question_types": "question_types", "doc_id": "docId"}
    optional = frozenset({"question_types", "doc_id"})
    meta_roles: tuple[str, ...] = ("question_types", "doc_id")

    def convert(self, row: Row) -> dict[str, Any]:
        answers = _answers(self, row)
        return {"question": _question(self, row), "answer": answers[0], "answers": answers,
                "qtype": "short", "meta": _meta(self, row, self.meta_roles)}


@register
class InfoVQA(DocVQA):
    name = "infovqa"
    description = "InfographicVQA, lmms-eval copy (lmms-lab/DocVQA config InfographicVQA)"
    dataset = "infovqa"
    hub_ids = ("lmms-lab/DocVQA",)
    config = "InfographicVQA"
    hub_configs = {}
    fields = {"id": "questionId", "question": "question", "answers": "answers", "image": "image",
              "answer_type": "answer_type", "operation": "operation/reasoning"}
    optional = frozenset({"answer_type", "operation"})
    meta_roles = ("answer_type", "operation")


@register
class TextVQA(Adapter):
    name = "textvqa"
    description = "TextVQA, lmms-eval copy: 10 annotator answers per question"
    dataset = "textvqa"
    hub_ids = ("lmms-lab/textvqa",)
    split = "validation"
    metric = "vqa_accuracy"
    key_role = "id"
    fields = {"id": "question_id", "question": "question", "answers": "answers", "image": "image",
              "image_id": "image_id"}
    optional = frozenset({"image_id"})

    def convert(self, row: Row) -> dict[str, Any]:
        answers = _answers(self, row)
        # The record's single answer is the annotators' majority; scoring uses all ten.
        return {"question": _question(self, row), "answer": majority_answer(answers),
                "answers": answers, "qtype": "short", "meta": _meta(self, row, ("image_id",))}


# OCRBench's handwritten-math category is scored case-sensitively with spaces removed.
HMER_TYPE = "Handwritten Mathematical Expression Recognition"


@register
class OCRBench(Adapter):
    name = "ocrbench"
    description = "OCRBench (1,000 questions, 10 categories); any listed answer counts"
    dataset = "ocrbench"
    hub_ids = ("echo840/OCRBench",)
    split = "test"
    metric = "ocrbench"
    fields = {"question": "question", "answers": "answer", "image": "image",
              "source": "dataset", "question_type": "question_type"}
    optional = frozenset({"source"})

    def convert(self, row: Row) -> dict[str, Any]:
        answers = _answers(self, row)
        qtype_name = str(self.get(row, "question_type") or "")
        source = self.get(row, "source")
        hmer = qtype_name.strip().lower() == HMER_TYPE.lower() or source == "HME100k"
        meta = {"question_type": qtype_name, **({"source": source} if source else {})}
        return {"question": _question(self, row), "answer": answers[0], "answers": answers,
                "qtype": "short", "metric": "ocrbench_hmer" if hmer else "ocrbench", "meta": meta}
