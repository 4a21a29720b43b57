"""Stage `prepare`: normalise the source into VQA records + image files (paper stage 0).

Embedded default: the synthetic visual-reasoning world (vlmcot.world). Paper scale (``source: hub``):
the real training sources and benchmarks through HF ``datasets`` adapters (vlmcot.adapters). Writes
``<out_dir>/train.jsonl`` and ``<out_dir>/eval.jsonl`` (sorted by id) and images under
``<out_dir>/images/<dataset>/``, and ``<out_dir>/images.sha256``: the sha256 of every image a kept
record names (``sha256sum -c`` format); per-dataset counts to metrics/prepare.json.

Why the manifest: the later stages depend on it and on the two JSONL files instead of on the
``<out_dir>`` folder. An image rewritten by prepare changes the manifest, so every stage that reads
images goes stale, as before; but a no-op ``dvc repro`` checks the folder's thousands of files once
(prepare's own output) instead of once per dependent stage (#18: 20 stages x 7,202 files).

    python stages/prepare.py        # or: vlmcot prepare
"""

from __future__ import annotations

import collections
import hashlib
import logging
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.adapters.core import LoadReport, SourceConfig, load
from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.images import ImagePolicy, read_image
from vlmcot.io import write_json, write_jsonl, write_text
from vlmcot.records import VQARecord, validate_vqa
from vlmcot.world import WorldConfig, generate

SECTION = "prepare"
log = logging.getLogger(__name__)


class Config(StrictModel):
    # where the records come from: "synthetic" (the embedded world, offline) or "hub" (HF datasets
    # adapters for the real sources, configs/paper.yaml; a local_path per source works offline)
    source: Literal["synthetic", "hub"] = "synthetic"
    # output folder: train.jsonl, eval.jsonl, images/
    out_dir: str = "data/prepared"
    # flat per-dataset counts for `dvc metrics`
    metrics: str = "metrics/prepare.json"
    # fail the stage if more than this fraction of records is invalid (each one is logged and skipped)
    max_error_rate: float = Field(0.01, ge=0, le=1)
    world: WorldConfig = WorldConfig()
    # source: hub only - each entry is a vlmcot.adapters.SourceConfig (docs/datasets.md)
    train_sources: list[SourceConfig] = []
    eval_sources: list[SourceConfig] = []
    # source: hub only - fail when a source has more than this share of unusable rows
    max_bad_fraction: float = Field(0.02, ge=0, le=1)
    # true: the Hugging Face hub stays off (HF_HUB_OFFLINE=1 unless the environment says otherwise;
    # only local_path sources and the hub cache load). false: hub downloads on (the paper profile)
    offline: bool = True
    # every image is fully decoded once here, within these limits (vlmcot.images); out_dir is always allowed
    images: ImagePolicy = Field(default_factory=ImagePolicy)


def plan_notes(cfg: Config) -> list[str]:
    """What `vlmcot plan` should tell the user before this stage can run: hub access, and local
    sources that are missing, with what to download."""
    from vlmcot.adapters.core import get_adapter

    if cfg.source != "hub":
        return []
    notes = [f"prepare: hub access {'off (prepare.offline: true; local_path sources and the hub cache only)' if cfg.offline else 'on (prepare.offline: false)'}"]  # noqa: E501
    for split, sources in (("train", cfg.train_sources), ("eval", cfg.eval_sources)):
        for src in sources:
            need = get_adapter(src.name).requires_local
            if src.local_path is not None and not Path(src.local_path).exists():
                notes.append(f"prepare: MISSING {split} source {src.name}: local_path {src.local_path} does not exist"
                             + (f"; {need}" if need else ""))
            elif src.local_path is None and need:
                notes.append(f"prepare: {split} source {src.name} needs local_path: {need}")
            elif src.local_path is None and cfg.offline:
                notes.append(f"prepare: {split} source {src.name} reads the hub while offline: only a cached copy "
                             "loads (set prepare.offline: false or a local_path)")
    return notes


def split_records(records: list[VQARecord]) -> dict[str, list[VQARecord]]:
    out: dict[str, list[VQARecord]] = collections.defaultdict(list)
    for r in records:
        out[r.split].append(r)
    return out


def load_hub(cfg: Config, out_dir: Path, metrics: dict[str, float]) -> list[VQARecord]:
    """Every configured source through its adapter; train sources land in train.jsonl, benchmarks in
    eval.jsonl whatever the source's own split name is."""
    records: list[VQARecord] = []
    for split, sources in (("train", cfg.train_sources), ("eval", cfg.eval_sources)):
        for src in sources:
            report = LoadReport()
            for rec in load(src, out_dir / "images", report, images=cfg.images):
                records.append(rec.model_copy(update={"split": split}))
            report.check(cfg.max_bad_fraction)
            metrics.update(report.as_metrics(f"source.{split}.{src.name}"))
    return records


def image_manifest(records: list[VQARecord], images: ImagePolicy, root: str | Path = ".") -> str:
    """``sha256sum`` lines ("<hex>  <path>"), one per distinct image the records name (relative paths
    against ``root``, written as the records give them), sorted by path: ``sha256sum -c
    <out_dir>/images.sha256`` from the repo root checks the images against it."""
    lines = [f"{hashlib.sha256(read_image(path, root, images)).hexdigest()}  {path}"
             for path in sorted({r.image for r in records})]
    return "".join(f"{line}\n" for line in lines)


def run(cfg: Config, tracker) -> None:
    out_dir = Path(cfg.out_dir)
    metrics: dict[str, float] = {}
    if cfg.source == "synthetic":
        records = generate(cfg.world, out_dir)
    else:
        if not cfg.train_sources and not cfg.eval_sources:
            raise StageError("prepare.source is 'hub' but prepare.train_sources and prepare.eval_sources are empty")
        records = load_hub(cfg, out_dir, metrics)
    policy = cfg.images.model_copy(update={"roots": [*cfg.images.roots, str(out_dir)]})
    good, errors = validate_vqa((r.model_dump(mode="json") for r in records), verify_images=True, images=policy)
    for e in errors[:20]:
        log.warning("skipped %s", e)
    rate = len(errors) / max(1, len(records))
    if rate > cfg.max_error_rate:
        raise StageError(f"{len(errors)}/{len(records)} invalid records (> prepare.max_error_rate="
                         f"{cfg.max_error_rate}); first: {errors[0]}")
    manifest = image_manifest(good, policy)
    metrics.update({"records": len(good), "invalid": len(errors), "images": manifest.count("\n")})
    write_text(out_dir / "images.sha256", manifest)
    for split, recs in sorted(split_records(good).items()):
        write_jsonl(out_dir / f"{split}.jsonl", recs, sort_key="id")
        for ds, n in sorted(collections.Counter(r.dataset for r in recs).items()):
            metrics[f"{ds}.{split}"] = n
    write_json(cfg.metrics, metrics)
    tracker.log_metrics(metrics)
    log.info("prepared %d records (%d invalid) in %s", len(good), len(errors), out_dir)
