"""Stage `dpo_round`: iterative DPO - round k samples from round k-1's model, builds new pairs with the
same rules and DPO-trains again (beyond the paper: issue #16).

    python stages/dpo_round.py --item r2             # same as: vlmcot dpo_round --item r2
    python stages/dpo_round.py --item r2 --dry-run   # what the round samples, from which model, and where it writes

A DVC foreach over ``rounds`` (name -> the model the round starts from, and its seed). Round 1 is the
`dpo` stage itself (models/dpo); round ``r2`` starts from it, ``r3`` from ``models/dpo_rounds/r2``, and so
on: dvc.yaml lists each round's ``start_model`` as a dep, so the rounds chain in the DAG. Each round runs
the three stages' own code with their own params sections, so "the same rules" is literal:

1. `sample` (its ``questions`` item's questions, ``sample.*`` settings; the round's seed, so its draws
   are not round 1's) from ``start_model`` -> ``<data_dir>/<round>/candidates.jsonl``, resumable by chunk
   as the sample stage is;
2. `pairs` (``pairs.*``: window, pairs per question, truncation; the round's seed) ->
   ``<data_dir>/<round>/pairs.jsonl``;
3. `dpo` (``dpo.*``, with ``train_overrides`` applied) from ``start_model``, which is also its frozen
   reference (Iterative RPO, Pang et al. 2024: each iteration starts from and is regularised to the
   previous one) -> ``<out_dir>/<round>``; a killed run resumes from its checkpoints.

Per round, ``<metrics_dir>/<round>/`` holds sample.json, pairs.json, pairs_summary.json,
pair_accuracy_hist.csv and dpo.json; the MLflow run gets them prefixed ``sample.``/``pairs.``/``dpo.``, the
Trainer's curves, and metrics/plots/train/dpo_round_<round>.csv (DVC plots). Evaluate a round by adding
it to ``evaluate.models`` (``dpo_r2: models/dpo_rounds/r2``).
"""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from vlmcot.config import ConfigError, StrictModel, parse_section, save_resolved

log = logging.getLogger(__name__)

SECTION = "dpo_round"


class RoundConfig(StrictModel):
    """One round: where it starts and how its draws are seeded."""

    # the model this round samples from, starts from and keeps as its frozen DPO reference (the previous
    # round's model: models/dpo for r2)
    start_model: str
    # seeds the round's sampling and pairing (round 1 used sample.seed and pairs.seed)
    seed: int = Field(ge=0)


class Config(StrictModel):
    # torch intra-op threads (DVC runs stages one at a time; 2 threads on 2 cores, as dpo)
    torch_threads: int = Field(2, ge=1)
    # the rounds after the dpo stage (round 1): name -> start model and seed; dvc.yaml's foreach
    rounds: dict[str, RoundConfig] = {"r2": RoundConfig(start_model="models/dpo", seed=1)}
    # the sample stage's item whose questions every round samples (train: the dpo stage's sources)
    questions: str = "train"
    # round models go to <out_dir>/<round>
    out_dir: str = "models/dpo_rounds"
    # candidates and pairs go to <data_dir>/<round>/
    data_dir: str = "data/dpo_rounds"
    # the round's sample / pairs / dpo stats go to <metrics_dir>/<round>/
    metrics_dir: str = "metrics/dpo_rounds"
    # DPO checkpoints (resume) in <checkpoint_dir>/<round>; not a DVC output
    checkpoint_dir: str = "models/checkpoints/dpo_rounds"
    # dpo.train keys a round sets differently (validated as dpo.train; {}: exactly dpo's settings).
    # Embedded: num_train_epochs 1 (dpo: 2), to keep the round inside the time budget
    train_overrides: dict[str, Any] = {"num_train_epochs": 1}

    @field_validator("rounds")
    @classmethod
    def _names(cls, v: dict[str, RoundConfig]) -> dict[str, RoundConfig]:
        if not v:
            raise ValueError("dpo_round.rounds is empty: name at least one round (e.g. r2: {start_model: models/dpo, seed: 1})")
        for name in v:
            if not name or "/" in name or "." in name:
                raise ValueError(f"round name {name!r} must be non-empty without '/' or '.'")
        return v


class PrefixedTracker:
    """The stage's MLflow run with every metric key prefixed, so the three steps' keys (sample and
    pairs both log ``all.*``) stay apart in one run."""

    def __init__(self, tracker, prefix: str):
        self._tracker, self._prefix = tracker, prefix

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._tracker.log_metrics({self._prefix + k: v for k, v in metrics.items()}, step=step)

    def __getattr__(self, name: str):  # run_id, set_tags, log_artifact, log_text: unchanged
        return getattr(self._tracker, name)


def _round(cfg: Config, item: str | None) -> str:
    if not item:
        raise ConfigError(f"dpo_round: which round? pass --item, one of {sorted(cfg.rounds)}")
    if item not in cfg.rounds:
        raise ConfigError(f"dpo_round.rounds: no round named {item!r} (have {sorted(cfg.rounds)})")
    return item


