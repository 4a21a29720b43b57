"""One module per pipeline stage (SECTION, Config, run). Ordered as in dvc.yaml.

Also the registry's loaders: :func:`load_stage` (a stage module by name) and :func:`load_config` (its
params section, validated), which the runner (vlmcot.stage), the profile checks and a stage that reads
another section (control reads dpo's) share.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vlmcot.config import ConfigError, load_params, parse_section

STAGES: dict[str, str] = {
    "prepare": "Generate (or load) VQA records and images.",
    "distill": "Teacher writes a rationale ending in '### Answer: X' for each train record.",
    "filter": "Keep rationales whose answer matches the annotation; Table 1 counts, Figure 3 lengths.",
    "mix": "Build the four SFT sets (format, direct, CoT, both) in LLaVA conversation JSONL.",
    "base": "Embedded only: pretrain the tiny LLaVA on image descriptions (the stand-in pretrained VLM).",
    "sft": "SFT one mix (--mix format|direct|cot|both) from the base model with TRL.",
    "evaluate": "Evaluate one model (--model NAME) x {direct, CoT} x every eval dataset.",
    "sample": "Sample N scored candidates per question from the SFT model (--item train|eval); resumable.",
    "pairs": "Build correct/incorrect preference pairs from SFT samples (paper 3.3).",
    "dpo": "DPO the SFT model on its own preference pairs (TRL), SFT model as frozen reference.",
    "control": "Controls for DPO, same steps (--item cont_sft|rft): continued SFT, rejection-sampling FT.",
    "dpo_round": "Iterative DPO (--item r2|...): sample from the previous round's model, new pairs, DPO again (#16).",
    "grpo": "Online RL (TRL GRPO or RLOO) from the SFT model with the datasets' metrics as rewards (#16).",
    "table": "Gather the evaluations into metrics/eval.json and the paper's Table 2 (metrics/table2.md).",
    "rerank": "Rerank eval candidates with the DPO reward: majority vs best-of-N vs weighted voting.",
    "credit": "Token-level DPO credit heat maps (HTML + PNG) for chosen/rejected responses.",
    "claims": "Test the paper's claims: deltas with paired bootstrap 95% CIs and verdicts (metrics/claims.md).",
    "report": "One markdown report: Tables 1/2/6, rerank curves, credit map, length histogram, MLflow runs.",
}

# The foreach stages' item option, named as in dvc.yaml's cmds (the CLI shows it only on these stages)
ITEM_OPTIONS: dict[str, tuple[str, str]] = {
    "sft": ("--mix", "the mix to train on (sft.mixes)"),
    "evaluate": ("--model", "the model to evaluate (a key of evaluate.models)"),
    "sample": ("--item", "the records to sample for (a key of sample.items)"),
    "control": ("--item", "the control to train: cont_sft or rft"),
    "dpo_round": ("--item", "the DPO round to run (a key of dpo_round.rounds)"),
}
# Training curves (DVC plots, so `dvc plots diff` compares experiments): after a training stage, the
# Trainer's logged series of these keys (from the stage's MLflow run) go to
# <TRAIN_CURVES_DIR>/<stage>[_<item>].csv, one row per logging step ('/' in a key becomes '_')
TRAIN_CURVES_DIR = "metrics/plots/train"
TRAIN_CURVES: dict[str, list[str]] = {
    "base": ["loss"],
    "sft": ["loss"],
    "dpo": ["loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"],
    "control": ["loss"],
    "dpo_round": ["loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"],
    "grpo": ["loss", "reward", "reward_all", "accuracy", "kl", "completions/mean_length", "band/share_in_band",
             "entropy"],
}
# stages whose module has dry_run(cfg, item): `--dry-run` prints what would run
DRY_RUN = frozenset({"sft", "evaluate", "sample", "dpo", "control", "dpo_round", "grpo"})
# stages that run one slice of their questions with --shard i/N (a run without it merges the slices)
SHARDED = frozenset({"sample", "evaluate"})


_params_path = "params.yaml"


def set_params_path(path: str) -> None:
    """Called by vlmcot.stage.main with the params file the stage was started with."""
    global _params_path
    _params_path = path


def current_params_path() -> str:
    """The params file the running stage was started with (a stage that matches another section's
    settings, like control matching dpo's steps, reads that section from the same file)."""
    return _params_path


def load_stage(name: str) -> ModuleType:
    return importlib.import_module(f"vlmcot.pipeline.{name}")


def load_config(module: ModuleType, params_path: str = "params.yaml"):
    params = load_params(params_path)
    if module.SECTION not in params:
        raise ConfigError(f"{params_path}: missing section '{module.SECTION}'")
    return parse_section(module.Config, params[module.SECTION], module.SECTION, params_path)
