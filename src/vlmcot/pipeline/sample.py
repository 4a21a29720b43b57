"""Stage `sample`: N candidates per question from the SFT model, scored (paper section 3.3).

    python stages/sample.py --item train     # same as: vlmcot sample --item train

A DVC foreach: ``sample@train`` samples the DPO source questions (pairs are built from them),
``sample@eval`` samples held-out eval questions for the ``rerank`` stage (and any other item in
``items``, e.g. a ``tune`` slice of train the pairs never saw). Writes
``<out_dir>/<item>/candidates.jsonl`` (one :class:`~vlmcot.records.Candidate` per row, sorted by
question id and sample index) and ``<metrics_dir>/sample_<item>.json``. Interruptible: finished
chunks live in ``candidates.partial.jsonl`` beside the output until the stage completes (see
vlmcot.sampling), so a rerun after a crash continues where it stopped and writes identical output.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vlmcot.config import ConfigError, StrictModel
from vlmcot.generation import GenerationConfig
from vlmcot.io import write_json, write_jsonl
from vlmcot.server_backend import ServerConfig
from vlmcot.vllm_backend import VLLMConfig

log = logging.getLogger(__name__)

SECTION = "sample"
SHARDABLE = True  # `--shard i/N` samples every N-th chunk; the plain run merges (vlmcot.sampling)


class ItemConfig(StrictModel):
    """Which questions one foreach item samples."""

    # VQA records to sample questions from
    records: str = "data/prepared/train.jsonl"
    # only these datasets (None: all in the records)
    datasets: list[str] | None = None
    # per dataset, skip the first `offset` questions by id (a disjoint slice for tuning)
    offset: int = Field(0, ge=0)
    # per dataset, then take at most this many questions by id (None: all)
    max_per_dataset: int | None = Field(None, ge=1)
    # candidates per question (None: the section's num_samples)
    num_samples: int | None = Field(None, ge=1)


class Config(StrictModel):
    # model that samples: the SFT model trained on both CoT and direct data
    model: str = "models/sft/both"
    # foreach items: name -> question selection (train: DPO sources; eval: rerank questions)
    items: dict[str, ItemConfig] = {
        # synth_doc left out on purpose (DPO's effect on a dataset that supplied no pairs); synth_sci too: the
        # embedded SFT model guesses there, so its pairs are noise (params.yaml, bench/bench_dpo.py)
        "train": ItemConfig(records="data/prepared/train.jsonl", datasets=["synth_chart", "synth_geo"],
                            max_per_dataset=700),
        "eval": ItemConfig(records="data/prepared/eval.jsonl", max_per_dataset=75, num_samples=16),
    }
    # candidates go to <out_dir>/<item>/candidates.jsonl
    out_dir: str = "data/sample"
    # metrics go to <metrics_dir>/sample_<item>.json
    metrics_dir: str = "metrics"
    # candidates per question (paper: 32)
    num_samples: int = Field(8, ge=1)
    # sampling temperature for short-answer and numeric questions (paper: 1.0)
    temperature_short: float = Field(0.7, gt=0)
    # sampling temperature for multiple-choice questions (paper: 1.2)
    temperature_mc: float = Field(0.9, gt=0)
    # nucleus mass (1.0: plain sampling, as the paper)
    top_p: float = Field(1.0, gt=0, le=1)
    # longest response in tokens (CoT answers peak near 100 tokens)
    max_new_tokens: int = Field(128, ge=1)
    # questions per generate call (each returns num_samples sequences)
    batch_size: int = Field(16, ge=1)
    # questions per durable chunk (a kill loses at most one chunk of work)
    chunk_size: int = Field(32, ge=1)
    # seeds every chunk's draws together with the chunk index
    seed: int = 0
    # prompt layout (vlmcot.prompts.PROMPT_STYLES); pairs.prompt_style must match
    prompt_style: str = "paper"
    # a candidate is correct when its score under the record's metric reaches this (1.0: full credit)
    min_score: float = Field(1.0, ge=0, le=1)
    # generation backend: hf (transformers in-process), vllm (in-process; needs the vllm package) or
    # server (vLLM OpenAI-compatible servers in their own environment: docs/gpu.md)
    backend: Literal["hf", "vllm", "server"] = "hf"
    # vLLM engine settings (backend: vllm only)
    vllm: VLLMConfig = VLLMConfig()
    # vLLM servers (backend: server only)
    server: ServerConfig = ServerConfig()
    # weights dtype (paper scale: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuda when available, else cpu (or "cuda:1", "cpu")
    device: str = "auto"
    # image paths in records are relative to this folder
    root: str = "."
    # fail the stage if more than this share of records is malformed
    max_bad_rate: float = Field(0.01, ge=0, le=1)

    @field_validator("items")
    @classmethod
    def _names(cls, v: dict[str, ItemConfig]) -> dict[str, ItemConfig]:
        for name in v:
            if not name or "/" in name or "." in name:
                raise ValueError(f"item name {name!r} must be non-empty without '/' or '.'")
        return v


def _item(cfg: Config, item: str | None) -> str:
    if not item:
        raise ConfigError(f"sample: which item? pass --item, one of {sorted(cfg.items)}")
    if item not in cfg.items:
        raise ConfigError(f"sample.items: no item named {item!r} (have {sorted(cfg.items)})")
    return item


def paths(cfg: Config, item: str) -> tuple[Path, Path, Path]:
    """(candidates, partial file, metrics) of one item."""
    out = Path(cfg.out_dir) / item
    return out / "candidates.jsonl", out / "candidates.partial.jsonl", Path(cfg.metrics_dir) / f"sample_{item}.json"


def select_questions(spec: ItemConfig, max_bad_rate: float):
    """The item's questions: valid records, sorted by id, dataset filter, then offset/max per dataset."""
    from vlmcot.records import select_records

    return select_records(spec.records, datasets=spec.datasets, offset=spec.offset,
                          max_per_dataset=spec.max_per_dataset, max_bad_rate=max_bad_rate)


