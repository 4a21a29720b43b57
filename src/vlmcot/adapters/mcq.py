"""Multiple-choice sources: A-OKVQA, AI2D, ScienceQA, MMStar, MMMU.

Records carry ``choices`` (option texts in letter order) and ``answer`` as the letter; each source
encodes the correct option differently (an index int, an index string, a letter, options inside
the question text, options as a Python-literal string). Schemas as in
/work/shared/paper/DATASETS.md.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from vlmcot.adapters.core import Adapter, Filtered, Row, register
from vlmcot.adapters.images import concat_images
from vlmcot.adapters.text import (
    BadRow,
    as_list,
    check_choices,
    check_letter,
    clean_answers,
    is_missing,
    letter_for_index,
    majority_answer,
    neutralise_image_tags,
    numeric_or_short,
    split_inline_options,
)
from vlmcot.config import StrictModel


def _text(adapter: Adapter, row: Row, role: str = "question") -> str:
    q = adapter.get(row, role)
    if not isinstance(q, str) or not q.strip():
        raise BadRow("missing_question", f"empty {role}")
    return q.strip()


def _mc(question: str, choices: list[str], letter: str, meta: dict | None = None) -> dict[str, Any]:
    return {"question": question, "choices": choices, "answer": letter,
            "qtype": "multiple_choice", "metric": "mc_accuracy", "meta": meta or None}


class AOKVQAOptions(StrictModel):
    # "mc": the four choices, answer a letter (mc_accuracy; the paper's training and eval use);
    # "direct": the ten direct answers, answer their majority (vqa_accuracy)
    mode: Literal["mc", "direct"] = "mc"


@register
class AOKVQA(Adapter):
    name = "aokvqa"
    description = "A-OKVQA: 4 choices + 10 direct answers; test labels are hidden"
    dataset = "aokvqa"
    hub_ids = ("HuggingFaceM4/A-OKVQA",)
    split = "validation"
    metric = "mc_accuracy"
    key_role = "id"
    fields = {"id": "question_id", "question": "question", "choices": "choices",
              "answer_index": "correct_choice_idx", "direct_answers": "direct_answers", "image": "image"}
    Options = AOKVQAOptions

    def convert(self, row: Row) -> dict[str, Any]:
        question = _text(self, row)
        direct = clean_answers(as_list(self.get(row, "direct_answers"), "direct_answers"))
        if self.opts.mode == "direct":
            if not direct:
                raise BadRow("missing_answer", "no direct answers (labels hidden in this split?)")
            answer = majority_answer(direct)
            return {"question": question, "answer": answer, "answers": direct,
                    "qtype": numeric_or_short(answer), "metric": "vqa_accuracy"}
        choices = check_choices(as_list(self.get(row, "choices"), "choices"))
        index = self.get(row, "answer_index")
        if is_missing(index):
            raise BadRow("missing_answer", "no correct_choice_idx (labels hidden in this split?)")
        meta = {"direct_answers": direct} if direct else None
        return _mc(question, choices, letter_for_index(index, len(choices)), meta)


@register
class AI2D(Adapter):
    name = "ai2d"
    description = "AI2D diagrams, lmms-eval copy (test only); answer is an index held in a string"
    dataset = "ai2d"
    hub_ids = ("lmms-lab/ai2d",)
    split = "test"
    metric = "mc_accuracy"
    fields = {"question": "question", "choices": "options", "answer": "answer", "image": "image"}

    def convert(self, row: Row) -> dict[str, Any]:
        choices = check_choices(as_list(self.get(row, "choices"), "options"))
        return _mc(_text(self, row), choices, letter_for_index(self.get(row, "answer"), len(choices)))


class ScienceQAOptions(StrictModel):
    # keep only questions with an image (the paper's SQA = ScienceQA-IMG); text-only rows are
    # counted as filtered, not bad
    image_only: bool = True


@register
class ScienceQA(Adapter):
    name = "scienceqa"
    description = "ScienceQA; eval = lmms-lab ScienceQA-IMG, train = derek-thomas/ScienceQA"
    dataset = "sqa"
    hub_ids = ("lmms-lab/ScienceQA", "derek-thomas/ScienceQA")
    config = "ScienceQA-IMG"
    hub_configs = {"derek-thomas/ScienceQA": None}
    split = "test"
    metric = "mc_accuracy"
    fields = {"question": "question", "choices": "choices", "answer": "answer", "hint": "hint",
              "image": "image", "subject": "subject", "topic": "topic", "grade": "grade"}
    optional = frozenset({"hint", "subject", "topic", "grade"})
    Options = ScienceQAOptions

    def convert(self, row: Row) -> dict[str, Any]:
        if self.get(row, "image") is None:
            if self.opts.image_only:
                raise Filtered
            raise BadRow("missing_image", "text-only question: records need an image")
        choices = check_choices(as_list(self.get(row, "choices"), "choices"))
        letter = letter_for_index(self.get(row, "answer"), len(choices))
        # The hint (context) travels in meta["hint"]: prompts.py places it ("Context: ...").
        meta = {r: self.get(row, r) for r in ("hint", "subject", "topic", "grade")
                if not is_missing(self.get(row, r))}
        return _mc(_text(self, row), choices, letter, meta)


@register
class MMStar(Adapter):
    name = "mmstar"
    description = "MMStar val (1,500): options are written inside the question text"
    dataset = "mmstar"
    hub_ids = ("Lin-Chen/MMStar",)
    split = "val"
    metric = "mc_accuracy"
    key_role = "id"
    fields = {"id": "index", "question": "question", "answer": "answer", "image": "image",
              "category": "category", "l2_category": "l2_category"}
    optional = frozenset({"category", "l2_category"})

    def convert(self, row: Row) -> dict[str, Any]:
        question, choices = split_inline_options(_text(self, row))
        choices = check_choices(choices)
        meta = {r: self.get(row, r) for r in ("category", "l2_category") if self.get(row, r)}
        return _mc(question, choices, check_letter(self.get(row, "answer"), len(choices)), meta)


class MMMUOptions(StrictModel):
    # questions with several images: "concat" them side by side into one image (as VLMEvalKit
    # does for single-image models), keep the "first", or "skip" the question (counted filtered)
    multi_image: Literal["concat", "first", "skip"] = "concat"
    # keep open (free-form) questions as short-answer records scored by exact_match
    keep_open: bool = True
    # gap in pixels between concatenated images
    concat_gap: int = Field(default=8, ge=0)


@register
class MMMU(Adapter):
    name = "mmmu"
    description = "MMMU (30 subjects merged, lmms-eval copy); options as a Python-literal string"
    dataset = "mmmu"
    hub_ids = ("lmms-lab/MMMU",)
    split = "validation"
    metric = "mc_accuracy"
    key_role = "id"
    fields = {"id": "id", "question": "question", "choices": "options", "answer": "answer",
              "question_type": "question_type", "subfield": "subfield", "img_type": "img_type",
              **{f"image_{k}": f"image_{k}" for k in range(1, 8)}}
    optional = frozenset({"subfield", "img_type", *(f"image_{k}" for k in range(2, 8))})
    image_roles = tuple(f"image_{k}" for k in range(1, 8))
    Options = MMMUOptions

    def _images(self, row: Row) -> list[Any]:
        return [v for r in self.image_roles if (v := self.get(row, r)) is not None]

    def image_value(self, row: Row) -> Any:
        images = self._images(row)
        if not images:
            raise BadRow("missing_image", "no image_1..image_7")
        if len(images) == 1 or self.opts.multi_image == "first":
            return images[0]
        return concat_images(images, self.base_dir, gap=self.opts.concat_gap)

    def convert(self, row: Row) -> dict[str, Any]:
        n_images = len(self._images(row))
        if n_images > 1 and self.opts.multi_image == "skip":
            raise Filtered
        question = neutralise_image_tags(_text(self, row))
        meta = {"n_images": n_images, "question_type": self.get(row, "question_type")}
        meta.update({r: self.get(row, r) for r in ("subfield", "img_type") if self.get(row, r)})
        options = [neutralise_image_tags(str(o)) for o in as_list(self.get(row, "choices"), "options")]
        answer = self.get(row, "answer")
        if self.get(row, "question_type") == "multiple-choice" or options:
            choices = check_choices(options)
            return _mc(question, choices, check_letter(answer, len(choices)), meta)
        if not self.opts.keep_open:
            raise Filtered
        # Open answers are sometimes a list literal of equally valid forms.
        answers = clean_answers(as_list(answer, "answer"))
        if not answers:
            raise BadRow("missing_answer", "open question without an answer")
        return {"question": question, "answer": answers[0], "answers": answers,
                "qtype": numeric_or_short(answers[0]), "metric": "exact_match", "meta": meta}
