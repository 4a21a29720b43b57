"""Import and export of the released ShareGPT-4o-Reasoning files (arXiv 2410.16198).

SFT (``Share4oReasoning/sft_data``, folder ``sft/``): LLaVA conversation JSONL, one file per
dataset and kind::

    pt_data_mix_2k.jsonl                                   general instruction data
    {docvqa,infovqa,chartqa,ai2d,aokvqa,textvqa,mathvision}/{direct,cot}.none.jsonl
    sqa/{direct,cot}.image.none.jsonl, sqa/cot.text.none.jsonl
    math/{gllava.align,geoqa_plus.qa,geo.mcq.direct,geo-qa.rationale.4k,...}.jsonl

    {"id": "sqa_6179", "image": "sqa/6179.png",
     "conversations": [{"from": "human", "value": "<image>\\n..."}, {"from": "gpt", "value": "...\\n\\n### Answer: B"}]}

DPO (``Share4oReasoning/dpo_data``, ``dpo_preview/{aokvqa,chartqa,math}.pairwise.{train,dev}.jsonl``)::

    {"id": ..., "image": "chartqa/x.png", "question": "<image>\\n...", "chosen": "...### Answer: 12",
     "rejected": "...### Answer: 14", "answer": "12"}

:func:`import_sft` and :func:`import_pairs` read files or whole folders (JSONL, or the hub's parquet
exports) into :class:`~vlmcot.records.SFTRecord` / :class:`~vlmcot.records.PairRecord`, inferring
``dataset`` and ``kind`` from the file path; bad rows are reported by file and line and skipped.
:func:`export_sft` and :func:`export_pairs` write our sets back in the same layout, so
export -> import gives the same records. The release's ``math/`` folder holds G-LLaVA (Geo170K)
data: its rows get the dataset label ``gllava`` (the adapters' and prompts' name), and
``gllava`` is written back to ``math/``.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from vlmcot.adapters.core import LoadReport
from vlmcot.adapters.text import BadRow
from vlmcot.answers import extract_answer
from vlmcot.io import write_jsonl
from vlmcot.records import PairRecord, SFTRecord

IMAGE_TOKEN = "<image>"
KINDS = ("direct", "cot", "format", "general")
# Our dataset label -> the release's folder / file prefix (and back).
RELEASE_NAMES = {"gllava": "math"}
FROM_RELEASE = {v: k for k, v in RELEASE_NAMES.items()}
# The release's dataset folders (SFT) and pair-file prefixes (DPO).
RELEASE_DATASETS = frozenset({"docvqa", "infovqa", "chartqa", "ai2d", "aokvqa", "textvqa",
                              "mathvision", "sqa", "math"})
# Files whose rows are general instruction data, not a VQA set.
GENERAL_FILES = ("pt_data_mix",)
_NAME_TOKENS = re.compile(r"[._\-]+")


# --- reading files ---------------------------------------------------------------------------
def _files(source: str | Path) -> list[tuple[Path, PurePosixPath]]:
    """(file, path relative to the folder given) for a file or every JSONL/parquet under a folder."""
    source = Path(source)
    if source.is_file():
        return [(source, PurePosixPath(source.parent.name, source.name))]
    if not source.is_dir():
        raise FileNotFoundError(f"{source}: no such file or folder")
    files = sorted(p for p in source.rglob("*") if p.suffix in (".jsonl", ".parquet") and p.is_file())
    return [(p, PurePosixPath(p.relative_to(source).as_posix())) for p in files]


def iter_rows(path: Path) -> Iterator[tuple[str, int, Any]]:
    """(label naming file and line, line or row number, row) for JSONL or parquet.

    A line that is not JSON yields a BadRow in place of the row, reported by the caller.
    """
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for n, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}: row {n}", n, row
        return
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{n}", n, json.loads(line)
            except json.JSONDecodeError as e:
                yield f"{path}:{n}", n, BadRow("bad_json", f"not valid JSON ({e.msg})")


def convert_rows(rows: Iterable[tuple[str, int, Any]], convert: Callable[[int, Any], Any],
                 report: LoadReport) -> Iterator:
    """``convert(n, row)`` of each (where, n, row) of :func:`iter_rows`, counted in ``report``: a row it
    rejects (BadRow) is recorded by where it stands and skipped, never fatal here (the stage decides
    against its max_bad_rate)."""
    for where, n, row in rows:
        report.rows += 1
        try:
            rec = convert(n, row)
        except BadRow as e:
            report.add_bad(where, e.reason, str(e))
            continue
        report.records += 1
        yield rec


def _join(image_root: str | Path | None, image: str) -> str:
    return str(PurePosixPath(Path(image_root).as_posix()) / image) if image_root else image


def _relative(image_root: str | Path | None, image: str) -> str:
    if not image_root:
        return image
    root, p = PurePosixPath(Path(image_root).as_posix()), PurePosixPath(image)
    try:
        return str(p.relative_to(root))
    except ValueError:
        return image  # not under the root: kept as given (absolute paths round-trip)


def _label(name: str | None) -> str | None:
    return FROM_RELEASE.get(name, name) if name else None


def _dataset_from_id(rid: str | None) -> str | None:
    """The dataset an id names by prefix (``sqa_6179``), for files whose path can't tell (parquet)."""
    prefix = str(rid).split("_", 1)[0].lower() if rid and "_" in str(rid) else ""
    return _label(prefix) if prefix in RELEASE_DATASETS else None


