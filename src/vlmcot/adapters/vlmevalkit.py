"""VLMEvalKit benchmark TSVs (``ChartQA_TEST.tsv``, ``MMStar.tsv``, ``MMMU_DEV_VAL.tsv``, ...).

Users of VLMEvalKit often have these files already. Format (VLMEvalKit docs/en/Development.md,
``image_base.py``): ``index`` unique; ``image`` base64, or a short string (<= 64 chars) naming the
index whose image to reuse, or a stringified list (several images); optional ``image_path``;
``question``; optional ``hint``; option columns ``A``..``Z`` (empty when unused); ``answer`` (a
letter for multiple choice; for VQA sets possibly a stringified list); ``category``,
``l2-category``, ``split``. Rows without an image are dropped, as VLMEvalKit does.

The dataset label and metric are inferred from the file name (``DocVQA_VAL.tsv`` -> docvqa, anls);
set ``dataset`` and ``options.metric`` to override.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from vlmcot.adapters.core import Adapter, Filtered, Row, SourceError, register
from vlmcot.adapters.images import concat_images, decode_base64
from vlmcot.adapters.text import (
    BadRow,
    as_list,
    check_choices,
    check_letter,
    clean_answers,
    is_missing,
    letter_for_text,
    majority_answer,
    numeric_or_short,
)
from vlmcot.config import StrictModel
from vlmcot.records import LETTERS

# File-name prefix (lower case) -> (record dataset label, metric for non-MC rows).
KNOWN_TSVS: tuple[tuple[str, str, str], ...] = (
    ("chartqa", "chartqa", "relaxed_accuracy"),
    ("docvqa", "docvqa", "anls"),
    ("infovqa", "infovqa", "anls"),
    ("textvqa", "textvqa", "vqa_accuracy"),
    ("ocrbench", "ocrbench", "ocrbench"),
    ("mathvista", "mathvista", "mathvista"),
    ("mathvision", "mathvision", "exact_match"),
    ("ai2d", "ai2d", "mc_accuracy"),
    ("mmstar", "mmstar", "mc_accuracy"),
    ("mmmu", "mmmu", "exact_match"),
    ("scienceqa", "sqa", "mc_accuracy"),
    ("a-okvqa", "aokvqa", "mc_accuracy"),
    ("aokvqa", "aokvqa", "mc_accuracy"),
)
HMER_CATEGORY = "handwritten mathematical expression recognition"


def infer_label(path: str | Path) -> tuple[str, str]:
    """(dataset label, metric for non-MC rows) from a TSV file name."""
    stem = Path(path).stem.lower()
    for prefix, label, metric in KNOWN_TSVS:
        if stem.startswith(prefix):
            return label, metric
    return stem, "exact_match"


class TSVOptions(StrictModel):
    # metric for rows without options; null = inferred from the file name (mc_accuracy for
    # rows with options either way)
    metric: str | None = None
    # several images in one row: "concat" side by side, keep the "first", or "skip" the row
    multi_image: Literal["concat", "first", "skip"] = "concat"
    # folder that image_path entries are relative to (rows without base64 images); null = the
    # TSV's folder
    image_root: str | None = None


@register
class VLMEvalKitTSV(Adapter):
    name = "vlmevalkit_tsv"
    description = "any VLMEvalKit benchmark TSV (local_path = the .tsv file)"
    dataset = "vlmevalkit"
    split = "test"
    key_role = "id"
    fields = {"id": "index", "image": "image", "image_path": "image_path", "question": "question",
              "hint": "hint", "answer": "answer", "category": "category",
              "l2_category": "l2-category", "split": "split"}
    optional = frozenset({"image", "image_path", "hint", "category", "l2_category", "split"})
    Options = TSVOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        if cfg.local_path is None:
            raise SourceError("vlmevalkit_tsv: set local_path to the .tsv file")
        label, metric = infer_label(cfg.local_path)
        self.label = cfg.dataset or label
        self.metric = self.opts.metric or metric
        # The split filter applies only when the user asked for one (MMMU_DEV_VAL has dev+val).
        self.split_filter = cfg.split
        self.images: dict[str, str] = {}

    def rows(self) -> Iterator[Row]:
        import pandas as pd

        path = Path(self.cfg.local_path)
        if not path.is_file():
            raise SourceError(f"{self.describe()}: {path} not found")
        try:
            df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_values=[""])
        except Exception as e:  # noqa: BLE001 - a malformed TSV is a source-level problem
            raise SourceError(f"{self.describe()}: cannot read TSV: {e}") from None
        columns = list(df.columns)
        for role in ("id", "question", "answer"):
            if self.col[role] not in columns:
                raise SourceError(f"{self.describe()}: column {self.col[role]!r} missing; columns: "
                                  f"{', '.join(columns)}. Set fields.{role} to map it.")
        if self.col["image"] not in columns and self.col["image_path"] not in columns:
            raise SourceError(f"{self.describe()}: neither an image nor an image_path column")
        self.option_cols = [c for c in LETTERS if c in columns]
        self.base_dir = Path(self.opts.image_root) if self.opts.image_root else path.parent
        records = df.to_dict("records")
        if self.col["image"] in columns:
            self.images = {str(r[self.col["id"]]): r[self.col["image"]] for r in records
                           if isinstance(r[self.col["image"]], str)}
        for n, values in enumerate(records):
            values = {k: (None if is_missing(v) else v) for k, v in values.items()}
            key = values.get(self.col["id"])
            yield Row(key=str(n) if key is None else str(key), values=values,
                      label=f"{path.name} row {n}")

    def split_name_of(self, row: Row) -> str:
        return str(self.get(row, "split") or self.split)

    def record_id(self, row: Row) -> str:
        # TSV indices are unique across the file's splits: no split in the id.
        return f"{self.label}_{row.key}"

    def _image_strings(self, row: Row) -> list[str]:
        value = self.get(row, "image")
        if value is not None:
            if len(value) <= 64:  # a reference: "use the image of that index"
                ref = self.images.get(value.strip())
                if ref is None or len(ref) <= 64:
                    raise BadRow("bad_image", f"image refers to index {value!r}, which has no image")
                value = ref
            return [str(v) for v in as_list(value, "image")]
        return []

    def image_value(self, row: Row) -> Any:
        blobs = [decode_base64(s) for s in self._image_strings(row)]
        if not blobs:
            paths = [str(p) for p in as_list(self.get(row, "image_path"), "image_path")]
            if not paths:
                raise BadRow("missing_image", "no image")
            blobs = [(self.base_dir / p).read_bytes() if (self.base_dir / p).is_file() else p
                     for p in paths]
        if len(blobs) == 1 or self.opts.multi_image == "first":
            return blobs[0]
        return concat_images(blobs, self.base_dir)

    def convert(self, row: Row) -> dict[str, Any]:
        if self.get(row, "image") is None and self.get(row, "image_path") is None:
            raise Filtered  # VLMEvalKit's skip_noimg
        if self.split_filter and self.get(row, "split") not in (None, self.split_filter):
            raise Filtered
        if self.opts.multi_image == "skip" and len(self._image_strings(row)) > 1:
            raise Filtered
        question = self.get(row, "question")
        if not question or not str(question).strip():
            raise BadRow("missing_question", "empty question")
        meta = {k: self.get(row, k) for k in ("category", "l2_category", "hint") if self.get(row, k)}
        meta["index"] = row.key
        answer = self.get(row, "answer")
        if is_missing(answer):
            raise BadRow("missing_answer", "no answer")
        present = [c for c in self.option_cols if row.values.get(c) is not None]
        if "".join(present) != LETTERS[: len(present)]:
            raise BadRow("bad_choices", f"option columns {present} do not run A, B, ... without a gap")
        options = [row.values[c] for c in present]
        choices_col = row.values.get("choices")
        if not options and choices_col and str(row.values.get("question_type", "")) == "multi_choice":
            options = as_list(choices_col, "choices")  # MathVista TSV keeps choices as a list string
        if options:
            choices = check_choices(options)
            letter_src = row.values.get("answer_option") or answer
            try:
                letter = check_letter(letter_src, len(choices))
            except BadRow:
                letter = letter_for_text(str(answer), choices)
            return {"question": str(question).strip(), "choices": choices, "answer": letter,
                    "qtype": "multiple_choice",
                    "metric": "mathvista" if self.metric == "mathvista" else "mc_accuracy",
                    "meta": meta, "split": self.split_filter or self.split_name_of(row)}
        answers = clean_answers(as_list(answer, "answer"))
        if not answers:
            raise BadRow("missing_answer", "no answer")
        metric = self.metric
        if metric == "ocrbench" and str(meta.get("category", "")).strip().lower() == HMER_CATEGORY:
            metric = "ocrbench_hmer"
        main = majority_answer(answers) if metric == "vqa_accuracy" else answers[0]
        return {"question": str(question).strip(), "answer": main, "answers": answers,
                "qtype": numeric_or_short(main), "metric": metric, "meta": meta,
                "split": self.split_filter or self.split_name_of(row)}
