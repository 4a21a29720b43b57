"""Stage `grpo`: online RL with verifiable answer rewards (TRL GRPOTrainer or RLOOTrainer) from the SFT
model, on the questions `sample` draws for DPO (beyond the paper: issue #16).

    python stages/grpo.py             # same as: vlmcot grpo
    python stages/grpo.py --dry-run   # resolved config, question count and, when distributed, the launch command

Starts from ``sft_model`` (the paper's SFT(both) model, DPO's starting point) and trains on the questions
of the sample stage's ``questions`` item (``sample.items.train``: the questions DPO's pairs come from),
prompted for CoT as `sample` prompts them. Reward (vlmcot.rewards): the record's own metric on the answer
after ``### Answer:`` (evaluation's scoring, defined once) plus ``format_weight`` x the format term. The
accuracy band (``train.band_low`` / ``band_high``: the paper's pair window, applied online to each step's
groups), group size, temperatures, KL coefficient and the trainer (grpo | rloo) are in ``train``
(vlmcot.training.grpo, which says what the band does exactly).

Saves model + processor + the resolved config to ``out_dir``, stats (first/last reward, accuracy, KL,
response length, share in band) to ``metrics``; the Trainer's curves go to this stage's MLflow run and to
metrics/plots/train/grpo.csv (DVC plots). Checkpoints in ``checkpoint_dir`` make a killed run resume
(vlmcot.training.checkpoints). With ``launch.num_processes > 1`` training re-launches under
``accelerate launch`` (paper scale: DeepSpeed ZeRO-3 and vLLM, configs/paper.yaml).
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess  # noqa: F401  (not called here: tests patch grpo.subprocess.run, which run_training calls)
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from vlmcot.config import ConfigError, StrictModel
from vlmcot.errors import StageError
from vlmcot.training.checkpoints import run_hash
from vlmcot.training.grpo import GRPOTrainConfig
from vlmcot.training.launch import LaunchConfig, WorkerJob, accelerate_launch, run_training, run_worker

log = logging.getLogger(__name__)

SECTION = "grpo"
WORKER_ENV = "VLMCOT_GRPO_WORKER"  # set in processes started by accelerate launch


class Config(StrictModel):
    # torch intra-op threads (DVC runs stages one at a time; 2 threads on 2 cores, as dpo)
    torch_threads: int = Field(2, ge=1)
    # the SFT model: the policy's starting point and (beta > 0) its frozen KL reference
    sft_model: str = "models/sft/both"
    # the sample stage's item whose questions GRPO trains on (sample.items.<name>: train = DPO's sources)
    questions: str = "train"
    # the GRPO model (save_pretrained layout + vlmcot_config.json)
    out_dir: str = "models/grpo"
    # checkpoints for resume (not a DVC output; wiped when the config changes)
    checkpoint_dir: str = "models/checkpoints/grpo"
    # training stats (steps, first/last reward, accuracy, KL, length, share in band) for `dvc metrics`
    metrics: str = "metrics/grpo.json"
    # image paths in records are relative to this folder
    root: str = "."
    # weights dtype when loading (paper scale: bfloat16)
    dtype: Literal["float32", "bfloat16"] = "float32"
    # prompt layout (vlmcot.prompts); the one `sample` and `evaluate` use
    prompt_style: str = "paper"
    # a response is correct (for the accuracy band) when its answer score reaches this, as sample.min_score
    min_score: float = Field(1.0, ge=0, le=1)
    # project: vlmcot.metrics (what sample and pairs judge with) | vlmevalkit: VLMEvalKit's rules
    scoring: Literal["project", "vlmevalkit"] = "project"
    # weight of the format term (1 when '### Answer: <answer>' is there); 0: the answer score alone
    format_weight: float = Field(0.0, ge=0)
    # fail the stage if more than this share of questions is unusable (missing image)
    max_bad_rate: float = Field(0.01, ge=0, le=1)
    # trainer settings (vlmcot.training.grpo.GRPOTrainConfig)
    train: GRPOTrainConfig = GRPOTrainConfig(
        max_steps=40, learning_rate=1e-5, per_device_train_batch_size=32, warmup_ratio=0.05, bf16=True,
        logging_steps=2, save_steps=10, temperature_mc=0.9, band_low=0.125, band_high=0.875)
    # process launch (single process on CPU; 8 under accelerate + DeepSpeed ZeRO-3 at paper scale)
    launch: LaunchConfig = LaunchConfig()


def questions(cfg: Config, params_path: str | None = None):
    """The VQA records of the sample stage's ``questions`` item, selected exactly as `sample` selects them."""
    from vlmcot.pipeline import current_params_path, load_config, load_stage

    sample = load_stage("sample")
    scfg = load_config(sample, params_path or current_params_path())
    if cfg.questions not in scfg.items:
        raise ConfigError(f"grpo.questions: the sample stage has no item {cfg.questions!r} (have {sorted(scfg.items)})")
    spec = scfg.items[cfg.questions]
    if not Path(spec.records).is_file():
        raise StageError(f"{spec.records} not found (run the prepare stage first)")
    return sample.select_questions(spec, cfg.max_bad_rate)