# --- SFT ------------------------------------------------------------------------------------
def infer_sft_source(relpath: str | PurePosixPath) -> tuple[str | None, str | None]:
    """(dataset, kind) from a path like ``chartqa/cot.none.jsonl``; None where the path can't tell.

    Kind comes from the file name's tokens: ``direct``; ``cot`` or ``rationale``; ``format``;
    ``pt_data_mix*`` and ``general`` are general data. Otherwise None: decided per row by
    :func:`infer_kind`.
    """
    p = PurePosixPath(relpath)
    name = p.name
    if name.startswith(GENERAL_FILES):
        return "general", "general"
    tokens = set(_NAME_TOKENS.split(name.lower()))
    kind = None
    if "direct" in tokens:
        kind = "direct"
    elif tokens & {"cot", "rationale"}:
        kind = "cot"
    elif "format" in tokens:
        kind = "format"
    elif "general" in tokens:
        kind = "general"
    parent = p.parent.name if len(p.parts) >= 2 else ""
    dataset = _label(parent) if parent and parent not in ("sft", "data", ".") else None
    return dataset, kind


def infer_kind(conversations: list[dict]) -> str:
    """A row's kind from its content: a ``### Answer:`` in the last reply means CoT."""
    last = conversations[-1].get("value", "") if conversations else ""
    return "cot" if "### Answer:" in str(last) else "general"


