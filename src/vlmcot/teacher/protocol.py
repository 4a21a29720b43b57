"""The teacher interface every backend implements (scripted for the embedded world, OpenAI-compatible
for real endpoints). The distill stage drives a Teacher over records and records one TeacherReply per
record; it never needs to know which backend answered.

The errors a backend raises and :mod:`vlmcot.teacher.runner` handles live here too, with
:func:`redact`, so the runner needs no backend and a backend may use the runner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from vlmcot.records import VQARecord

_SECRETISH = re.compile(r"\b(sk-[A-Za-z0-9_\-*]{6,})")


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


class FatalTeacherError(RuntimeError):
    """Every further request would fail the same way (bad key, no quota, unknown model): stop the run."""


class TransportFailure(Exception):
    """A request that never got a usable reply after all retries; not cached, so a rerun retries it."""

    def __init__(self, reason: str, detail: str, attempts: int):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.attempts = attempts


class RecordError(Exception):
    """This record cannot be turned into a request (e.g. its image is missing); reason is a short tag."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def redact(text: str, secret: str | None = None) -> str:
    """Remove the key (and anything shaped like an OpenAI key, even masked) from text we store or print."""
    if secret:
        text = text.replace(secret, "<redacted>")
    return _SECRETISH.sub("<redacted>", text)
