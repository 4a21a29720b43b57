"""Verifiable rewards for online RL (the `grpo` stage): the dataset's own metric on the answer after
``### Answer:``, plus an optional format term.

Nothing is scored here that evaluation does not score the same way: :class:`AnswerReward` calls
:func:`vlmcot.evaluation.score_response` (CoT extraction after the last marker, then the record's metric
from the registry in :mod:`vlmcot.metrics`: relaxed accuracy, ANLS, VQA accuracy, option letter, ...),
exactly as `sample` decides a candidate's correctness and `evaluate` scores a prediction. A response
without the marker scores 0, as in evaluation (the strict score, not the lenient one).

:class:`FormatReward` is 1 when the response has a ``### Answer:`` marker followed by an answer (the
extraction evaluation uses succeeds), else 0; the stage weights it by ``format_weight`` (0: not used).

Both follow TRL's reward-function contract (GRPOTrainer / RLOOTrainer): called with keyword arguments
``prompts``, ``completions`` (conversational: ``[[{"role": "assistant", "content": text}]]``, or plain
strings), ``completion_ids`` and every dataset column as a list (here ``id``), returning one float per
completion. Their ``__name__`` names them in the trainer's logs (``rewards/answer/mean``).
"""

from __future__ import annotations

from collections.abc import Mapping

from vlmcot.answers import extract
from vlmcot.evaluation import SCORINGS, score_response
from vlmcot.records import VQARecord


def completion_text(completion) -> str:
    """The response text of one TRL completion: a string, or the assistant message(s) of a conversation."""
    if isinstance(completion, str):
        return completion
    parts = []
    for msg in completion:
        content = msg.get("content", "")
        if isinstance(content, list):  # content blocks: keep the text ones
            content = "".join(b.get("text", "") for b in content if isinstance(b, dict))
        parts.append(content or "")
    return "".join(parts)


class AnswerReward:
    """The record's metric score (in [0, 1]) of the answer extracted after the last ``### Answer:``."""

    __name__ = "answer"

    def __init__(self, records: Mapping[str, VQARecord], scoring: str = "project"):
        if scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
        self.records = records
        self.scoring = scoring

    def score(self, record: VQARecord, text: str) -> float:
        return float(score_response(record, "cot", text, self.scoring)["score"])

    def __call__(self, completions: list, id: list[str], **_) -> list[float]:  # noqa: A002 - TRL's column name
        return [self.score(self.records[qid], completion_text(c)) for c, qid in zip(completions, id, strict=True)]


class FormatReward:
    """1.0 when the response ends its reasoning with ``### Answer: <something>`` (extraction succeeds)."""

    __name__ = "format"

    @staticmethod
    def score(text: str) -> float:
        return 1.0 if extract(text, "cot").ok else 0.0

    def __call__(self, completions: list, **_) -> list[float]:
        return [self.score(completion_text(c)) for c in completions]


def reward_functions(records: Mapping[str, VQARecord], format_weight: float = 0.0,
                     scoring: str = "project") -> tuple[list, list[float]]:
    """(reward functions, their weights) for the trainer: the answer reward first (the trainer's accuracy
    band reads its column), then the format term when ``format_weight`` > 0."""
    funcs: list = [AnswerReward(records, scoring)]
    weights = [1.0]
    if format_weight > 0:
        funcs.append(FormatReward())
        weights.append(float(format_weight))
    return funcs, weights