def sft_record(row: Any, dataset: str | None, kind: str | None,
               image_root: str | Path | None = None, check_image: bool = False) -> SFTRecord:
    """One released SFT row -> SFTRecord, normalised the LLaVA way; raises BadRow (``check_image``: also
    when its image file does not exist)."""
    if isinstance(row, BadRow):
        raise row
    if not isinstance(row, dict):
        raise BadRow("bad_row", "not a JSON object")
    rid = row.get("id")
    if rid is None or str(rid).strip() == "":
        raise BadRow("missing_id", "no id")
    conv = row.get("conversations")
    if not isinstance(conv, list) or len(conv) < 2:
        raise BadRow("bad_conversations", f"id {rid}: conversations must be a list of at least 2 turns")
    turns = []
    for i, t in enumerate(conv):
        want = "human" if i % 2 == 0 else "gpt"
        if not isinstance(t, dict) or t.get("from") != want or not isinstance(t.get("value"), str):
            raise BadRow("bad_conversations", f"id {rid}: turn {i} must be {{'from': '{want}', 'value': str}}")
        turns.append({"from": want, "value": t["value"]})
    if not turns[-1]["value"].strip():
        raise BadRow("bad_conversations", f"id {rid}: empty last reply")
    image = row.get("image")
    if isinstance(image, list):
        if len(image) != 1:
            raise BadRow("bad_image", f"id {rid}: {len(image)} images; one image per row is supported")
        image = image[0]
    if image is not None and not isinstance(image, str):
        raise BadRow("bad_image", f"id {rid}: image must be a path string")
    image = image.strip() if image and image.strip() else None
    n_tokens = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if image is None and n_tokens:
        raise BadRow("bad_image", f"id {rid}: {IMAGE_TOKEN} in a row without an image")
    if n_tokens > 1:
        raise BadRow("bad_image", f"id {rid}: {n_tokens} {IMAGE_TOKEN} tokens for one image")
    if image is not None and n_tokens == 0:
        # LLaVA's rule: the image token leads the first human turn when the text lacks one.
        turns[0]["value"] = f"{IMAGE_TOKEN}\n{turns[0]['value']}"
    dataset = dataset or _dataset_from_id(str(rid))
    try:
        rec = SFTRecord.model_validate({
            "id": str(rid), "image": _join(image_root, image) if image else None,
            "conversations": turns, "dataset": dataset, "kind": kind or infer_kind(turns),
        })
    except ValidationError as e:
        raise BadRow("invalid_record", f"id {rid}: {e.errors()[0]['msg']}") from None
    if check_image and rec.image and not Path(rec.image).is_file():
        raise BadRow("missing_image", f"id {rec.id}: image file {rec.image} not found")
    return rec


def import_sft(source: str | Path, image_root: str | Path | None = None,
               report: LoadReport | None = None, check_images: bool = False) -> list[SFTRecord]:
    """Every SFT row under ``source`` (a file or the release's ``sft/`` folder).

    ``image_root`` is where the release's image archives were unpacked: it is prefixed to each
    row's relative image path. ``check_images`` skips rows whose image file is missing.
    """
    return list(iter_sft(source, image_root, report, check_images))


def iter_sft(source: str | Path, image_root: str | Path | None = None,
             report: LoadReport | None = None, check_images: bool = False) -> Iterator[SFTRecord]:
    """:func:`import_sft` one record at a time (the full release is 404k rows)."""
    report = report if report is not None else LoadReport()
    report.source = report.source or f"sharegpt sft {source}"
    for path, rel in _files(source):
        dataset, kind = infer_sft_source(rel)
        yield from convert_rows(
            iter_rows(path), lambda _, row: sft_record(row, dataset, kind, image_root, check_images), report)


def sft_file(dataset: str, kind: str) -> str:
    """Relative path of the export file for a (dataset, kind): ``chartqa/cot.none.jsonl``."""
    return f"{RELEASE_NAMES.get(dataset, dataset)}/{kind}.none.jsonl"


