"""Judge-model answer extraction for MathVista and MMMU (``evaluate.judge``), as VLMEvalKit does.

VLMEvalKit asks a GPT judge to pull the answer out of a reply when its rule-based extraction fails
(MathVista: ``MathVista_auxeval`` after a failed prefetch, with its in-context examples; MMMU and
other multiple choice: ``extract_answer_from_item`` after a failed ``can_infer``). The judge is
called ONLY for those records (:func:`vlmcot.vlmevalkit_scoring.rule_extraction_failed`), through
the project's OpenAI-compatible teacher client (retries, Retry-After, key handling, redaction), with
text-only messages. The prompts are VLMEvalKit's (e8e78f0, ``build_mathvista_gpt4_prompt`` and
``multiple_choice.build_prompt`` + ``smp/vlm.build_option_str``), typos included, so a judge sees what upstream's judge sees.

Deviations, on purpose: one attempt per record through the client's own retry loop (upstream: 5
tries at rising temperature for MathVista, 3 then a RANDOM letter for multiple choice); a judge
that still fails leaves the rule-based result (for multiple choice: 'Z', i.e. wrong), so scores
stay deterministic.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from vlmcot.records import LETTERS, VQARecord
from vlmcot.teacher.cache import request_key
from vlmcot.teacher.openai_backend import OpenAIConfig, OpenAITeacher, Prepared, TransportFailure
from vlmcot.vlmevalkit_scoring import is_mmmu_open, rule_extraction_failed

log = logging.getLogger(__name__)


class JudgeConfig(OpenAIConfig):
    """The ``evaluate.judge`` section: the OpenAI-compatible client settings plus what to judge."""

    # the only backend: any OpenAI-compatible chat-completions endpoint (OpenAI, a vLLM server)
    backend: Literal["openai"] = "openai"
    # VLMEvalKit's default judge (run.py); any chat model the endpoint serves
    model: str = Field("gpt-4o-mini", min_length=1)
    # the judge answers with a letter or a short value
    max_tokens: int = Field(64, ge=1)
    # datasets whose failed rule-based extractions go to the judge (VLMEvalKit judges these two)
    datasets: list[Literal["mathvista", "mmmu"]] = ["mathvista", "mmmu"]


# ---- VLMEvalKit's judge prompts (vlmeval/dataset/utils/mathvista.py, multiple_choice.py) ----------
_MATHVISTA_ICE = [
    """
Hint: Please answer the question requiring an integer answer and provide the final value,
e.g., 1, 2, 3, at the end.\n
Question: Which number is missing?\n
Model response: The number missing in the sequence is 14.\n
Extracted answer: 14
""",
    """
Hint: Please answer the question requiring a floating-point number with one decimal place and provide the final value,
e.g., 1.2, 1.3, 1.4, at the end.\n
Question: What is the fraction of females facing the camera?\n
Model response: The fraction of females facing the camera is 0.6,
which means that six out of ten females in the group are facing the camera.\n
Extracted answer: 0.6
""",
    """
Hint: Please answer the question requiring a floating-point number with two decimal places and provide the final value,
e.g., 1.23, 1.34, 1.45, at the end.\n
Question: How much money does Luca need to buy a sour apple candy and a butter-scotch candy? (Unit: $)\n
Model response: Luca needs $1.45 to buy a sour apple candy and a butterscotch candy.\n
Extracted answer: 1.45
""",
    """
