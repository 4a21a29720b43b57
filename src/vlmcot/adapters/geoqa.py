"""G-LLaVA's Geo170K (GeoQA+ / Geometry3K QA tuning): LLaVA conversations plus an image archive.

Rows hold an image *path* (``geoqa_plus/8.png``) and a two-turn conversation; the pixels live in
``images.zip`` (or an ``images/`` folder, as in G-LLaVA's ``playground/data``). The human turn
reads ``First perform reasoning, then finally select the question from the choices in the
following format: Answer: xxx.\\nQuestion:...\\nChoices:\\nA:40°\\nB:...`` and the gpt turn is a
solution ending in ``Answer:A``. Records get the question, the choices, the letter, and the
original solution in ``meta["solution"]``. Sources: Luckyjhg/Geo170K (split ``qa_tuning``; pin a
revision, files moved at main), or a local G-LLaVA ``qa_tuning.json``.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from vlmcot.adapters.core import Adapter, Row, SourceError, register
from vlmcot.adapters.images import DEFAULT_POLICY, ImageError, check_size, read_file
from vlmcot.adapters.text import BadRow, check_choices, numeric_or_short
from vlmcot.config import StrictModel
from vlmcot.images import ImagePolicy


class GeoOptions(StrictModel):
    # images.zip or a folder holding the images; null = images.zip / images/ next to the data
    # (local_path), else images.zip downloaded from the hub repo
    images: str | None = None
    # name of the archive in the hub repo
    images_archive: str = "images.zip"


_INSTRUCTION = re.compile(r"^.*?following format:\s*Answer:\s*xxx\.?\s*", re.IGNORECASE | re.DOTALL)
_CHOICE_LINE = re.compile(r"^\s*([A-Z])\s*[:：.]\s*(.*?)\s*$")
_ANSWER_LETTER = re.compile(r"Answer\s*[:：]\s*\(?([A-Z])\b")
_OPTION_PHRASE = re.compile(r"answer is (?:option\s*)?\(?([A-Z])\b")


def parse_question(text: str) -> tuple[str, list[str]]:
    """(question, choices) from a G-LLaVA human turn; choices empty for free-form questions."""
    text = text.replace("<image>", "").strip()
    text = _INSTRUCTION.sub("", text, count=1)
    body, _, choice_block = text.partition("Choices:")
    question = body.split("Question:", 1)[1] if "Question:" in body else body
    choices: list[str] = []
    for line in choice_block.strip().splitlines():
        m = _CHOICE_LINE.match(line)
        if m:
            choices.append(m.group(2))
        elif choices and line.strip():  # a wrapped option continues the previous one
            choices[-1] += " " + line.strip()
    return question.strip(), choices


def parse_answer(solution: str, n_choices: int) -> str:
    """The letter after the last ``Answer:`` (or ``the answer is option X``), or the free text."""
    if n_choices:
        letters = _ANSWER_LETTER.findall(solution) or _OPTION_PHRASE.findall(solution)
        if not letters or letters[-1] not in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n_choices]:
            raise BadRow("missing_answer", "no 'Answer: <letter>' among the choices in the solution")
        return letters[-1]
    parts = solution.rsplit("Answer:", 1)
    if len(parts) < 2 or not parts[1].strip():
        raise BadRow("missing_answer", "no 'Answer:' in the solution")
    return parts[1].strip().splitlines()[0].strip()


class _ImageStore:
    """Find ``geoqa_plus/8.png`` in a zip or folder, whatever prefix (``images/``) it was packed under."""

    def __init__(self, where: Path, policy: ImagePolicy | None = None):
        self.where = where
        # the folder itself is always allowed; limits from prepare.images
        policy = policy or DEFAULT_POLICY
        self.policy = policy.model_copy(update={"roots": [*policy.roots, str(where)]})
        self.zip: zipfile.ZipFile | None = None
        self.index: dict[str, str] = {}
        if where.is_file():
            try:
                self.zip = zipfile.ZipFile(where)
            except zipfile.BadZipFile as e:
                raise SourceError(f"gllava: {where} is not a zip archive ({e})") from None
            for name in self.zip.namelist():
                if name.endswith("/"):
                    continue
                parts = PurePosixPath(name).parts
                for i in range(len(parts)):  # every suffix: 'images/a/b.png', 'a/b.png', 'b.png'
                    self.index.setdefault("/".join(parts[i:]), name)
        elif not where.is_dir():
            raise SourceError(f"gllava: image archive or folder {where} not found")

    def read(self, rel: str) -> bytes:
        rel = rel.lstrip("/")
        if self.zip is not None:
            member = self.index.get(rel)
            if member is None:
                raise ImageError(f"image {rel} not in {self.where.name}")
            # the declared size, before anything is inflated (a 5 GB member is never read)
            check_size(self.zip.getinfo(member).file_size, f"{rel} in {self.where.name}", self.policy)
            with self.zip.open(member) as f:  # bounded even if the header lies
                data = f.read(self.policy.max_bytes + 1)
            check_size(len(data), f"{rel} in {self.where.name}", self.policy)
            return data
        for p in (self.where / rel, self.where / "images" / rel):
            if p.is_file():
                return read_file(p, None, self.policy)
        raise ImageError(f"image {rel} not under {self.where}")


@register
class GeoQA(Adapter):
    name = "gllava"
    description = "G-LLaVA Geo170K QA tuning (GeoQA+ / Geometry3K): conversations + images.zip"
    dataset = "gllava"
    hub_ids = ("Luckyjhg/Geo170K",)
    split = "qa_tuning"
    metric = "mc_accuracy"
    fields = {"image": "image", "conversations": "conversations"}
    Options = GeoOptions

    def __init__(self, cfg):
        super().__init__(cfg)
        self._store: _ImageStore | None = None

    def rows(self) -> Iterator[Row]:
        local = Path(self.cfg.local_path) if self.cfg.local_path else None
        if local is not None and local.is_file():
            # G-LLaVA's playground/data/qa_tuning.json (a JSON list) or a JSONL export.
            yield from self._file_rows(local)
        else:
            yield from super().rows()

    def _file_rows(self, path: Path) -> Iterator[Row]:
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
            items = data if isinstance(data, list) else [data]
            labels = [f"item {n}" for n in range(len(items))]
        except json.JSONDecodeError:
            items, labels = [], []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        items.append(json.loads(line))
                    except json.JSONDecodeError:
                        items.append(None)  # reported as a bad row below
                    labels.append(f"line {n}")
        for n, (item, label) in enumerate(zip(items, labels, strict=True)):
            yield Row(key=str(n), values=item if isinstance(item, dict) else {}, label=f"{path.name} {label}")

    def _images(self) -> _ImageStore:
        if self._store is None:
            self._store = _ImageStore(self._image_location(), self.images)
        return self._store

    def _image_location(self) -> Path:
        if self.opts.images:
            return Path(self.opts.images)
        if self.cfg.local_path:
            local = Path(self.cfg.local_path)
            base = local.parent if local.is_file() else local
            for cand in (base / self.opts.images_archive, base / "images"):
                if cand.exists():
                    return cand
            raise SourceError(f"gllava: no {self.opts.images_archive} or images/ in {base}; "
                              "set options.images")
        from huggingface_hub import hf_hub_download

        try:
            return Path(hf_hub_download(self.cfg.hub_id or self.hub_ids[0], self.opts.images_archive,
                                        repo_type="dataset", revision=self.cfg.revision,
                                        cache_dir=self.cfg.cache_dir))
        except Exception as e:  # noqa: BLE001 - offline, missing file: a source-level problem
            raise SourceError(f"gllava: cannot fetch {self.opts.images_archive}: {e}") from None

    def image_value(self, row: Row) -> Any:
        rel = self.get(row, "image")
        if not isinstance(rel, str) or not rel.strip():
            raise BadRow("missing_image", "no image path")
        return self._images().read(rel.strip())

    def convert(self, row: Row) -> dict[str, Any]:
        conv = self.get(row, "conversations")
        if not isinstance(conv, list):
            raise BadRow("parse_error", "conversations is not a list")
        human = next((t.get("value") for t in conv if isinstance(t, dict) and t.get("from") == "human"), None)
        gpt = next((t.get("value") for t in conv if isinstance(t, dict) and t.get("from") == "gpt"), None)
        if not isinstance(human, str) or not isinstance(gpt, str) or not gpt.strip():
            raise BadRow("parse_error", "needs a human and a gpt turn")
        question, options = parse_question(human)
        if not question:
            raise BadRow("missing_question", "empty question")
        meta = {"solution": gpt.strip(), "source_image": self.get(row, "image")}
        if options:
            choices = check_choices(options)
            return {"question": question, "choices": choices,
                    "answer": parse_answer(gpt, len(choices)), "qtype": "multiple_choice",
                    "meta": meta}
        answer = parse_answer(gpt, 0)
        return {"question": question, "answer": answer, "answers": [answer],
                "qtype": numeric_or_short(answer), "metric": "exact_match", "meta": meta}
