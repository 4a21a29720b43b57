"""Generating the world: the top-level config, the family registry, and ``generate`` which draws every
image, writes it under ``<out_dir>/images/<dataset>/<id>.png`` and returns the VQA records.

Each record gets its own random stream seeded by (seed, dataset, split, index), so records do not
depend on each other: raising ``n_train`` appends records and leaves the existing ones unchanged.
Eval images are redrawn until they differ from every train image of their family.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import ModuleType
from typing import Any

from pydantic import Field
from tqdm import tqdm

from vlmcot.config import StrictModel
from vlmcot.records import VQARecord
from vlmcot.world import chart, doc, geo, sci, sign
from vlmcot.world.chart import ChartConfig
from vlmcot.world.common import Explanation, digest, png_bytes, write_bytes
from vlmcot.world.doc import DocConfig
from vlmcot.world.geo import GeoConfig
from vlmcot.world.sci import SciConfig
from vlmcot.world.sign import SignConfig

# config field name (and facts["family"]) -> family module
FAMILIES: dict[str, ModuleType] = {"chart": chart, "doc": doc, "geo": geo, "sci": sci, "sign": sign}


class WorldConfig(StrictModel):
    """The whole synthetic world: one section per task family."""

    seed: int = 0  # master seed; every record's random stream derives from it
    image_size: int = Field(64, ge=64, le=96)  # square image side in pixels (layouts scale with it)
    chart: ChartConfig = Field(default_factory=ChartConfig)  # synth_chart (ChartQA-like)
    doc: DocConfig = Field(default_factory=DocConfig)  # synth_doc (DocVQA/InfoVQA-like)
    geo: GeoConfig = Field(default_factory=GeoConfig)  # synth_geo (MathVision/G-LLaVA-like)
    sci: SciConfig = Field(default_factory=SciConfig)  # synth_sci (AI2D/SQA/A-OKVQA-like)
    sign: SignConfig = Field(default_factory=SignConfig)  # synth_sign (TextVQA-like), off by default


def family_of(facts: dict[str, Any] | None) -> ModuleType:
    """The family module that wrote these facts; ValueError when there is none."""
    if not isinstance(facts, dict) or facts.get("family") not in FAMILIES:
        fam = facts.get("family") if isinstance(facts, dict) else None
        raise ValueError(f"facts name no known world family (family={fam!r})")
    return FAMILIES[facts["family"]]


def solve(facts: dict[str, Any]) -> str:
    """The correct short answer (the letter for multiple choice) implied by ``facts``."""
    return family_of(facts).solve(facts)


def explain(facts: dict[str, Any], rng: random.Random, error: str | None = None) -> Explanation:
    """A step-by-step rationale for ``facts``; with ``error`` set, one injected error of that kind."""
    return family_of(facts).explain(facts, rng, error)


def _record_rng(seed: int, dataset: str, split: str, index: int, attempt: int) -> random.Random:
    # str seeds go through SHA-512 in CPython's random: stable across runs and PYTHONHASHSEED.
    return random.Random(f"{seed}:{dataset}:{split}:{index}:{attempt}")


def generate(cfg: WorldConfig, out_dir: str | Path, progress: bool | None = None) -> list[VQARecord]:
    """Draw every enabled family's train and eval records; write images; return the records.

    ``record.image`` is ``<out_dir>/images/<dataset>/<id>.png`` exactly as ``out_dir`` was given
    (pass a repo-relative path for portable records). Stale PNGs left in those folders by an
    earlier, larger run are removed. ``progress`` None shows a bar only on a terminal.
    """
    out_dir = Path(out_dir)
    records: list[VQARecord] = []
    for key, fam in FAMILIES.items():
        fcfg = getattr(cfg, key)
        if not fcfg.enabled:
            continue
        img_dir = out_dir / "images" / fam.DATASET
        written: set[str] = set()
        train_digests: set[str] = set()
        total = fcfg.n_train + fcfg.n_eval
        bar = tqdm(
            total=total, desc=f"world {fam.DATASET}", disable=None if progress is None else not progress
        )
        for split, n in (("train", fcfg.n_train), ("eval", fcfg.n_eval)):
            for i in range(n):
                rid = f"{fam.DATASET}-{split}-{i:06d}"
                for attempt in range(1000):
                    s = fam.make(_record_rng(cfg.seed, fam.DATASET, split, i, attempt), fcfg)
                    data = png_bytes(fam.draw(s.facts, cfg.image_size))
                    h = digest(data)
                    if split == "train" or h not in train_digests:
                        break
                else:
                    raise RuntimeError(
                        f"{rid}: could not draw an eval image unlike every train image; widen the {key} config"
                    )
                if split == "train":
                    train_digests.add(h)
                path = img_dir / f"{rid}.png"
                write_bytes(path, data)
                written.add(path.name)
                meta: dict[str, Any] = {
                    "description": fam.describe(s.facts),
                    "op": s.facts["op"],
                    "calc": s.facts["op"] in fam.CALC_OPS,
                    "family": key,
                }
                records.append(
                    VQARecord(
                        id=rid,
                        image=path.as_posix(),
                        question=s.question,
                        answer=s.answer,
                        answers=s.answers,
                        choices=s.choices,
                        dataset=fam.DATASET,
                        qtype=fam.QTYPE,
                        split=split,
                        metric=fam.METRIC,
                        facts=s.facts,
                        meta=meta,
                    )
                )
                bar.update(1)
        bar.close()
        if img_dir.is_dir():
            for p in img_dir.glob("*.png"):
                if p.name not in written:
                    p.unlink()
    return records
