"""The teacher interface every backend implements (scripted for the embedded world, OpenAI-compatible
for real endpoints). The distill stage drives a Teacher over records and records one TeacherReply per
record; it never needs to know which backend answered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from vlmcot.records import VQARecord


@dataclass
class TeacherReply:
    id: str
    text: str | None  # the rationale, ending in '### Answer: X'; None on failure
    ok: bool
    reason: str | None = None  # failure reason ("no_answer_marker", "empty", "refusal", "http_500", ...)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    meta: dict = field(default_factory=dict)  # backend-specific (e.g. injected error kind)


class Teacher(Protocol):
    """Synchronous view used by the distill stage. Async backends wrap their event loop inside."""

    name: str

    def generate(self, records: list[VQARecord]) -> list[TeacherReply]:
        """One reply per record, same order. Must not raise for a single bad record."""
        ...