def step_configs(cfg: Config, item: str, params_path: str | None = None):
    """The sample, pairs and dpo Configs of round ``item``: their own params sections (same file), with
    the round's model, seed, paths and ``train_overrides`` set. Raises ConfigError on a bad combination."""
    from vlmcot.pipeline import current_params_path, load_config, load_stage
    from vlmcot.training.dpo import DPOTrainConfig

    path = params_path or current_params_path()
    # the three stages' modules, by name (a stage module never imports another: tests/test_layers.py)
    sample, pairs, dpo = load_stage("sample"), load_stage("pairs"), load_stage("dpo")
    scfg, pcfg, dcfg = (load_config(m, path) for m in (sample, pairs, dpo))
    rnd = _round(cfg, item)
    spec = cfg.rounds[rnd]
    if cfg.questions not in scfg.items:
        raise ConfigError(f"dpo_round.questions: the sample stage has no item {cfg.questions!r} "
                          f"(have {sorted(scfg.items)})")
    if scfg.backend == "vllm":
        # one process samples, then trains: an in-process engine would hold its GPU memory through training
        raise ConfigError("dpo_round samples and trains in one process: sample.backend vllm (in-process engine) "
                          "would keep its GPU memory during DPO; use sample.backend server (the stage starts "
                          "and stops the servers, configs/paper.yaml) or hf")
    items = scfg.items[cfg.questions]
    data, metrics = Path(cfg.data_dir) / rnd, Path(cfg.metrics_dir) / rnd
    scfg = sample.Config.model_validate({
        **scfg.model_dump(), "model": spec.start_model, "seed": spec.seed, "items": {rnd: items.model_dump()},
        # sample writes <out_dir>/<item>/candidates.jsonl and <metrics_dir>/sample_<item>.json
        "out_dir": cfg.data_dir, "metrics_dir": str(metrics)})
    pcfg = pairs.Config.model_validate({
        **pcfg.model_dump(), "candidates": str(data / "candidates.jsonl"), "records": items.records,
        "out": str(data / "pairs.jsonl"), "metrics": str(metrics / "pairs.json"),
        "summary": str(metrics / "pairs_summary.json"), "plot": str(metrics / "pair_accuracy_hist.csv"),
        "seed": spec.seed})
    # dpo.train already validated: an error here is an override's, named dpo_round.train_overrides.<key>
    train = parse_section(DPOTrainConfig, {**dcfg.train.model_dump(), **cfg.train_overrides},
                          "dpo_round.train_overrides", path)
    dcfg = dpo.Config.model_validate({
        **dcfg.model_dump(), "sft_model": spec.start_model, "pairs": pcfg.out, "out_dir": str(Path(cfg.out_dir) / rnd),
        "checkpoint_dir": str(Path(cfg.checkpoint_dir) / rnd), "metrics": str(metrics / "dpo.json"),
        "train": train.model_dump()})
    return scfg, pcfg, dcfg


def dry_run(cfg: Config, item: str | None) -> None:
    from vlmcot.pipeline import load_stage

    item = _round(cfg, item)
    scfg, pcfg, dcfg = step_configs(cfg, item)
    n = len(load_stage("sample").select_questions(scfg.items[item], scfg.max_bad_rate))
    print(f"dpo_round {item}: {n} questions x {scfg.num_samples} samples from {scfg.model} (seed {scfg.seed}) -> "
          f"{pcfg.out} -> DPO from {dcfg.sft_model} (its reference), {dcfg.train.num_train_epochs} epoch(s) -> "
          f"{dcfg.out_dir}")


def plan_notes(cfg: Config) -> list[str]:
    """`vlmcot plan`: how each round samples and trains at this profile's scale (the sample and dpo
    sections' backends and launch; a setting the round would fail on is said here, before any GPU time)."""
    import shlex

    from vlmcot.pipeline import load_stage
    from vlmcot.training.launch import ClusterError

    notes = []
    for rnd in cfg.rounds:
        try:
            s, p, d = step_configs(cfg, rnd)
        except ConfigError as e:  # the plan lists every stage; this one would fail when it runs
            notes.append(f"dpo_round {rnd} WILL FAIL: {e}")
            continue
        gen = (f"{len(s.server.urls)} vLLM server(s)" if s.backend == "server" else s.backend)
        train = "in-process"
        if d.launch.distributed:
            try:
                train = shlex.join(load_stage("dpo").launch_command(d, str(Path(d.out_dir) / "launch_config.json")))
            except ClusterError:  # planned outside the allocation (as vlmcot.profile.plan says for dpo itself)
                train = (f"one `accelerate launch` per {d.launch.cluster} node ({d.launch.num_processes} processes "
                         "each; machine rank and rendezvous host from the job's environment)")
        notes.append(f"dpo_round {rnd}: {s.num_samples} samples per question from {s.model} ({gen}), pairs in "
                     f"[{p.low}, {p.high}], DPO from it ({d.train.num_train_epochs:g} epoch(s)): {train}")
    return notes


def run(cfg: Config, tracker, item: str | None = None) -> None:
    from vlmcot.pipeline import load_stage

    sample, pairs, dpo = load_stage("sample"), load_stage("pairs"), load_stage("dpo")
    item = _round(cfg, item)
    scfg, pcfg, dcfg = step_configs(cfg, item)
    tracker.set_tags({"round": item, "start_model": scfg.model})
    log.info("round %s: sampling from %s", item, scfg.model)
    sample.run(scfg, PrefixedTracker(tracker, "sample."), item=item)
    gc.collect()  # the sampling model is gone before DPO loads two more
    log.info("round %s: pairs", item)
    pairs.run(pcfg, PrefixedTracker(tracker, "pairs."))
    log.info("round %s: DPO from %s", item, dcfg.sft_model)
    dpo.run(dcfg, tracker)  # logs dpo.* itself
    save_resolved(cfg, Path(dcfg.out_dir) / "vlmcot_round_config.json")