def load_rows(cfg: Config) -> tuple[list, list[dict], int]:
    """(records, TRL prompt rows, unusable count)."""
    from vlmcot.training.grpo import grpo_rows

    records = questions(cfg)
    rows, errors = grpo_rows(records, cfg.root, cfg.prompt_style)
    for e in errors[:10]:
        log.warning("grpo: %s", e)
    if not rows:
        raise StageError(f"grpo: no usable question ({len(records)} records)")
    if len(errors) > cfg.max_bad_rate * len(records):
        raise StageError(f"grpo: {len(errors)} of {len(records)} questions unusable (first: {errors[0]})")
    return records, rows, len(errors)


def launch_command(cfg: Config, config_path: str) -> list[str]:
    """The ``accelerate launch`` command that runs :func:`worker_main` on every process."""
    return accelerate_launch(cfg.launch, "vlmcot.pipeline.grpo", config_path)


def plan_notes(cfg: Config) -> list[str]:
    """`vlmcot plan`: how rollouts are generated at this profile's scale."""
    t = cfg.train
    gen = (f"vLLM {t.vllm_mode}" + (f" (tensor_parallel_size={t.vllm_tensor_parallel_size}, gpu share "
                                    f"{t.vllm_gpu_memory_utilization})" if t.vllm_mode == "colocate"
                                    else f" ({t.vllm_server_base_url or 'trl vllm-serve on the default host:port'})")
           if t.use_vllm else ("prefix-shared HF decoding" if t.prefix_sharing else "model.generate"))
    band = f"[{t.band_low}, {t.band_high}]" if t.band_active else "off"
    notes = [f"grpo: {t.trainer} group {t.num_generations}, beta {t.beta}, lr {t.learning_rate:g}, "
             f"steps {t.max_steps if t.max_steps > 0 else f'{t.num_train_epochs} epoch(s)'}, band {band}, "
             f"rollouts: {gen}"]
    if t.use_vllm and t.temperature_mc not in (None, t.temperature):
        notes.append(f"grpo: vLLM samples every question at temperature {t.temperature} (train.temperature_mc "
                     "applies to prefix-shared HF rollouts only)")
    if t.use_vllm and t.vllm_mode == "colocate":
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            notes.append("grpo: vllm_mode colocate needs vllm importable in this environment; it is not: use "
                         "vllm_mode server with `trl vllm-serve` from the vLLM environment (configs/paper.yaml)")
    return notes


def dry_run(cfg: Config, item: str | None) -> None:
    print(json.dumps(cfg.model_dump(mode="json"), indent=2, sort_keys=True))
    print(f"# {len(questions(cfg))} questions from sample.items.{cfg.questions}")
    if cfg.launch.distributed:
        print(shlex.join(launch_command(cfg, str(Path(cfg.out_dir) / "launch_config.json"))))
    else:
        print(f"# single process: trains in-process, writes {cfg.out_dir}")


def train(cfg: Config, report_to: list[str]) -> dict[str, float]:
    """Load the policy, train, save. Runs on every process of a distributed launch."""
    from vlmcot.models.loading import load_processor, model_loader
    from vlmcot.rewards import reward_functions
    from vlmcot.training.common import master_dtype
    from vlmcot.training.grpo import train_grpo
    from vlmcot.training.lora import quantization_kwargs

    records, rows, bad = load_rows(cfg)
    funcs, weights = reward_functions({r.id: r for r in records}, cfg.format_weight, cfg.scoring)
    # loaded inside train_grpo, after the training arguments (ZeRO-3 partitions it at load time); with
    # beta > 0 TRL loads the reference itself from the same folder (config._name_or_path)
    policy = model_loader(cfg.sft_model, master_dtype(cfg.dtype, cfg.train, cfg.launch),
                          **quantization_kwargs(cfg.train.lora, cfg.dtype))
    processor = load_processor(cfg.sft_model)
    # the records too: the rewards score against each record's answer, which the prompt rows do not hold
    key = run_hash(cfg, [r.model_dump(mode="json") for r in records], start_model=cfg.sft_model, rows=rows)
    stats = train_grpo(policy, processor, rows, funcs, weights, cfg.train, cfg.out_dir, cfg.checkpoint_dir,
                       run_hash=key, correct_at=cfg.min_score, report_to=report_to, run_name="grpo")
    stats["questions"] = len(rows)
    stats["bad_questions"] = bad
    return stats


def run(cfg: Config, tracker) -> None:
    from vlmcot.pipeline import current_params_path

    # the workers read the questions from the sample section of the same params file
    spec = {"config": cfg.model_dump(mode="json"), "params_path": str(Path(current_params_path()).resolve())}
    run_training(cfg, tracker, out_dir=Path(cfg.out_dir), spec=spec, command=launch_command, worker_env=WORKER_ENV,
                 train=lambda: train(cfg, report_to=["mlflow"]), what="GRPO", metrics_path=cfg.metrics,
                 metrics_prefix="grpo.")


def worker_main(config_path: str) -> int:
    """Entry of each process under ``accelerate launch`` (vlmcot.training.launch.run_worker)."""
    from vlmcot.pipeline import set_params_path

    def job(spec: dict) -> WorkerJob:
        set_params_path(spec["params_path"])
        cfg = Config.model_validate(spec["config"])
        return WorkerJob(cfg.torch_threads, Path(cfg.out_dir), lambda: train(cfg, report_to=["mlflow"]))

    return run_worker(config_path, job)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    sys.exit(worker_main(sys.argv[1]))
