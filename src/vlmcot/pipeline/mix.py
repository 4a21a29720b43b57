"""Stage `mix`: the four SFT sets of the paper's Figure 5, in LLaVA conversation JSONL.

- format: ``format_per_dataset`` examples per dataset, a ``format_cot_fraction`` of them in CoT form
  and the rest direct, so a model learns both response formats and nothing else (model 1).
- direct: format + the filtered records' short answers (model 2).
- cot:    format + the filtered teacher rationales (model 3).
- both:   format + direct + cot (model 4, LLaVA-Reasoner-SFT).
Each may add the small "general" set (image descriptions; the paper's 2k instruction examples).
The direct set uses the same records as the CoT set (the paper's "corresponding short answers").

``source: sharegpt`` builds the same four mixes from the released ShareGPT-4o-Reasoning SFT files
(vlmcot.sharegpt) instead of our distilled data, so a user can skip distillation entirely.

    python stages/mix.py        # or: vlmcot mix
"""

from __future__ import annotations

import collections
import logging
import random
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.images import ImagePolicy, ImageRejected, check_image
from vlmcot.io import write_json, write_jsonl
from vlmcot.prompts import GENERAL_PROMPT, build_prompt, format_response
from vlmcot.records import CoTRecord, SFTRecord, Turn, VQARecord, load_vqa

SECTION = "mix"
# where the paper's 2k general rows come from (the ShareGPT-4o-Reasoning release's general file)
GENERAL_DOWNLOAD = ("huggingface-cli download Share4oReasoning/sft_data --repo-type dataset --local-dir "
                    "data/hub/sft_data, then unpack its image archives (image_data/*.tar.gz, image_mix/*.tar.gz) "
                    "under mix.general_image_root; or point mix.general_source at LLaVA-Instruct-150K's "
                    "llava_instruct_150k.json with general_image_root at COCO train2017")
MIXES = ("format", "direct", "cot", "both")
log = logging.getLogger(__name__)


class Config(StrictModel):
    # "distilled": our filter output; "sharegpt": the released SFT files under sharegpt_dir
    source: Literal["distilled", "sharegpt"] = "distilled"
    # source: sharegpt - the release's sft/ folder (or one of its JSONL files)
    sharegpt_dir: str | None = None
    # source: sharegpt - where the release's image archives were unpacked (prefixed to image paths)
    sharegpt_image_root: str | None = None
    # filtered CoT records from `filter`
    cot: str = "data/filter/cot.jsonl"
    # all prepared train records (source of the general description set)
    records: str = "data/prepared/train.jsonl"
    # output folder: format.jsonl, direct.jsonl, cot.jsonl, both.jsonl, general.jsonl
    out_dir: str = "data/mix"
    metrics: str = "metrics/mix.json"
    # format-aligned examples per dataset (paper: 50 from each of 9 datasets = 450, configs/paper.yaml; the
    # tiny embedded model needs 300 to learn the response formats, see params.yaml)
    format_per_dataset: int = Field(300, ge=0)
    # share of the format-aligned examples given in CoT form (the rest direct)
    format_cot_fraction: float = Field(0.5, ge=0, le=1)
    # add the general description set to every mix (paper: 2k general instruction examples)
    include_general: bool = True
    # size of the general set (0 = none)
    general_size: int = Field(200, ge=0)
    # a LLaVA-format conversation file ({"id", "image", "conversations": [{"from": "human"|"gpt", ...}]};
    # JSON list or JSONL: the release's sft/pt_data_mix_2k.jsonl, LLaVA-Instruct's llava_instruct_150k.json)
    # sampled to general_size for the general set; null: image descriptions of the prepared records
    general_source: str | None = None
    # the general rows' image paths are relative to this folder
    general_image_root: str | None = None
    # seed for the format and general samples
    seed: int = 0
    # bad input rows are named, counted and skipped; above this share the stage fails
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # every image a mix names is fully decoded once here, within these limits (vlmcot.images), so a
    # truncated file is named and skipped before SFT; source: sharegpt - sharegpt_image_root is an allowed root
    images: ImagePolicy = Field(default_factory=ImagePolicy)


def conversation(rec: VQARecord, mode: str, rationale: str | None = None, suffix: str = "") -> SFTRecord:
    prompt = build_prompt(rec, mode)
    response = format_response(rationale if mode == "cot" else None, rec.answer)
    return SFTRecord(
        id=f"{rec.id}-{mode}{suffix}",
        image=rec.image,
        conversations=[Turn(**{"from": "human", "value": f"<image>\n{prompt}"}),
                       Turn(**{"from": "gpt", "value": response})],
        dataset=rec.dataset,
        kind=mode,
    )


def general_conversation(rec: VQARecord) -> SFTRecord | None:
    desc = (rec.meta or {}).get("description")
    if not desc:
        return None
    return SFTRecord(
        id=f"{rec.id}-general",
        image=rec.image,
        conversations=[Turn(**{"from": "human", "value": f"<image>\n{GENERAL_PROMPT}"}),
                       Turn(**{"from": "gpt", "value": desc})],
        dataset=rec.dataset,
        kind="general",
    )


