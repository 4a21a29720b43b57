"""Answer extraction: from a model's (or the teacher's) response text to the answer a metric scores.

Kept apart from scoring (metrics.py) so that the extraction failure rate can be reported on its own.

- :func:`extract_answer` — CoT responses: the text after the LAST ``### Answer:`` marker [paper],
  tolerant to the spacing/case/markdown variants models produce.
- :func:`extract_direct` — direct responses: the stripped text (or the marker's answer if present).
- :func:`extract_letter` — a multiple-choice letter from free text, modelled on VLMEvalKit's
  judge-free ``can_infer`` (``can_infer_option`` then ``can_infer_text``), then the paper's
  leading-letter format (``"B. Lynx pardinus ..."``) where upstream finds nothing. Not upstream
  exactly: empty option texts never match here, and the fallback is ours;
  ``vlmevalkit_scoring.can_infer`` is upstream's rule verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from vlmcot.records import LETTERS


@dataclass(frozen=True, slots=True)
class Extraction:
    answer: str | None  # None when extraction failed
    ok: bool
    reason: str | None = None  # "empty" | "no_marker" | "empty_after_marker" when not ok


# '### Answer:' and its variants: '###Answer:', '### answer :', '### **Answer**:', '**### Answer:**'.
# Two to four '#' are accepted (models drift to '##'); the word 'Answer' and the colon are required.
_MARKER = r"#{2,4}[ \t]*\**[ \t]*answer[ \t]*\**[ \t]*:[ \t]*"
# Greedy prefix: the match ends at the LAST marker; group 1 is everything after it.
_LAST_MARKER_RE = re.compile(r"^.*" + _MARKER + r"(.*)$", re.IGNORECASE | re.DOTALL)
_ANY_MARKER_RE = re.compile(_MARKER, re.IGNORECASE)
# 'U.S.' and 'e.g.' keep their final period; other answers lose one trailing period.
_ABBREV_RE = re.compile(r"(?:\b[^\W\d_]\.){2,}$")  # letters only: "3.5." still loses its period
# Leading/trailing (unicode) whitespace and markdown bold/italic stars, in any mix.
_EDGES_RE = re.compile(r"^[\s*]+|[\s*]+$")


def _clean(ans: str) -> str:
    """Strip whitespace, surrounding markdown bold, and one trailing sentence period."""
    ans = _EDGES_RE.sub("", ans)
    if ans.endswith(".") and not ans.endswith("..") and not _ABBREV_RE.search(ans):
        ans = _EDGES_RE.sub("", ans[:-1])
    return ans


def extract_answer(text: str | None) -> Extraction:
    """The answer after the last ``### Answer:`` marker (first non-empty line of what follows).

    Only the first non-empty line after the marker is kept: a model that keeps talking after its
    answer ("12\\nThe chart shows...") should still be scored on "12".
    """
    if text is None or not text.strip():
        return Extraction(None, False, "empty")
    m = _LAST_MARKER_RE.match(text)
    if m is None:
        return Extraction(None, False, "no_marker")
    for line in m.group(1).splitlines():
        ans = _clean(line)
        if ans:
            return Extraction(ans, True)
    return Extraction(None, False, "empty_after_marker")


def extract_direct(text: str | None) -> Extraction:
    """A direct response: the stripped text, or the marker's answer if the model wrote one."""
    if text is None or not text.strip():
        return Extraction(None, False, "empty")
    if _ANY_MARKER_RE.search(text):
        return extract_answer(text)
    return Extraction(text.strip(), True)


def extract(text: str | None, mode: str) -> Extraction:
    """Dispatch on prompt mode: 'cot' -> :func:`extract_answer`, 'direct' -> :func:`extract_direct`."""
    if mode == "cot":
        return extract_answer(text)
    if mode == "direct":
        return extract_direct(text)
    raise ValueError(f"extraction mode must be 'direct' or 'cot', got {mode!r}")


def extract_lenient(text: str | None, mode: str) -> Extraction:
    """:func:`extract`, or where a CoT response has no ``### Answer:`` marker, its last non-empty line
    (cleaned as a marker's answer is). The lenient score reported beside the strict one: it tells a
    model that reasons but forgets the format from one that does not answer."""
    ex = extract(text, mode)
    if ex.ok or ex.reason != "no_marker":
        return ex
    for line in reversed(text.splitlines()):
        ans = _clean(line)
        if ans:
            return Extraction(ans, True)
    return ex


