"""Stage `evaluate`: one model x {direct, CoT} x every eval dataset (the paper's Table 2, one row pair).

    python stages/evaluate.py --model both     # same as: vlmcot evaluate --model both

A DVC foreach runs it once per model (evaluate@format, evaluate@both, ... later evaluate@dpo), so a
changed model reruns only its own evaluation. Writes the predictions (JSONL, one row per record and
mode) and flat metrics ``<model>.<mode>.<dataset>.<metric>`` to ``<metrics_dir>/<model>.json``.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from vlmcot.config import ConfigError, StrictModel
from vlmcot.generation import GenerationConfig
from vlmcot.io import read_jsonl, write_json, write_jsonl
from vlmcot.summary import eval_summary, write_summary
from vlmcot.vllm_backend import VLLMConfig

log = logging.getLogger(__name__)

SECTION = "evaluate"


class Config(StrictModel):
    # eval records (VQARecord JSONL)
    records: str = "data/prepared/eval.jsonl"
    # model name -> local folder or hub id; names are the DVC foreach items and the metric key prefix
    models: dict[str, str] = {
        "format": "models/sft/format",
        "direct": "models/sft/direct",
        "cot": "models/sft/cot",
        "both": "models/sft/both",
    }
    # prompt modes to evaluate (the paper: direct and CoT)
    modes: list[Literal["direct", "cot"]] = ["direct", "cot"]
    # prompt style registered in vlmcot.prompts ("paper" or "vlmevalkit")
    style: str = "paper"
    # evaluate only these datasets (None: all in the records)
    datasets: list[str] | None = None
    # at most this many records per dataset, first by id (None: all)
    max_per_dataset: int | None = Field(None, ge=1)
    # predictions go to <predictions_dir>/<model>.jsonl
    predictions_dir: str = "data/eval"
    # metrics go to <metrics_dir>/<model>.json
    metrics_dir: str = "metrics/eval"
    # headline (DVC metrics) <summary_dir>/<model>.json: average accuracy per prompt, % (vlmcot.summary)
    summary_dir: str = "metrics/paper"
    # image paths are relative to this folder
    root: str = "."
    # generation backend: "hf" (transformers in-process) or "vllm" (paper scale; `pip install vllm`)
    backend: Literal["hf", "vllm"] = "hf"
    # vLLM engine settings (backend: vllm only)
    vllm: VLLMConfig = VLLMConfig()
    # weights dtype (paper scale: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # "auto": cuda when available, else cpu
    device: str = "auto"
    # greedy decoding by default; max_new_tokens must fit a CoT answer
    generation: GenerationConfig = GenerationConfig(max_new_tokens=160, batch_size=64)

    @field_validator("models")
    @classmethod
    def _names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not name or "." in name or "/" in name:
                raise ValueError(f"model name {name!r} must be non-empty without '.' or '/' (it prefixes metric keys)")
        return v


def select_records(cfg: Config):
    from vlmcot.records import validate_vqa
    from vlmcot.stage import StageError

    if not Path(cfg.records).is_file():
        raise StageError(f"{cfg.records} not found (run the prepare stage first)")
    raw = read_jsonl(cfg.records)
    good, errors = validate_vqa(raw)
    for e in errors[:10]:
        log.warning("%s: %s", cfg.records, e)
    if errors and len(errors) > 0.01 * len(raw):
        raise StageError(f"{cfg.records}: {len(errors)} bad records (first: {errors[0]})")
    good.sort(key=lambda r: r.id)
    if cfg.datasets is not None:
        good = [r for r in good if r.dataset in cfg.datasets]
    if cfg.max_per_dataset is not None:
        seen: Counter = Counter()
        kept = []
        for r in good:
            if seen[r.dataset] < cfg.max_per_dataset:
                seen[r.dataset] += 1
                kept.append(r)
        good = kept
    if not good:
        raise StageError(f"{cfg.records}: no eval records left after the dataset filter")
    return good


def _model_name(cfg: Config, item: str | None) -> str:
    if not item:
        raise ConfigError(f"evaluate: which model? pass --model, one of {sorted(cfg.models)}")
    if item not in cfg.models:
        raise ConfigError(f"evaluate.models: no model named {item!r} (have {sorted(cfg.models)})")
    return item


def dry_run(cfg: Config, item: str | None) -> None:
    name = _model_name(cfg, item)
    print(f"evaluate {name} ({cfg.models[name]}): modes {cfg.modes}, records {cfg.records}")


def run(cfg: Config, tracker, item: str | None = None) -> None:
    from vlmcot.evaluation import evaluate, markdown_table, summarize
    from vlmcot.generation import HFBackend
    from vlmcot.models import load_model_and_processor

    name = _model_name(cfg, item)
    records = select_records(cfg)
    tracker.set_tags({"model": name})
    if cfg.backend == "vllm":
        from vlmcot.stage import StageError
        from vlmcot.vllm_backend import VLLMBackend

        try:
            backend = VLLMBackend(cfg.models[name], cfg.vllm, root=cfg.root)
        except ImportError as e:
            raise StageError(f"evaluate.backend: {e}") from None
    else:
        import torch

        device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        model, processor = load_model_and_processor(cfg.models[name], dtype=cfg.dtype, device=device)
        backend = HFBackend(model, processor, root=cfg.root)
    log.info("evaluating %s on %d records x %s", name, len(records), cfg.modes)
    rows = evaluate(backend, records, cfg.generation, cfg.modes, cfg.style)
    for r in rows:
        r["model"] = name
    write_jsonl(Path(cfg.predictions_dir) / f"{name}.jsonl", rows, sort_key=None)
    metrics = summarize(rows, name)
    write_json(Path(cfg.metrics_dir) / f"{name}.json", metrics)
    write_summary(Path(cfg.summary_dir) / f"{name}.json", eval_summary(metrics, name))
    tracker.log_metrics(metrics)
    tracker.log_text(markdown_table(metrics), f"eval_{name}.md")
    log.info("\n%s", markdown_table(metrics))