def general_rows(cfg: Config, report) -> list[SFTRecord]:
    """The rows of ``general_source`` whose image exists under ``general_image_root`` (LLaVA's format,
    normalised like the release's rows: vlmcot.sharegpt.sft_record), as kind "general"; bad rows are
    named in ``report``, never fatal one by one."""
    import json

    from vlmcot.sharegpt import convert_rows, iter_rows, sft_record

    path = Path(cfg.general_source)
    if path.suffix == ".json":  # LLaVA-Instruct ships one JSON list
        try:
            with path.open(encoding="utf-8") as f:
                data = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StageError(f"mix.general_source {path}: not a JSON file ({e})") from None
        if not isinstance(data, list):
            raise StageError(f"mix.general_source {path}: a .json file must hold a list of conversations "
                             "(JSONL: one per line)")
        rows = ((f"{path}: item {n}", n, row) for n, row in enumerate(data))
    else:
        rows = iter_rows(path)
    return list(convert_rows(rows, lambda _, row: sft_record(row, "general", "general", cfg.general_image_root,
                                                              check_image=True), report))


def build_mixes(cot: list[CoTRecord], train: list[VQARecord], cfg: Config,
                general_pool: list[SFTRecord] | None = None) -> dict[str, list[SFTRecord]]:
    """``general_pool``: the rows of mix.general_source (None: descriptions of the ``train`` records)."""
    rng = random.Random(cfg.seed)
    by_ds: dict[str, list[CoTRecord]] = collections.defaultdict(list)
    for r in sorted(cot, key=lambda r: r.id):
        by_ds[r.dataset].append(r)

    fmt: list[SFTRecord] = []
    fmt_ids: set[str] = set()
    for ds in sorted(by_ds):
        pick = rng.sample(by_ds[ds], min(cfg.format_per_dataset, len(by_ds[ds])))
        n_cot = round(len(pick) * cfg.format_cot_fraction)
        for i, r in enumerate(pick):
            fmt.append(conversation(r, "cot", r.cot) if i < n_cot else conversation(r, "direct"))
            fmt_ids.add(r.id)

    rest = [r for r in sorted(cot, key=lambda r: r.id) if r.id not in fmt_ids]
    direct = [conversation(r, "direct") for r in rest]
    cots = [conversation(r, "cot", r.cot) for r in rest]

    general: list[SFTRecord] = []
    if cfg.include_general and cfg.general_size:
        if general_pool is None:
            pool = [g for g in (general_conversation(r) for r in sorted(train, key=lambda r: r.id)) if g]
        else:
            pool = sorted(general_pool, key=lambda r: r.id)  # the draw depends on the seed, not the file order
        general = rng.sample(pool, min(cfg.general_size, len(pool)))

    mixes = {
        "format": fmt + general,
        "direct": fmt + direct + general,
        "cot": fmt + cots + general,
        "both": fmt + direct + cots + general,
        "general": general,
    }
    return mixes


def build_from_sharegpt(rows: list[SFTRecord], cfg: Config) -> dict[str, list[SFTRecord]]:
    """The four mixes from released rows: their direct / cot / general kinds, plus a format-aligned
    sample per dataset drawn from them (kept out of the direct and CoT sets, as for our own data)."""
    rng = random.Random(cfg.seed)
    rows = sorted(rows, key=lambda r: r.id)
    by = collections.defaultdict(list)
    for r in rows:
        by[(r.kind, r.dataset)].append(r)
    fmt: list[SFTRecord] = []
    n_cot = round(cfg.format_per_dataset * cfg.format_cot_fraction)
    for ds in sorted({r.dataset for r in rows if r.dataset}):
        for kind, n in (("cot", n_cot), ("direct", cfg.format_per_dataset - n_cot)):
            pool = by.get((kind, ds), [])
            fmt += rng.sample(pool, min(n, len(pool)))
    taken = {r.id for r in fmt}
    direct = [r for r in rows if r.kind == "direct" and r.id not in taken]
    cots = [r for r in rows if r.kind == "cot" and r.id not in taken]
    general = [r for r in rows if r.kind == "general"] if cfg.include_general else []
    if cfg.general_size and len(general) > cfg.general_size:
        general = rng.sample(general, cfg.general_size)
    return {"format": fmt + general, "direct": fmt + direct + general, "cot": fmt + cots + general,
            "both": fmt + direct + cots + general, "general": general}