def split_response(text: str | None) -> tuple[str | None, str | None]:
    """(rationale before the last marker, extracted answer); (None, None) without a marker."""
    last = None
    for last in _ANY_MARKER_RE.finditer(text or ""):
        pass
    if last is None:
        return None, None
    rationale = text[: last.start()].rstrip().rstrip("*").rstrip()
    return rationale, extract_answer(text).answer


# ---------------------------------------------------------------------------------------------
# Multiple choice: VLMEvalKit can_infer (vlmeval/utils/matching_util.py), judge-free.
# ---------------------------------------------------------------------------------------------

# Refusals VLMEvalKit maps to 'Z' (never a correct letter).
_REFUSALS = (
    "Sorry, I can't help with images of people yet.",
    "I can't process this file.",
    "I'm sorry, but without the image provided",
    "Cannot determine the answer",
)
# infer_option (upstream's can_infer_option) replaces these characters by spaces before splitting on whitespace.
_PUNCT_TABLE = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
# Added upstream 2026-06-17 (a67ace50). Upstream quirk kept: (?i) also matches a lower-case letter
# and there is no word boundary, so "the answer is blue" reads as B (if B is an option).
_VERBOSE_RE = re.compile(r"(?i)(?:correct\s+)?answer\s+is\s+\**([ABCD])\**")
# The paper's direct MC format "B. Lynx pardinus" / "(B) ..." / "B: ...": a leading option letter.
_LEADING_LETTER_RE = re.compile(r"^[\s*]*\(?([A-Z])[.):]+\**(?:\s|$)")
# When a caller has no option texts: assume up to five options (A-E, as MathVision).
DEFAULT_LETTERS = "ABCDE"


def infer_option(pred: str, letters: Sequence[str]) -> str | None:
    """The option letter ``pred`` names by VLMEvalKit's ``can_infer_option`` rule, 'Z' for a refusal,
    None where that rule infers nothing. ``letters``: the options' letters, in order.

    Upstream's rule exactly (vlmevalkit_scoring.can_infer_option uses it, and is checked against the
    vendored upstream), so the project's :func:`extract_letter` and the VLMEvalKit scorer agree on it.
    A letter counts when it is the only option letter among the tokens and stands among the last four;
    otherwise an "answer is X" phrase decides.
    """
    for r in _REFUSALS:
        if r in pred:
            return "Z"
    splits = pred.translate(_PUNCT_TABLE).split()
    present = [c for c in letters if c in splits]
    if len(present) == 1:
        # Exactly one option letter, first seen among the last 4 tokens: the model's final pick.
        if splits.index(present[0]) > len(splits) - 5:
            return present[0]
    elif not present and "Z" in splits:
        # Upstream counts which of {'Z', ''} occur (not how often); split() never yields ''.
        return "Z"
    m = _VERBOSE_RE.search(pred)
    if m:
        letter = m.group(1).upper()
        if letter in letters:
            return letter
    return None


def _can_infer_text(pred: str, choices: Sequence[str]) -> str | None:
    low = pred.lower()
    texts = [str(c) for c in choices]
    # A long CoT that merely mentions an option is not a restatement of it.
    if len(low) > 2 * sum(len(t) for t in texts):
        return None
    # Empty option texts are skipped (upstream drops NaN options; '' would match everything).
    cands = [LETTERS[i] for i, t in enumerate(texts) if t and t.lower() in low]
    return cands[0] if len(cands) == 1 else None


@lru_cache(maxsize=1 << 17)
def _infer_option_cached(pred: str, letters: str) -> str | None:
    # Sampled answers repeat a lot across a question's candidates.
    return infer_option(pred, letters)


def extract_letter(pred: str | None, choices: Sequence[str] | None) -> str | None:
    """The option letter ``pred`` commits to, 'Z' for a refusal, None when it can't be inferred.

    VLMEvalKit's ``can_infer_option`` then ``can_infer_text`` first, so whatever upstream infers
    is kept; only where upstream gives up, the paper's leading-letter format ("B. Lynx pardinus is
    the Iberian lynx...", "(B) ...") is read. ``choices`` are the option texts in letter order;
    None means letters A-E and no text matching.
    """
    if pred is None:
        return None
    pred = str(pred)
    if not pred.strip():
        return None
    letters = LETTERS[: len(choices)] if choices else DEFAULT_LETTERS
    letter = _infer_option_cached(pred, letters)
    if letter is None and choices:
        letter = _can_infer_text(pred, choices)
    if letter is None:
        m = _LEADING_LETTER_RE.match(pred)
        if m and m.group(1) in letters:
            letter = m.group(1)
    return letter
