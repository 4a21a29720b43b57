"""AI2D from AllenAI's own release (``ai2d-all.zip`` + ``ai2d_test_ids.csv``): the training split.

No hub repo carries AI2D's train split in a loadable question/options/answer schema (lmms-lab/ai2d
is the 3,088-question test set only; HuggingFaceM4/the_cauldron's ai2d is chat text), so the
paper-scale profile reads the official release from a local folder (docs/paper.md says where to get
it). Layout, as unzipped::

    <local_path>/ai2d/images/<n>.png
    <local_path>/ai2d/questions/<n>.png.json   {"imageName": "<n>.png", "questions": {"<text>":
                                                 {"answerTexts": [...], "correctAnswer": i,
                                                  "abcLabel": bool, "questionId": "<n>.png-k"}}}
    <local_path>/ai2d_test_ids.csv             one test image number per line

(``<local_path>/images`` etc. without the ``ai2d/`` level works too.) Train = images not in the
test ids (~12.4k questions; the paper distilled 11.9k), test = the rest. Options "{}" (a null
option) and repeated option texts are dropped, as the reference loaders do. ``abcLabel`` questions
ask about letters the benchmark draws over the diagram's text boxes; the raw images still show the
original words, so those questions are skipped by default (``options.abc_label: keep`` keeps them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from vlmcot.adapters.core import Adapter, Filtered, Row, SourceError, register
from vlmcot.adapters.text import BadRow
from vlmcot.config import StrictModel
from vlmcot.records import LETTERS

DOWNLOAD = (
    "download https://ai2-public-datasets.s3.amazonaws.com/diagrams/ai2d-all.zip (unzip it there) and "
    "https://s3-us-east-2.amazonaws.com/prior-datasets/ai2d_test_ids.csv (into the same folder)"
)


class AI2DOfficialOptions(StrictModel):
    # the test image ids file; null = ai2d_test_ids.csv in local_path (or in its ai2d/ folder)
    test_ids: str | None = None
    # "skip" questions about letters drawn over the diagram (the raw images lack them), or "keep"
    abc_label: Literal["skip", "keep"] = "skip"


@register
class AI2DOfficial(Adapter):
    name = "ai2d_official"
    description = "AI2D from AllenAI's release (local_path: ai2d-all.zip unzipped + ai2d_test_ids.csv)"
    dataset = "ai2d"
    split = "train"
    metric = "mc_accuracy"
    fields: dict[str, str] = {}
    requires_local = DOWNLOAD
    Options = AI2DOfficialOptions

    def _root(self) -> Path:
        if self.cfg.local_path is None:
            raise SourceError(f"{self.describe()}: set local_path to the unzipped release ({DOWNLOAD})")
        base = Path(self.cfg.local_path)
        for root in (base / "ai2d", base):
            if (root / "questions").is_dir() and (root / "images").is_dir():
                return root
        raise SourceError(f"{self.describe()}: no questions/ and images/ under {base} ({DOWNLOAD})")

    def _test_ids(self, root: Path) -> set[int]:
        cands = [Path(self.opts.test_ids)] if self.opts.test_ids else [Path(self.cfg.local_path) / "ai2d_test_ids.csv",
                                                                          root / "ai2d_test_ids.csv"]
        for p in cands:
            if p.is_file():
                ids = set()
                for n, line in enumerate(p.read_text().splitlines()):
                    if line.strip():
                        try:
                            ids.add(int(line.strip()))
                        except ValueError:
                            raise SourceError(f"{p} line {n + 1}: {line.strip()!r} is not an image number") from None
                return ids
        raise SourceError(f"{self.describe()}: ai2d_test_ids.csv not found ({', '.join(map(str, cands))}; {DOWNLOAD})")

    def rows(self) -> Iterator[Row]:
        if self.split_name not in ("train", "test"):
            raise SourceError(f"{self.describe()}: split must be train or test")
        root = self._root()
        test = self._test_ids(root)
        self.base_dir = root / "images"
        files = sorted((root / "questions").glob("*.json"), key=lambda p: (len(p.name), p.name))
        for f in files:
            try:
                data = json.loads(f.read_text())
                image_name = str(data["imageName"])
                image_id = int(image_name.split(".")[0])
                questions = data["questions"]
            except (ValueError, KeyError, TypeError) as e:
                raise SourceError(f"{f}: not an AI2D questions file ({type(e).__name__}: {e})") from None
            if (image_id in test) != (self.split_name == "test"):
                continue
            for text, q in questions.items():
                key = str(q.get("questionId") or f"{image_name}-{text}") if isinstance(q, dict) else text
                yield Row(key=key, values={"question": text, "q": q, "image": image_name, "image_id": image_id},
                          label=f"{f.name} question {key}")

    def record_id(self, row: Row) -> str:
        return f"{self.label}_{self.split_name}_{row.key}"

    def image_value(self, row: Row) -> Any:
        return row.values["image"]  # a file name, resolved against base_dir (images/)

    def convert(self, row: Row) -> dict[str, Any]:
        q = row.values["q"]
        if not isinstance(q, dict):
            raise BadRow("bad_question", "question entry is not an object")
        if q.get("abcLabel") and self.opts.abc_label == "skip":
            raise Filtered()
        texts, correct = q.get("answerTexts"), q.get("correctAnswer")
        if not isinstance(texts, list) or not isinstance(correct, int) or not 0 <= correct < len(texts):
            raise BadRow("missing_answer", f"answerTexts/correctAnswer unusable: {texts!r} / {correct!r}")
        answer = str(texts[correct]).strip()
        choices: list[str] = []
        for t in texts:
            t = str(t).strip()
            if t == "{}" or not t or t in choices:  # a null option, or a repeat of an earlier one
                continue
            choices.append(t)
        if answer not in choices:
            raise BadRow("missing_answer", f"correct option {answer!r} is a null option")
        if len(choices) < 2 or len(choices) > len(LETTERS):
            raise BadRow("bad_choices", f"{len(choices)} options")
        question = str(row.values["question"]).strip()
        if not question:
            raise BadRow("missing_question", "empty question")
        return {"question": question, "choices": choices, "answer": LETTERS[choices.index(answer)],
                "qtype": "multiple_choice", "meta": {"image_id": row.values["image_id"],
                                                      "abc_label": bool(q.get("abcLabel"))}}