def export_sft(records: Iterable[SFTRecord], out_dir: str | Path,
               image_root: str | Path | None = None) -> dict[str, int]:
    """Write records as ``out_dir/<dataset>/<kind>.none.jsonl`` in the released row format.

    Returns {relative file: rows}. Each record needs ``dataset`` and a ``kind`` among
    :data:`KINDS` (the file path carries them); rows are sorted by id for stable hashes.
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if not rec.dataset or not re.fullmatch(r"[A-Za-z0-9_\-]+", rec.dataset):
            raise ValueError(f"SFT record {rec.id}: dataset {rec.dataset!r} cannot name a folder")
        if rec.kind not in KINDS:
            raise ValueError(f"SFT record {rec.id}: kind {rec.kind!r} is not one of {KINDS}")
        row = {"id": rec.id, "conversations": [t.model_dump(by_alias=True) for t in rec.conversations]}
        if rec.image:
            row["image"] = _relative(image_root, rec.image)
        groups[sft_file(rec.dataset, rec.kind)].append(row)
    out_dir = Path(out_dir)
    return {rel: write_jsonl(out_dir / rel, rows, sort_key="id") for rel, rows in sorted(groups.items())}


# --- DPO pairs --------------------------------------------------------------------------------
def infer_pair_source(relpath: str | PurePosixPath) -> tuple[str | None, str]:
    """(dataset, split) from ``chartqa.pairwise.train.jsonl`` or a parquet ``validation-0000.parquet``."""
    name = PurePosixPath(relpath).name
    parts = name.split(".")
    if len(parts) >= 4 and parts[1] == "pairwise":
        return _label(parts[0]), parts[2]
    split = _NAME_TOKENS.split(name)[0] or "train"
    return None, split


def pair_record(row: Any, dataset: str | None, split: str, n: int,
                image_root: str | Path | None = None) -> PairRecord:
    """One released DPO row -> PairRecord (prompt = question without ``<image>``); raises BadRow."""
    if isinstance(row, BadRow):
        raise row
    if not isinstance(row, dict):
        raise BadRow("bad_row", "not a JSON object")
    rid = str(row["id"]) if row.get("id") not in (None, "") else None
    name = f"id {rid}" if rid else f"row {n}"
    for key in ("image", "question", "chosen", "rejected"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise BadRow("missing_field", f"{name}: no {key}")
    if row["chosen"].strip() == row["rejected"].strip():
        raise BadRow("identical_responses", f"{name}: chosen and rejected are the same text")
    answer = row.get("answer")
    if answer is None or str(answer).strip() == "":
        # The chosen response is the correct one: its '### Answer:' is the ground truth.
        answer = extract_answer(row["chosen"]).answer
        if answer is None:
            raise BadRow("missing_answer", f"{name}: no answer and none after '### Answer:' in chosen")
    dataset = dataset or _label(row.get("dataset")) or _dataset_from_id(rid)
    if not dataset:
        raise BadRow("missing_dataset", f"{name}: dataset unknown (not in the file name, row or id)")
    if rid is None:
        rid = f"{dataset}_{split}_{n}"
    prompt = row["question"].replace(IMAGE_TOKEN, "").strip()
    if not prompt:
        raise BadRow("missing_field", f"{name}: question is only the image token")
    return PairRecord(id=rid, image=_join(image_root, row["image"].strip()), prompt=prompt,
                      chosen=row["chosen"], rejected=row["rejected"], answer=str(answer).strip(),
                      dataset=dataset, meta={"split": split})


def import_pairs(source: str | Path, image_root: str | Path | None = None,
                 report: LoadReport | None = None) -> list[PairRecord]:
    """Every DPO pair under ``source`` (a ``*.pairwise.*.jsonl`` file, ``dpo_preview/``, or parquet)."""
    report = report if report is not None else LoadReport()
    report.source = report.source or f"sharegpt dpo {source}"
    out: list[PairRecord] = []
    for path, rel in _files(source):
        dataset, split = infer_pair_source(rel)
        out.extend(convert_rows(iter_rows(path), lambda n, row: pair_record(row, dataset, split, n, image_root),
                                report))
    return out


def export_pairs(records: Iterable[PairRecord], out_dir: str | Path,
                 image_root: str | Path | None = None, split: str | None = None) -> dict[str, int]:
    """Write pairs as ``out_dir/<dataset>.pairwise.<split>.jsonl`` with the released fields.

    The split is ``split`` if given, else the record's ``meta["split"]``, else "train". The
    question is written back as ``"<image>\\n" + prompt`` (what the released loader rebuilds).
    """
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        s = split or (rec.meta or {}).get("split") or "train"
        name = RELEASE_NAMES.get(rec.dataset, rec.dataset)
        if not re.fullmatch(r"[A-Za-z0-9_\-]+", name) or not re.fullmatch(r"[A-Za-z0-9_\-]+", str(s)):
            raise ValueError(f"pair {rec.id}: dataset {rec.dataset!r} / split {s!r} cannot name a file")
        groups[f"{name}.pairwise.{s}.jsonl"].append({
            "id": rec.id, "image": _relative(image_root, rec.image),
            "question": f"{IMAGE_TOKEN}\n{rec.prompt}", "chosen": rec.chosen,
            "rejected": rec.rejected, "answer": rec.answer,
        })
    out_dir = Path(out_dir)
    return {rel: write_jsonl(out_dir / rel, rows, sort_key="id") for rel, rows in sorted(groups.items())}