def run(cfg: Config, tracker) -> None:
    if cfg.source == "sharegpt":
        from vlmcot.adapters.core import LoadReport
        from vlmcot.sharegpt import import_sft

        if not cfg.sharegpt_dir:
            raise StageError("mix.source is 'sharegpt' but mix.sharegpt_dir is not set")
        report = LoadReport()
        rows = import_sft(cfg.sharegpt_dir, cfg.sharegpt_image_root, report)
        report.check(cfg.max_bad_rate)
        rows, bad_images = check_images(rows, cfg, roots=[cfg.sharegpt_image_root] if cfg.sharegpt_image_root else [])
        _write(build_from_sharegpt(rows, cfg), cfg, tracker,
               {"skipped.sharegpt": report.bad, "skipped.images": len(bad_images)})
        return
    cot, bad_cot = load_vqa(cfg.cot, model=CoTRecord, max_error_rate=cfg.max_bad_rate, key="mix.max_bad_rate", log=log)
    train, bad_train = load_vqa(cfg.records, max_error_rate=cfg.max_bad_rate, key="mix.max_bad_rate", log=log)
    cot, bad_images = check_images(cot, cfg)
    metrics = {"skipped.cot": len(bad_cot), "skipped.records": len(bad_train), "skipped.images": len(bad_images)}
    pool = None
    if cfg.include_general and cfg.general_size and cfg.general_source:
        from vlmcot.adapters.core import LoadReport

        if not Path(cfg.general_source).is_file():
            raise StageError(f"mix.general_source {cfg.general_source} not found ({GENERAL_DOWNLOAD})")
        report = LoadReport(source=f"mix.general_source {cfg.general_source}")
        pool = general_rows(cfg, report)
        report.check(cfg.max_bad_rate)
        # imported rows never went through prepare/filter: decode their images here, like sharegpt's
        pool, bad_general = check_images(pool, cfg, [cfg.general_image_root] if cfg.general_image_root else [])
        metrics["skipped.general"] = report.bad + len(bad_general)
        if len(pool) < cfg.general_size:
            log.warning("mix: general_source has %d usable rows, fewer than general_size %d", len(pool),
                        cfg.general_size)
    _write(build_mixes(cot, train, cfg, pool), cfg, tracker, metrics)


def check_images(rows: list, cfg: Config, roots: list[str] = ()) -> tuple[list, list[str]]:
    """The rows whose image passes :func:`vlmcot.images.check_image` (full decode, ``mix.images``
    limits; each distinct file once), and one message per skipped row naming its id, file and why.

    Rows from ``filter`` were decoded there already; this is what guards imported (sharegpt) rows,
    and a file changed since. Cost on the embedded mix: see docs/reliability.md. More bad rows than
    ``max_bad_rate`` fail the stage (StageError naming the first)."""
    policy = cfg.images.model_copy(update={"roots": [*cfg.images.roots, *roots]}) if roots else cfg.images
    verdict: dict[str, str | None] = {}
    good, errors = [], []
    for r in rows:
        if not r.image:  # text-only imported rows carry no image (sft_rows decides about them)
            good.append(r)
            continue
        if r.image not in verdict:
            try:
                check_image(r.image, ".", policy, decode=True)
                verdict[r.image] = None
            except ImageRejected as e:
                verdict[r.image] = f"{e.reason}: {e}"
        if verdict[r.image] is None:
            good.append(r)
        else:
            errors.append(f"record {r.id}: {verdict[r.image]}")
    for e in errors[:10]:
        log.warning("mix: skipped %s", e)
    if rows and len(errors) > cfg.max_bad_rate * len(rows):
        raise StageError(f"mix: {len(errors)} of {len(rows)} rows have an unusable image, over "
                         f"mix.max_bad_rate={cfg.max_bad_rate} (first: {errors[0]})")
    return good, errors


def plan_notes(cfg: Config) -> list[str]:
    """What `vlmcot plan` says before the mix can run: a general_source to download."""
    if cfg.source != "distilled" or not (cfg.include_general and cfg.general_size and cfg.general_source):
        return []
    notes = []
    if not Path(cfg.general_source).is_file():
        notes.append(f"mix: MISSING general_source {cfg.general_source}: {GENERAL_DOWNLOAD}")
    if cfg.general_image_root and not Path(cfg.general_image_root).is_dir():
        notes.append(f"mix: MISSING general_image_root {cfg.general_image_root}: unpack the general rows' images "
                     "there (the release's image archives; COCO train2017 for LLaVA-Instruct)")
    return notes


def _write(mixes: dict[str, list[SFTRecord]], cfg: Config, tracker, metrics: dict[str, float]) -> None:
    out = Path(cfg.out_dir)
    for name, rows in mixes.items():
        write_jsonl(out / f"{name}.jsonl", [r.model_dump_llava() for r in rows], sort_key="id")
        metrics[f"{name}.rows"] = len(rows)
        for kind, n in sorted(collections.Counter(r.kind for r in rows).items()):
            metrics[f"{name}.{kind}"] = n
    write_json(cfg.metrics, metrics)
    tracker.log_metrics(metrics)
    log.info("mix sizes: %s", {k: len(v) for k, v in mixes.items()})