def make_backend(cfg: Config):
    """The generation backend named by ``backend``."""
    from vlmcot.backends import open_backend

    return open_backend(cfg.backend, cfg.model, server=cfg.server, vllm=cfg.vllm, root=cfg.root,
                        dtype=cfg.dtype, device=cfg.device, progress=False, section=SECTION)


def spec_for(cfg: Config, item: str):
    from vlmcot.sampling import SamplingSpec

    it = cfg.items[item]
    return SamplingSpec(
        num_samples=it.num_samples or cfg.num_samples,
        temperature_short=cfg.temperature_short,
        temperature_mc=cfg.temperature_mc,
        generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens, top_p=cfg.top_p, batch_size=cfg.batch_size),
        seed=cfg.seed,
        chunk_size=cfg.chunk_size,
        prompt_style=cfg.prompt_style,
        min_score=cfg.min_score,
    )


def dry_run(cfg: Config, item: str | None) -> None:
    item = _item(cfg, item)
    out, partial, metrics = paths(cfg, item)
    qs = select_questions(cfg.items[item], cfg.max_bad_rate)
    n = cfg.items[item].num_samples or cfg.num_samples
    print(f"sample {item}: {len(qs)} questions x {n} from {cfg.model} -> {out} (partial: {partial}), {metrics}")


def run(cfg: Config, tracker, item: str | None = None, shard: tuple[int, int] | None = None) -> None:
    from vlmcot.generation import LazyBackend
    from vlmcot.sampling import sample_questions, shard_partial_path, shard_partials, summarize

    item = _item(cfg, item)
    out, partial, metrics_path = paths(cfg, item)
    tracker.set_tags({"item": item, **({"shard": f"{shard[0]}/{shard[1]}"} if shard else {})})
    questions = select_questions(cfg.items[item], cfg.max_bad_rate)
    spec = spec_for(cfg, item)
    log.info("sampling %d questions x %d candidates from %s%s", len(questions), spec.num_samples, cfg.model,
             f" (shard {shard[0]}/{shard[1]})" if shard else "")
    opened = []  # the backend, once LazyBackend has built it

    def make():
        opened.append(make_backend(cfg))
        return opened[-1]

    try:
        res = sample_questions(LazyBackend(make), questions, spec, partial, model_name=cfg.model, shard=shard,
                               on_chunk=lambda k, n: tracker.log_metrics({"chunks_done": k + 1}, step=k))
    finally:
        # stop what the backend started (vLLM servers of server.launch) now, not at process exit: a
        # caller that trains next in this process (dpo_round) needs those GPUs
        for b in opened:
            if hasattr(b, "close"):
                b.close()
        opened.clear()
    if shard is not None:
        log.info("shard %d/%d: %d candidates in %s; after every shard, `vlmcot sample --item %s` merges them",
                 shard[0], shard[1], len(res.candidates), shard_partial_path(partial, *shard), item)
        return
    write_jsonl(out, res.candidates)  # already sorted by (id, sample)
    rate = res.generated / res.seconds if res.seconds > 0 else 0.0
    metrics = summarize(res.candidates, rate)
    metrics["all.resumed_chunks"] = res.resumed_chunks
    write_json(metrics_path, metrics)
    partial.unlink(missing_ok=True)  # the output is complete: nothing left to resume
    for p in shard_partials(partial):  # merged into the output
        p.unlink()
    tracker.log_metrics(metrics)
    tracker.log_artifact(metrics_path)
    log.info("sample %s: %s", item, metrics)
