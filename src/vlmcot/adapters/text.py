"""Small parsers shared by the adapters: answer lists, option letters, options inside text.

Each source encodes answers and options its own way (an index as int or str, a letter, the option
text, a Python-literal list in a string, options inlined in the question). These helpers turn them
into the record contract: ``answer`` a string (a letter for multiple choice), ``answers`` every
annotator answer, ``choices`` the option texts in letter order. They raise :class:`BadRow` with a
reason the load report counts.
"""

from __future__ import annotations

import ast
import math
import re
from collections import Counter
from typing import Any

from vlmcot.records import LETTERS


class BadRow(ValueError):
    """One row cannot become a record; ``reason`` is a short key counted in the load report."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def is_missing(value: Any) -> bool:
    """None, NaN (pandas' empty TSV cell) or a blank string."""
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def as_list(value: Any, what: str = "value") -> list:
    """A list from a list, a Python-literal list in a string (``"['a', 'b']"``) or a scalar.

    Literal strings are parsed with :func:`ast.literal_eval`, never ``eval``: VLMEvalKit
    ``eval``s these columns, which would run code hidden in a downloaded TSV.
    """
    if is_missing(value):
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") and s.endswith("]"):
            try:
                parsed = ast.literal_eval(s)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise BadRow("parse_error", f"{what} looks like a list but does not parse: {s[:80]!r}")
            if not isinstance(parsed, (list, tuple)):
                raise BadRow("parse_error", f"{what} is not a list: {s[:80]!r}")
            return list(parsed)
        return [value]
    return [value]


def clean_answers(values: list[Any]) -> list[str]:
    """Answers as stripped strings, empties dropped (TextVQA test rows hold 10 empty strings)."""
    return [str(v).strip() for v in values if not is_missing(v) and str(v).strip()]


def majority_answer(answers: list[str]) -> str:
    """The most frequent answer; ties go to the earliest (deterministic across runs)."""
    counts = Counter(answers)
    best = max(counts.values())
    return next(a for a in answers if counts[a] == best)


def is_number(text: str) -> bool:
    """Parses as a float after dropping a trailing '%' (ChartQA's relaxed-accuracy rule)."""
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        return False
    return math.isfinite(value)


def numeric_or_short(answer: str) -> str:
    return "numeric" if is_number(answer) else "short"


def letter_for_index(index: Any, n_choices: int) -> str:
    """``chr(65 + index)``, accepting ints and digit strings (AI2D stores "0".."3")."""
    try:
        i = int(str(index).strip())
    except (TypeError, ValueError):
        raise BadRow("bad_answer", f"answer index {index!r} is not an integer") from None
    if not 0 <= i < n_choices:
        raise BadRow("bad_answer", f"answer index {i} outside the {n_choices} choices")
    return LETTERS[i]


def check_letter(answer: Any, n_choices: int) -> str:
    """A letter answer among the choices ("B", " b ", "(B)" accepted)."""
    a = str(answer).strip().strip("()").strip().upper() if not is_missing(answer) else ""
    if len(a) != 1 or a not in LETTERS[:n_choices]:
        raise BadRow("bad_answer", f"answer {answer!r} is not a letter among {n_choices} choices")
    return a


def letter_for_text(answer: str, choices: list[str]) -> str:
    """The letter of the option whose text is the answer (MathVista stores the text)."""
    texts = [str(c).strip() for c in choices]
    a = str(answer).strip()
    for fold in (lambda s: s, lambda s: s.casefold()):
        hits = [i for i, t in enumerate(texts) if fold(t) == fold(a)]
        if len(hits) == 1:
            return LETTERS[hits[0]]
    raise BadRow("bad_answer", f"answer {answer!r} matches none (or several) of the choices {texts}")


def check_choices(choices: list[Any]) -> list[str]:
    out = [str(c).strip() for c in choices]
    if len(out) < 2:
        raise BadRow("bad_choices", f"multiple choice with {len(out)} option(s)")
    if len(out) > len(LETTERS):
        raise BadRow("bad_choices", f"{len(out)} options: more than {len(LETTERS)} letters")
    return out


# MMStar: "question\nOptions: A: text, B: text, C: text, D: text" (options inside the question).
_OPTIONS_SPLIT = re.compile(r"\n?\s*Options\s*:\s*", re.IGNORECASE)
_INLINE_OPTION = re.compile(r"(?:^|,\s*)([A-Z])\s*:\s*(.*?)(?=,\s*[A-Z]\s*:|\s*$)", re.DOTALL)


def split_inline_options(text: str) -> tuple[str, list[str]]:
    """``(question, [option texts])`` from a question with ``Options: A: x, B: y`` inside it."""
    parts = _OPTIONS_SPLIT.split(text)
    if len(parts) < 2:
        raise BadRow("parse_error", "no 'Options:' in the question text")
    question, block = "Options:".join(parts[:-1]).strip(), parts[-1].strip()
    found = _INLINE_OPTION.findall(block)
    letters = "".join(letter for letter, _ in found)
    if len(found) < 2 or letters != LETTERS[: len(found)]:
        raise BadRow("parse_error", f"options not parseable as 'A: .., B: ..': {block[:80]!r}")
    return question, [t.strip() for _, t in found]


# MMMU '<image 1>', MathVision '<image1>': LLaVA reads '<image>' as the image token, so these
# placeholders must not reach a prompt as tags. They become plain '[image 1]' text.
_IMAGE_TAG = re.compile(r"<image\s*(\d*)>")


def neutralise_image_tags(text: str) -> str:
    return _IMAGE_TAG.sub(lambda m: f"[image {m.group(1)}]" if m.group(1) else "[image]", text)
