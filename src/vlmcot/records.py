"""The contracts between stages: VQA, SFT (LLaVA conversation), pair and candidate records.

All are JSONL with image *paths* (relative to the repo root, or absolute), never image bytes.
``validate_vqa`` checks a batch and returns the good records plus one clear error per bad record,
so a stage can skip and count bad input instead of dying on it; ``read_candidates`` does the same for
a candidates file (sample's output, read by pairs, rerank and control); ``select_records`` picks the
records a stage works on (evaluate, sample).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmcot.errors import StageError
from vlmcot.io import DataError, iter_jsonl, read_jsonl  # noqa: F401 - DataError re-exported: stages catch it from here

log = logging.getLogger(__name__)

QType = Literal["short", "numeric", "multiple_choice"]
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VQARecord(Record):
    id: str = Field(min_length=1)
    image: str = Field(min_length=1)
    question: str
    answer: str  # short answer; for multiple choice, the letter ("B")
    answers: list[str] | None = None  # every annotator answer (VQA accuracy, ANLS)
    choices: list[str] | None = None  # option texts, in letter order
    dataset: str = Field(min_length=1)
    qtype: QType
    split: str = Field(min_length=1)
    metric: str = Field(min_length=1)  # name in vlmcot.metrics registry
    facts: dict[str, Any] | None = None  # ground truth a rationale needs (synthetic world)
    meta: dict[str, Any] | None = None

    def all_answers(self) -> list[str]:
        return list(self.answers) if self.answers else [self.answer]


class CoTRecord(VQARecord):
    """A VQA record with the teacher rationale that survived the correctness filter."""

    cot: str  # full teacher response, ending in '### Answer: X'
    teacher_answer: str  # what was extracted after the last marker


class Turn(Record):
    from_: Literal["human", "gpt"] = Field(alias="from")
    value: str

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SFTRecord(Record):
    """LLaVA conversation format, as in the released ShareGPT-4o-Reasoning files."""

    id: str
    image: str | None = None
    conversations: list[Turn]
    # ours, optional: where the row came from (mix bookkeeping)
    dataset: str | None = None
    kind: str | None = None  # format / direct / cot / general

    def model_dump_llava(self) -> dict:
        d = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return d


class PairRecord(Record):
    """TRL preference fields plus ours."""

    id: str
    image: str
    prompt: str
    chosen: str
    rejected: str
    answer: str
    dataset: str
    question: str | None = None
    meta: dict[str, Any] | None = None


class Candidate(Record):
    id: str
    sample: int
    text: str
    extracted: str | None = None  # None: no answer could be extracted
    correct: bool
    dataset: str
    logprob: float | None = None




def read_candidates(path: str | Path) -> tuple[list[Candidate], list[str]]:
    """Valid candidates and one error per bad row (file:line, candidate id)."""
    good: list[Candidate] = []
    errors: list[str] = []
    for line, row in iter_jsonl(path, on_error=errors.append):  # unreadable lines: named, counted, skipped
        # write_jsonl drops None fields, so a failed extraction arrives without its 'extracted' key
        row.setdefault("extracted", None)
        try:
            good.append(Candidate.model_validate(row))
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            errors.append(f"{path}:{line}: candidate {row.get('id', '?')}: {where}: {first['msg']}")
    return good, errors


def select_records(path: str | Path, *, datasets: list[str] | None, offset: int, max_per_dataset: int | None,
                   max_bad_rate: float) -> list[VQARecord]:
    """The VQA records a stage works on (evaluate, sample): the valid records of ``path``, sorted by id,
    kept to ``datasets`` (None: all), then per dataset the ``max_per_dataset`` (None: all) after the first
    ``offset``. More than ``max_bad_rate`` of the rows malformed, or nothing left: StageError."""
    if not Path(path).is_file():
        raise StageError(f"{path} not found (run the prepare stage first)")
    raw = read_jsonl(path)
    good, errors = validate_vqa(raw)
    for e in errors[:10]:
        log.warning("%s: %s", path, e)
    if errors and len(errors) > max_bad_rate * len(raw):
        raise StageError(f"{path}: {len(errors)} of {len(raw)} records malformed (first: {errors[0]})")
    good.sort(key=lambda r: r.id)
    if datasets is not None:
        missing = sorted(set(datasets) - {r.dataset for r in good})
        if missing:
            log.warning("%s: no records for datasets %s", path, missing)
        good = [r for r in good if r.dataset in datasets]
    seen: dict[str, int] = {}
    kept = []
    for r in good:
        k = seen.get(r.dataset, 0)
        seen[r.dataset] = k + 1
        if k < offset:
            continue
        if max_per_dataset is not None and k >= offset + max_per_dataset:
            continue
        kept.append(r)
    if not kept:
        raise StageError(f"{path}: no questions left after the dataset/offset/max filters")
    return kept


def validate_vqa(
    rows: Iterable[dict],
    check_images: bool = False,
    root: str | Path = ".",
    model: type[VQARecord] = VQARecord,
    verify_images: bool = False,
    images=None,
) -> tuple[list[VQARecord], list[str]]:
    """Validate raw rows; return (good records, error messages naming each bad record).

    ``check_images``: the image must pass :func:`vlmcot.images.check_image` under ``images`` (an
    ImagePolicy; default limits): confined path, a regular file, bounded bytes and pixels;
    ``verify_images``: it must also decode completely (a truncated file is a bad record here)."""
    good: list[VQARecord] = []
    errors: list[str] = []
    seen: set[str] = set()
    for n, row in enumerate(rows):
        rid = row.get("id", f"<row {n}>") if isinstance(row, dict) else f"<row {n}>"
        try:
            rec = model.model_validate(row)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            errors.append(f"record {rid}: {where}: {first['msg']}")
            continue
        problem = _semantic_problem(rec, check_images or verify_images, Path(root), verify_images, images)
        if problem is None and rec.id in seen:
            problem = "duplicate id"
        if problem:
            errors.append(f"record {rec.id}: {problem}")
            continue
        seen.add(rec.id)
        good.append(rec)
    return good, errors


def _semantic_problem(rec: VQARecord, check_images: bool, root: Path, verify: bool = False, images=None) -> str | None:
    if not rec.question.strip():
        return "empty question"
    if not rec.answer.strip():
        return "missing answer"
    if rec.qtype == "multiple_choice":
        if not rec.choices or len(rec.choices) < 2:
            return "multiple-choice record without at least two choices"
        if rec.answer not in LETTERS[: len(rec.choices)]:
            return f"answer {rec.answer!r} is not a letter among the {len(rec.choices)} choices"
    if check_images:
        from vlmcot.images import ImageRejected, check_image, resolve_image

        try:
            if verify:
                check_image(rec.image, root, images, decode=True)
            else:
                resolve_image(rec.image, root, images)  # confined, a regular file, within max_bytes
        except ImageRejected as e:
            return str(e)
    return None


def load_vqa(
    path: str | Path,
    *,
    model: type[VQARecord] = VQARecord,
    check_images: bool = False,
    verify_images: bool = False,
    images=None,
    root: str | Path = ".",
    max_error_rate: float = 0.0,
    key: str = "max_error_rate",
    log=None,
) -> tuple[list[VQARecord], list[str]]:
    """Read and validate a JSONL of records, skipping (and naming) every bad line or record.

    Raises DataError when the share of bad rows exceeds ``max_error_rate`` (``key`` names the params
    key to raise, so the message tells the user what to change)."""
    from vlmcot.io import iter_jsonl

    errors: list[str] = []
    rows = [row for _, row in iter_jsonl(path, on_error=errors.append)]
    good, bad = validate_vqa(rows, check_images=check_images, root=root, model=model, verify_images=verify_images,
                             images=images)
    errors += bad
    for e in errors[:20]:
        if log is not None:
            log.warning("skipped %s", e)
    total = len(rows) + (len(errors) - len(bad))
    if errors and len(errors) > max_error_rate * max(1, total):
        raise DataError(f"{path}: {len(errors)} of {total} rows are bad (more than {key}={max_error_rate}); "
                        f"first: {errors[0]}")
    return good, errors
