"""Stage `distill` (paper stage A): a teacher writes a rationale ending in '### Answer: X' per record.

    vlmcot distill --params params.yaml          (dvc.yaml runs: python stages/distill.py)

Reads ``input`` (VQA records, images as repo-relative paths) and writes ``output``: one row per input
record, sorted by id: ``{id, ok, text, reason, prompt_tokens, completion_tokens, meta}``, plus flat
metrics. ``backend: scripted`` is the free embedded teacher; ``backend: openai`` talks to any
OpenAI-compatible endpoint (see docs/teacher.md) through a durable cache (``cache_dir``, a DVC
``persist: true, cache: false`` output), so a rerun after an interruption sends only what is missing.

The stage fails (non-zero exit, so DVC records nothing) when the failure rate passes
``max_failure_rate`` (outputs are still written, for inspection), when the budget runs out (nothing
written but the metrics; everything done stays in the cache), or when the endpoint refuses every
request (bad key, no quota).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import StrictModel
from vlmcot.errors import StageError
from vlmcot.images import ImagePolicy
from vlmcot.io import iter_jsonl, write_json, write_jsonl
from vlmcot.records import validate_vqa
from vlmcot.teacher.protocol import TeacherReply
from vlmcot.teacher.cache import CACHE_FILE, ReplyCache
from vlmcot.teacher.openai_backend import FatalTeacherError, OpenAIConfig, OpenAITeacher
from vlmcot.teacher.runner import Budget, RunResult, run_teacher
from vlmcot.teacher.scripted import ScriptedTeacher, ScriptedTeacherConfig

SECTION = "distill"
log = logging.getLogger(__name__)

# Failure reasons always present in the metrics (0 when absent), so `dvc metrics diff` lines up.
KNOWN_REASONS = ("no_answer_marker", "empty", "empty_answer", "refusal", "truncated", "image_missing", "invalid_record")


class Config(StrictModel):
    """The ``distill`` params section."""

    # which teacher answers: "scripted" (free, offline, embedded world) or "openai" (any compatible endpoint)
    backend: Literal["scripted", "openai"] = "scripted"
    # VQA records to distil (output of prepare)
    input: str = "data/prepared/train.jsonl"
    # one reply row per input record, sorted by id
    output: str = "data/distill/replies.jsonl"
    # flat metrics for `dvc metrics`
    metrics: str = "metrics/distill.json"
    # durable reply cache of the openai backend (DVC persist: true, cache: false); scripted bypasses it
    cache_dir: str = "data/distill_cache"
    # record image paths are relative to this directory
    image_root: str = "."
    # fail the stage when more than this fraction of records has no usable rationale
    max_failure_rate: float = Field(0.2, ge=0, le=1)
    # re-send requests whose cached reply was malformed (refusal, no marker) instead of reusing it
    retry_failed: bool = False
    # show a progress bar (rate, ETA, tokens, estimated cost)
    progress: bool = True
    # limits and confinement of every image sent to the teacher (vlmcot.images); the repo, image_root and
    # the input's folder are always allowed
    images: ImagePolicy = Field(default_factory=ImagePolicy)
    # the free scripted teacher (backend: scripted)
    scripted: ScriptedTeacherConfig = Field(default_factory=ScriptedTeacherConfig)
    # endpoint, concurrency, retries, generation params, budget and prices (backend: openai)
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig)


def _load_records(cfg: Config) -> tuple[list, list[TeacherReply], int]:
    """(valid records, failure rows for invalid records that have a usable id, number of input rows)."""
    path = Path(cfg.input)
    if not path.is_file():
        raise StageError(f"input {cfg.input} not found (run the prepare stage first: dvc repro prepare)")
    unreadable: list[str] = []  # lines that are not UTF-8 / JSON / an object: named, skipped, counted as failed
    rows = [row for _, row in iter_jsonl(path, on_error=unreadable.append)]
    for e in unreadable[:20]:
        log.warning("distill: skipping unreadable input line %s", e)
    good, bad = [], {}
    seen: set[str] = set()
    for row in rows:
        ok, errs = validate_vqa([row])
        if ok and ok[0].id not in seen:
            good.append(ok[0])
            seen.add(ok[0].id)
            continue
        err = errs[0] if errs else f"record {ok[0].id}: duplicate id"
        log.warning("distill: skipping invalid input: %s", err)
        rid = row.get("id")
        # One row per input record where the record has an id we can write without a clash.
        if isinstance(rid, str) and rid and rid not in bad:
            bad[rid] = TeacherReply(id=rid, text=None, ok=False, reason="invalid_record", meta={"error": err})
    return good, [r for rid, r in bad.items() if rid not in seen], len(rows) + len(unreadable)


def _metrics(rows: list[TeacherReply], result: RunResult, teacher, n_input: int, cache: ReplyCache | None) -> dict:
    s = result.stats
    reasons = Counter(r.reason or "unknown" for r in rows if not r.ok)
    n = n_input
    ok = sum(r.ok for r in rows)
    failed = n - ok  # every input row without a usable rationale (unsent ones too)
    pt = sum(r.prompt_tokens for r in rows)
    ct = sum(r.completion_tokens for r in rows)
    m: dict[str, float | int] = {
        "records": n,
        "ok": ok,
        "failed": failed,
        "failure_rate": round(failed / n, 6) if n else 0.0,
        # HTTP attempts sent this run (retries included) and the requests that completed
        "requests": int(s.counters.get("attempts", 0)),
        "retries": int(s.counters.get("retries", 0)),
        # replies whose endpoint sent no token usage: their tokens (and the budget) are local estimates
        "usage_estimated": int(s.counters.get("usage_estimated", 0)),
        "new_replies": s.new_replies,
        "cache_hits": s.cache_hits,
        "not_sent": s.not_sent,
        "budget_exhausted": int(s.budget_exhausted),
        # the whole output (cached replies included): what the dataset cost at today's prices
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "tokens": pt + ct,
        "tokens_per_record": round((pt + ct) / len(rows), 2) if rows else 0.0,
        "cost_usd_est": round(teacher.cost_usd(pt, ct), 6) if hasattr(teacher, "cost_usd") else 0.0,
        # this run only
        "run_tokens": s.run_tokens,
        "run_cost_usd_est": round(s.run_cost_usd, 6),
    }
    for reason in KNOWN_REASONS:
        m[f"failed.{reason}"] = 0
    for reason, k in reasons.items():
        m[f"failed.{reason}"] = k
    # input lines with no row of their own (not UTF-8 / not JSON, or an invalid record without an id)
    m["failed.unreadable_input"] = n - len(rows)
    for k, v in s.counters.items():
        if k.startswith("retry."):
            m[f"retries.{k[len('retry.') :]}"] = int(v)
    if cache is not None:
        m["cache_skipped_lines"] = cache.skipped_lines
    return m


def _make_teacher(cfg: Config):
    if cfg.backend == "scripted":
        return ScriptedTeacher(cfg.scripted), None, Budget(), 1
    o = cfg.openai
    return (
        OpenAITeacher(
            o,
            image_root=cfg.image_root,
            images=cfg.images.model_copy(update={"roots": [*cfg.images.roots, str(Path(cfg.input).parent)]}),
        ),
        ReplyCache(cfg.cache_dir),
        Budget(max_tokens=o.budget_tokens, max_usd=o.budget_usd),
        o.max_concurrency,
    )


def run(cfg: Config, tracker) -> dict:
    records, invalid_rows, n_input = _load_records(cfg)
    # dvc.yaml declares the cache dir as an output: it must exist (and not be empty, or DVC warns)
    # even when the scripted backend bypasses it.
    Path(cfg.cache_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.cache_dir) / CACHE_FILE).touch(exist_ok=True)
    teacher, cache, budget, concurrency = _make_teacher(cfg)
    if cfg.backend == "openai" and not teacher.has_price:
        log.warning("distill: no price for model %r in distill.openai.prices: cost estimates read 0", cfg.openai.model)
    log.info(
        "distill: %d records, backend %s%s",
        len(records),
        cfg.backend,
        f", {len(cache)} cached replies" if cache is not None else "",
    )
    try:
        result = run_teacher(
            records,
            teacher,
            cache=cache,
            budget=budget,
            concurrency=concurrency,
            retry_failed=cfg.retry_failed,
            progress=cfg.progress,
        )
    except FatalTeacherError as e:
        raise StageError(
            f"the teacher endpoint refused the run: {e}. Replies received so far are kept in {cfg.cache_dir}; "
            "fix the cause and rerun."
        ) from None
    finally:
        if cache is not None:
            cache.close()

    rows = invalid_rows + [result.replies[r.id] for r in records if r.id in result.replies]
    metrics = _metrics(rows, result, teacher, n_input, cache)
    tracker.log_metrics(metrics)
    s = result.stats
    if s.budget_exhausted:
        write_json(cfg.metrics, metrics)
        cap = [f"budget_tokens={cfg.openai.budget_tokens}"] if cfg.openai.budget_tokens is not None else []
        cap += [f"budget_usd={cfg.openai.budget_usd}"] if cfg.openai.budget_usd is not None else []
        raise StageError(
            f"budget exhausted ({', '.join(cap)}): this run spent {s.run_tokens} tokens (~${s.run_cost_usd:.4f}) on "
            f"{s.new_replies} new replies; {len(records) - s.not_sent} of {len(records)} records are answered and kept in "
            f"{cfg.cache_dir}, {s.not_sent} not sent. {cfg.output} was not written. To continue, rerun (cached replies "
            "are free; each run may spend up to the budget) or raise the cap, e.g. "
            "`dvc exp run -S distill.openai.budget_usd=<more>`."
        )

    write_jsonl(cfg.output, [dataclasses.asdict(r) for r in rows], sort_key="id")
    write_json(cfg.metrics, metrics)
    tracker.log_artifact(cfg.metrics)
    log.info(
        "distill: %d ok, %d failed (%s); %d new replies, %d from cache; %d tokens, ~$%.4f this run",
        metrics["ok"],
        metrics["failed"],
        ", ".join(f"{k}={v}" for k, v in sorted(metrics.items()) if k.startswith("failed.") and v) or "-",
        s.new_replies,
        s.cache_hits,
        s.run_tokens,
        s.run_cost_usd,
    )
    if metrics["failure_rate"] > cfg.max_failure_rate:
        top = ", ".join(
            f"{k[len('failed.') :]}: {v}"
            for k, v in sorted(metrics.items(), key=lambda kv: -kv[1])
            if k.startswith("failed.") and v
        )
        raise StageError(
            f"{metrics['failed']} of {metrics['records']} records failed ({metrics['failure_rate']:.1%} > "
            f"max_failure_rate {cfg.max_failure_rate:.1%}): {top}. Outputs were written for inspection "
            f"({cfg.output}, {cfg.metrics}); see each row's 'reason' and 'meta.error'. Transient failures are not "
            "cached: a rerun retries them."
        )
    return metrics
