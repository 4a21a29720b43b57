"""Stage `evaluate`: one model x {direct, CoT} x every eval dataset (the paper's Table 2, one row pair).

    python stages/evaluate.py --model both     # same as: vlmcot evaluate --model both

A DVC foreach runs it once per model (evaluate@format, evaluate@both, ... later evaluate@dpo), so a
changed model reruns only its own evaluation. Writes the predictions (JSONL, one row per record and
mode) and flat metrics ``<model>.<mode>.<dataset>.<metric>`` to ``<metrics_dir>/<model>.json``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vlmcot.config import ConfigError, StrictModel
from vlmcot.generation import GenerationConfig
from vlmcot.io import write_json, write_jsonl
from vlmcot.judge import JudgeConfig
from vlmcot.server_backend import ServerConfig
from vlmcot.stats import BootstrapConfig
from vlmcot.teacher.openai_backend import FatalTeacherError
from vlmcot.summary import eval_summary, write_summary
from vlmcot.vllm_backend import VLLMConfig

log = logging.getLogger(__name__)

SECTION = "evaluate"
SHARDABLE = True  # `--shard i/N` evaluates every N-th record; the plain run merges the shard files


class Config(StrictModel):
    # eval records (VQARecord JSONL)
    records: str = "data/prepared/eval.jsonl"
    # model name -> local folder or hub id; names are the DVC foreach items and the metric key prefix
    models: dict[str, str] = {
        "format": "models/sft/format",
        "direct": "models/sft/direct",
        "cot": "models/sft/cot",
        "both": "models/sft/both",
        "dpo": "models/dpo",
        "cont_sft": "models/control/cont_sft",
        "rft": "models/control/rft",
        "grpo": "models/grpo",
        "dpo_r2": "models/dpo_rounds/r2",
    }
    # prompt modes to evaluate (the paper: direct and CoT)
    modes: list[Literal["direct", "cot"]] = ["direct", "cot"]
    # prompt style registered in vlmcot.prompts ("paper" or "vlmevalkit")
    style: str = "paper"
    # "project": the metrics in vlmcot.metrics; "vlmevalkit": VLMEvalKit e8e78f0's rules exactly
    # (vlmcot.vlmevalkit_scoring; keys <dataset>.vlmevalkit_<metric>), comparable with published numbers
    scoring: Literal["project", "vlmevalkit"] = "project"
    # null: rule-based answer extraction only; a section: a judge model extracts the MathVista / MMMU
    # answers the rules miss, as VLMEvalKit does (vlmcot.judge.JudgeConfig: model, base_url, api_key_env, ...)
    judge: JudgeConfig | None = None
    # evaluate only these datasets (None: all in the records)
    datasets: list[str] | None = None
    # at most this many records per dataset, first by id (None: all)
    max_per_dataset: int | None = Field(None, ge=1)
    # fail the stage if more than this share of records is malformed
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # predictions go to <predictions_dir>/<model>.jsonl
    predictions_dir: str = "data/eval"
    # metrics go to <metrics_dir>/<model>.json
    metrics_dir: str = "metrics/eval"
    # headline (DVC metrics) <summary_dir>/<model>.json: average accuracy per prompt, % (vlmcot.summary)
    summary_dir: str = "metrics/paper"
    # image paths are relative to this folder
    root: str = "."
    # generation backend: "hf" (transformers in-process), "vllm" (in-process; needs the vllm package) or
    # "server" (vLLM OpenAI-compatible servers in their own environment: docs/gpu.md)
    backend: Literal["hf", "vllm", "server"] = "hf"
    # vLLM engine settings (backend: vllm only)
    vllm: VLLMConfig = VLLMConfig()
    # vLLM servers (backend: server only); each serves the one model this item evaluates
    server: ServerConfig = ServerConfig()
    # weights dtype (paper scale: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuda when available, else cpu
    device: str = "auto"
    # greedy decoding by default; max_new_tokens must fit a CoT answer
    generation: GenerationConfig = GenerationConfig(max_new_tokens=128, batch_size=100)
    # the 95% interval of every accuracy cell: percentile bootstrap over questions (vlmcot.stats)
    bootstrap: BootstrapConfig = BootstrapConfig()

    @field_validator("models")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name or "." in name or "/" in name:
                raise ValueError(f"model name {name!r} must be non-empty without '.' or '/' (it prefixes metric keys)")
        return v


def select_records(cfg: Config):
    """The eval records: valid, sorted by id, ``datasets``, then the first ``max_per_dataset`` of each."""
    from vlmcot.records import select_records as select

    return select(cfg.records, datasets=cfg.datasets, offset=0, max_per_dataset=cfg.max_per_dataset,
                  max_bad_rate=cfg.max_bad_rate)


def _model_name(cfg: Config, item: str | None) -> str:
    if not item:
        raise ConfigError(f"evaluate: which model? pass --model, one of {sorted(cfg.models)}")
    if item not in cfg.models:
        raise ConfigError(f"evaluate.models: no model named {item!r} (have {sorted(cfg.models)})")
    return item


def dry_run(cfg: Config, item: str | None) -> None:
    name = _model_name(cfg, item)
    print(f"evaluate {name} ({cfg.models[name]}): modes {cfg.modes}, records {cfg.records}")


def make_backend(cfg: Config, name: str):
    """The generation backend named by ``backend`` for model ``name``."""
    from vlmcot.backends import open_backend

    return open_backend(cfg.backend, cfg.models[name], server=cfg.server, vllm=cfg.vllm, root=cfg.root,
                        dtype=cfg.dtype, device=cfg.device, progress=True, section=SECTION)


def _fingerprint(cfg: Config, name: str, records) -> str:
    """What shapes the predictions: a shard file from another config is not merged."""
    import hashlib
    import json

    blob = json.dumps({"model": cfg.models[name], "ids": [r.id for r in records], "modes": cfg.modes,
                       "style": cfg.style, "scoring": cfg.scoring,
                       "judge": cfg.judge.model_dump(mode="json") if cfg.judge else None, "gen": cfg.generation.model_dump(mode="json"), "backend": cfg.backend,
                       "dtype": cfg.dtype}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def shard_path(cfg: Config, name: str, i: int, n: int) -> Path:
    return Path(cfg.predictions_dir) / f"{name}.shard-{i}-of-{n}.jsonl"


def _merged_rows(cfg: Config, name: str, fingerprint: str) -> tuple[dict[tuple[str, str], dict], list[Path]]:
    """Prediction rows of finished shard files of this config, by (mode, id)."""
    import json

    rows: dict[tuple[str, str], dict] = {}
    files = sorted(Path(cfg.predictions_dir).glob(f"{name}.shard-*-of-*.jsonl"))
    for f in files:
        lines = f.read_text(encoding="utf-8").splitlines()
        if not lines or json.loads(lines[0]).get("header") != fingerprint:
            log.warning("%s: written by another config, not merged", f)
            continue
        for line in lines[1:]:
            r = json.loads(line)
            rows[(r["mode"], r["id"])] = r
        log.info("merging %d predictions from %s", len(lines) - 1, f)
    return rows, files


def run(cfg: Config, tracker, item: str | None = None, shard: tuple[int, int] | None = None) -> None:
    from vlmcot.evaluation import evaluate, markdown_table, summarize
    from vlmcot.generation import LazyBackend

    name = _model_name(cfg, item)
    records = select_records(cfg)
    fingerprint = _fingerprint(cfg, name, records)
    tracker.set_tags({"model": name, **({"shard": f"{shard[0]}/{shard[1]}"} if shard else {})})
    backend = LazyBackend(lambda: make_backend(cfg, name))
    judge = None
    if cfg.judge is not None:
        from vlmcot.judge import Judge

        judge = Judge(cfg.judge)

    def score(recs):
        try:
            return evaluate(backend, recs, cfg.generation, modes=cfg.modes, style=cfg.style, scoring=cfg.scoring, judge=judge)
        except FatalTeacherError as e:  # the judge's key, quota or model: every further call would fail
            from vlmcot.errors import StageError

            raise StageError(f"evaluate.judge: {e}") from None

    if shard is not None:
        mine = records[shard[0] :: shard[1]]  # round-robin over the id-sorted records
        log.info("evaluating %s shard %d/%d: %d of %d records x %s", name, *shard, len(mine), len(records), cfg.modes)
        rows = score(mine) if mine else []
        path = shard_path(cfg, name, *shard)
        write_jsonl(path, [{"header": fingerprint}, *rows], sort_key=None)  # atomic: never half a shard
        log.info("shard %d/%d written to %s; after every shard, `vlmcot evaluate --model %s` merges them",
                 *shard, path, name)
        return
    done, shard_files = _merged_rows(cfg, name, fingerprint)
    missing = [r for r in records if any((m, r.id) not in done for m in cfg.modes)]
    log.info("evaluating %s on %d records x %s (%d from shard files)", name, len(missing), cfg.modes,
             len(records) - len(missing))
    for r in score(missing) if missing else []:
        done[(r["mode"], r["id"])] = r
    rows = [done[(m, r.id)] for m in cfg.modes for r in records]  # the order of one unsharded evaluate()
    if judge is not None:
        log.info("judge: %d calls, %d failed", judge.calls, judge.failures)
        tracker.log_metrics({f"{name}.judge_calls": judge.calls, f"{name}.judge_failures": judge.failures})
    for r in rows:
        r["model"] = name
    write_jsonl(Path(cfg.predictions_dir) / f"{name}.jsonl", rows, sort_key=None)
    metrics = summarize(rows, name, cfg.bootstrap)
    write_json(Path(cfg.metrics_dir) / f"{name}.json", metrics)
    for f in shard_files:  # merged into the predictions
        f.unlink()
    write_summary(Path(cfg.summary_dir) / f"{name}.json", eval_summary(metrics, name))
    tracker.log_metrics(metrics)
    tracker.log_text(markdown_table(metrics), f"eval_{name}.md")
    log.info("\n%s", markdown_table(metrics))