Hint: Please answer the question requiring a Python list as an answer and provide the final list,
e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.\n
Question: Between which two years does the line graph saw its maximum peak?\n
Model response: The line graph saw its maximum peak between 2007 and 2008.\n
Extracted answer: [2007, 2008]
""",
    """
Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at the end.\n
Question: What fraction of the shape is blue?\n
Choices: (A) 3/11 (B) 8/11 (C) 6/11 (D) 3/5\n
Model response: The correct answer is (B) 8/11.\n
Extracted answer: B
""",
]

_MCQ_TMPL = (
    "You are an AI assistant who will help me to match "
    "an answer with several options of a single-choice question. "
    "You are provided with a question, several options, and an answer, "
    "and you need to find which option is most similar to the answer. "
    "If the meaning of all options are significantly different from the answer, output Z. "
    "Your should output a single uppercase character in A, B, C, D (if they are valid options), and Z. \n"
    "Example 1: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: a cute teddy bear\nYour output: A\n"
    "Example 2: \n"
    "Question: What is the main object in image?\nOptions: A. teddy bear B. rabbit C. cat D. dog\n"
    "Answer: Spider\nYour output: Z\n"
    "Example 3: \n"
    "Question: {}?\nOptions: {}\nAnswer: {}\nYour output: "
)


def mathvista_prompt(record: VQARecord, prediction: str) -> str:
    """build_mathvista_gpt4_prompt: upstream's ``question`` column is the benchmark's full query
    (hint + question + choices), which the adapter keeps in meta['query']."""
    question = (record.meta or {}).get("query") or record.question
    prompt = "\nPlease read the following example.\nThen extract the answer from the model response and type it at the end of the prompt.\n\n"  # noqa: E501
    for example in _MATHVISTA_ICE:
        prompt += example + "\n"
    prompt += question + "\n"
    prompt += "Model respone: " + prediction
    prompt += "Extracted answer:"
    return prompt


def mcq_options(record: VQARecord) -> list[str]:
    """The options the judge matches against (MMMU open questions: A = answer, B = 'Other Answers')."""
    return [record.answer, "Other Answers"] if is_mmmu_open(record) else list(record.choices or [])


def mcq_prompt(record: VQARecord, prediction: str) -> str:
    """multiple_choice.build_prompt with smp/vlm.build_option_str's option block."""
    option_str = "There are several options: \n" + "".join(
        f"{LETTERS[i]}. {o}\n" for i, o in enumerate(mcq_options(record)))
    return _MCQ_TMPL.format(record.question, option_str, prediction)


def judge_prompt(record: VQARecord, prediction: str) -> str:
    if record.dataset == "mathvista" or record.metric == "mathvista":
        return mathvista_prompt(record, prediction)
    return mcq_prompt(record, prediction)


@dataclass
class _TextRequest(Prepared):
    """A text-only request (the judge sees no image, as upstream's judge)."""

    def messages(self) -> list[dict]:
        return [{"role": "user", "content": self.user_text}]


class Judge:
    """Extracts answers with a judge model for the records whose rule-based extraction failed."""

    def __init__(self, cfg: JudgeConfig, client: Any = None):
        self.cfg = cfg
        oa = OpenAIConfig(**cfg.model_dump(exclude={"backend", "datasets"}))
        self.teacher = OpenAITeacher(oa, client=client)
        self.calls = 0
        self.failures = 0

    def wants(self, record: VQARecord, prediction: str | None) -> bool:
        return record.dataset in self.cfg.datasets and rule_extraction_failed(record, prediction)

    def extract(self, items: list[tuple[VQARecord, str]]) -> list[str | None]:
        """The judge's reply (stripped) per (record, prediction); None where the request failed."""
        if not items:
            return []
        return asyncio.run(self._all(items))

    async def _all(self, items: list[tuple[VQARecord, str]]) -> list[str | None]:
        sem = asyncio.Semaphore(self.cfg.max_concurrency)

        async def one(rec: VQARecord, pred: str) -> str | None:
            text = judge_prompt(rec, pred)
            key = request_key({"model": self.cfg.model, "judge": text, "temperature": self.cfg.temperature})
            req = _TextRequest(key=key, system="", user_text=text, image=b"", mime="", detail="")
            async with sem:
                self.calls += 1
                try:
                    entry = await self.teacher.asend(req)
                except TransportFailure as e:
                    self.failures += 1
                    log.warning("judge: %s failed (%s); keeping the rule-based extraction", rec.id, e.reason)
                    return None
            reply = entry.get("text")
            return reply.strip() if reply else None

        try:
            return await asyncio.gather(*(one(r, p) for r, p in items))
        finally:
            await self.teacher.aclose()
