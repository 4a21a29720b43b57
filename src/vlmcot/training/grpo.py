"""Online RL of a VLM on verifiable rewards with TRL's GRPOTrainer or RLOOTrainer (the `grpo` stage; beyond
the paper, issue #16).

:func:`train_grpo` trains the policy from the SFT model on VQA questions: each step samples a group of
``num_generations`` CoT responses per question, scores them with the reward functions the caller passes
(the stage passes vlmcot.rewards: the dataset's metric after ``### Answer:`` and an optional format term),
and updates the policy on group-relative advantages (GRPO: ``(r - mean) / std`` per group; RLOO: ``r`` minus
the mean of the other responses) with a KL term to the frozen SFT model (``beta``). What this wrapper adds
to TRL:

- **The accuracy band, online** (the paper's [0.25, 0.85] window of `pairs`, here per step; DAPO's dynamic
  sampling filter): after the rewards are gathered, a question whose group accuracy (the share of its
  responses whose first reward, the answer score, reaches ``correct_at``) falls outside
  ``[band_low, band_high]`` gets every reward set to NaN, which TRL treats as unscorable: advantage 0, so
  it adds no policy gradient (its tokens still carry the KL term and count in the loss normaliser). TRL
  has no hook to re-sample such questions the way DAPO fills its batch, so the batch simply has fewer
  informative groups; the share inside the band is logged (``band/share_in_band``). Groups that are all
  right or all wrong carry no GRPO signal anyway (zero std); the band also drops the near-unanimous ones.
- **Prefix-shared rollouts on one process** (vlmcot.prefix_sharing, as `sample` decodes): each question's
  prompt and image are encoded once for its whole group instead of ``num_generations`` times, with the
  sampling temperature by question type (``temperature`` for short / numeric, ``temperature_mc`` for
  multiple choice, as `sample`). TRL's log-probs use one temperature (``temperature``): with
  ``temperature_mc`` different, multiple-choice groups are sampled slightly off the distribution the loss
  scores (set them equal for a strictly on-policy run). vLLM (``use_vllm``) or a model the decoder does
  not support falls back to TRL's own generation at ``temperature``.
- Metrics beside TRL's (``reward``, ``kl``, ``completions/mean_length``, ``entropy``, ...): ``accuracy``
  (share of all responses judged correct, before the band), ``reward_all`` (mean weighted reward of all
  responses; TRL's ``reward`` leaves the out-of-band ones out), ``band/share_in_band``.
- The project's checkpoint rules (vlmcot.training.checkpoints: resume only into an identical run) and
  exact weight restore on resume (vlmcot.training.resume).

Measured pitfalls: GRPOConfig has no ``max_length`` (prompts are whole; completions stop at
``max_completion_length``); it turns gradient checkpointing and bf16 on by default (both set explicitly
from TrainArgs here); with ``beta`` > 0 TRL loads the reference itself from the policy's
``config._name_or_path``, so the policy must be loaded from a saved folder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from vlmcot.training.args import TrainArgs
from vlmcot.training.checkpoints import logged_scalars, prepare_checkpoint_dir, train_and_save
from vlmcot.training.common import freeze, materialize, trainer_kwargs
from vlmcot.training.lora import peft_config

log = logging.getLogger(__name__)

GRPO_LOSSES = ("grpo", "dapo", "dr_grpo", "bnpo", "cispo", "sapo")


class GRPOTrainConfig(TrainArgs):
    """GRPOTrainer / RLOOTrainer settings (params.yaml ``grpo.train``): the shared TrainArgs plus the online
    RL trainer's own; names follow TRL's GRPOConfig."""

    trainer: Literal["grpo", "rloo"] = "grpo"  # TRL's GRPOTrainer or RLOOTrainer (leave-one-out baseline)
    num_generations: int = Field(8, ge=2)  # group size: responses per question each step (R1-V / EasyR1: 8)
    temperature: float = Field(0.7, gt=0)  # sampling temperature, short / numeric questions; the loss's too
    temperature_mc: float | None = Field(None, gt=0)  # multiple-choice questions (None: temperature)
    top_p: float = Field(1.0, gt=0, le=1)  # nucleus mass when sampling (1.0: plain sampling)
    max_completion_length: int = Field(128, ge=1)  # longest response in tokens
    beta: float = Field(0.04, ge=0)  # KL coefficient to the SFT model (0: no reference model loaded)
    epsilon: float = Field(0.2, gt=0)  # PPO-style ratio clip
    num_iterations: int = Field(1, ge=1)  # optimisation passes over each generated batch (mu)
    loss_type: Literal[GRPO_LOSSES] = "dapo"  # grpo trainer only: token-loss aggregation (TRL default dapo)
    scale_rewards: Literal["group", "batch", "none"] = "group"  # grpo trainer only: advantage std scaling
    # questions kept for the policy gradient: group accuracy in [band_low, band_high] (0 and 1: no filter)
    band_low: float = Field(0.0, ge=0, le=1)
    band_high: float = Field(1.0, ge=0, le=1)
    prefix_sharing: bool = True  # one prompt encoding per group (vlmcot.prefix_sharing) when the model allows
    use_vllm: bool = False  # generate with vLLM (paper scale; needs the vllm package and a GPU)
    vllm_mode: Literal["colocate", "server"] = "colocate"  # vLLM in the training processes, or `trl vllm-serve`
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)  # colocate: GPU share vLLM may take
    vllm_tensor_parallel_size: int = Field(1, ge=1)  # colocate: GPUs one vLLM engine spans
    vllm_server_base_url: str | None = None  # server mode: e.g. http://10.0.0.2:8000 (None: host:port default)
    freeze_projector: bool = True  # projector frozen, as in the paper's DPO
    # shared fields whose GRPO default or range differs:
    learning_rate: float = Field(1e-6, gt=0)  # TRL GRPO default (R1-V: 1e-6)
    freeze_vision_tower: bool = True  # frozen, as in the paper's DPO
    per_device_train_batch_size: int = Field(16, ge=1)  # responses (not questions) per device step
    max_length: int | None = None  # not used: GRPO has no total length cap (see max_completion_length)
    save_steps: int = Field(200, ge=1)  # whole steps only (no fraction of the run)

    @model_validator(mode="after")
    def _check(self) -> GRPOTrainConfig:
        if self.band_low > self.band_high:
            raise ValueError(f"band_low {self.band_low} > band_high {self.band_high}")
        if self.max_length is not None:
            raise ValueError("max_length does nothing in GRPO: set max_completion_length")
        if self.per_device_train_batch_size % self.num_generations:
            # TRL needs whole groups per generation batch; one process and no accumulation is the common case
            raise ValueError(f"per_device_train_batch_size {self.per_device_train_batch_size} is not a multiple "
                             f"of num_generations {self.num_generations}")
        return self

    @property
    def band_active(self) -> bool:
        return self.band_low > 0.0 or self.band_high < 1.0


def grpo_config(cfg: GRPOTrainConfig, output_dir: str | Path, report_to: list[str] | None = None,
                run_name: str = "grpo", reward_weights: list[float] | None = None):
    """TRL's GRPOConfig or RLOOConfig for ``cfg``."""
    kw = trainer_kwargs(cfg, output_dir, report_to, run_name)
    kw.pop("max_length")  # neither config has it
    common = dict(
        num_generations=cfg.num_generations,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_completion_length=cfg.max_completion_length,
        beta=cfg.beta,
        epsilon=cfg.epsilon,
        num_iterations=cfg.num_iterations,
        reward_weights=reward_weights,
        use_vllm=cfg.use_vllm,
        vllm_mode=cfg.vllm_mode,
        vllm_gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
        vllm_tensor_parallel_size=cfg.vllm_tensor_parallel_size,
        vllm_server_base_url=cfg.vllm_server_base_url,
        remove_unused_columns=False,  # the reward functions read the `id` column
    )
    if cfg.trainer == "rloo":
        from trl import RLOOConfig

        return RLOOConfig(**kw, **common)
    from trl import GRPOConfig

    return GRPOConfig(**kw, **common, loss_type=cfg.loss_type, scale_rewards=cfg.scale_rewards)


class VLMRolloutMixin:
    """Put before the TRL trainer in the bases: accuracy band, prefix-shared rollouts, extra metrics."""

    band: tuple[float, float] | None = None  # (low, high) or None: no filter
    correct_at: float = 1.0  # a response is correct when its first reward (answer score) reaches this
    temperature_mc: float | None = None
    prefix_sharing: bool = True
    _row_qtypes: list[str] | None = None

    # --- which question each rollout row belongs to (for per-type temperatures) ---
    def _generate_and_score_completions(self, inputs):
        self._row_qtypes = [x.get("qtype", "short") for x in inputs]
        try:
            return super()._generate_and_score_completions(inputs)
        finally:
            self._row_qtypes = None

    # --- accuracy band and metrics, on the rewards gathered over every process ---
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        import torch

        rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        mode = "train" if self.model.training else "eval"
        g = self.num_generations if mode == "train" else self.num_generations_eval
        answer = torch.nan_to_num(rewards[:, 0], nan=-1.0)
        correct = (answer >= self.correct_at).float()
        weights = self.reward_weights.to(rewards.device)
        total = (torch.nan_to_num(rewards, nan=0.0) * weights.unsqueeze(0)).sum(1)
        group_acc = correct.view(-1, g).mean(1)
        m = self._metrics[mode]
        m["accuracy"].append(correct.mean().item())
        m["reward_all"].append(total.mean().item())
        m["group_accuracy_mixed"].append(((group_acc > 0) & (group_acc < 1)).float().mean().item())
        if self.band is not None:
            low, high = self.band
            eps = 1e-6  # 2/8 = 0.25 is inside [0.25, 0.85]
            inside = (group_acc >= low - eps) & (group_acc <= high + eps)
            m["band/share_in_band"].append(inside.float().mean().item())
            rewards = rewards.clone()
            rewards[~inside.repeat_interleave(g)] = float("nan")
        return rewards

    # --- rollouts: one prompt encoding per group, per-type temperature ---
    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations=None, *args, **kwargs):
        passthrough = (prompt_ids, images, multimodal_fields, *(() if num_generations is None else (num_generations,)),
                       *args)
        g = num_generations or self.num_generations
        plan = None if (self.use_vllm or not self.prefix_sharing or args or kwargs) else self._shared_plan(
            prompt_ids, multimodal_fields, g)
        if plan is None:
            return super()._generate_single_turn(*passthrough, **kwargs)
        ids = self._generate_shared(prompt_ids, plan, g)
        # GRPOTrainer's version (called with num_generations) returns (ids, sampling logprobs); RLOO's, ids
        return (ids, None) if num_generations is not None else ids

    def _shared_plan(self, prompt_ids, multimodal_fields, g: int):
        """The multimodal fields as tensors (one row per rollout) when rows come in whole groups of ``g`` identical prompts and images (TRL's repeat sampler
        on one process) and the model can decode with prefix sharing; else None (TRL generates)."""
        import numpy as np
        import torch

        from vlmcot.prefix_sharing import unsupported_reason

        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            return None
        if self.accelerator.num_processes != 1 or getattr(self.args, "use_transformers_continuous_batching", False):
            return None
        n = len(prompt_ids)
        if n == 0 or n % g:
            return None
        for i in range(0, n, g):
            if any(list(prompt_ids[j]) != list(prompt_ids[i]) for j in range(i + 1, i + g)):
                return None
        fields = {}
        for key, v in multimodal_fields.items():
            if not isinstance(v, torch.Tensor):  # the processor's per-image arrays (LLaVA pixel_values)
                try:
                    v = torch.as_tensor(np.array(v))
                except (ValueError, TypeError):  # ragged (per-token fields): TRL pads them itself
                    return None
            if v.dim() == 0 or v.shape[0] != n:
                return None
            for i in range(0, n, g):
                if not all(torch.equal(v[i], v[j]) for j in range(i + 1, i + g)):
                    return None
            fields[key] = v
        if unsupported_reason(self.accelerator.unwrap_model(self.model)) is not None:
            return None
        return fields

    def _generate_shared(self, prompt_ids, multimodal_fields, g: int) -> list[list[int]]:
        import torch

        from vlmcot.prefix_sharing import generate_shared

        model = self.accelerator.unwrap_model(self.model)
        device = self.accelerator.device
        heads = list(range(0, len(prompt_ids), g))
        qtypes = self._row_qtypes or ["short"] * len(prompt_ids)
        t_short = self.temperature
        t_mc = self.temperature_mc or t_short
        pad_id = self._tokenizer.pad_token_id
        eos = list(self.eos_token_ids)
        out: dict[int, list[list[int]]] = {}
        by_temp: dict[float, list[int]] = {}
        for h in heads:
            by_temp.setdefault(t_mc if qtypes[h] == "multiple_choice" else t_short, []).append(h)
        # TRL's own generation suppresses a VLM's image token (a sampled one would mismatch the image features)
        image_token = getattr(model.config, "image_token_id", None)
        suppress = [image_token] if image_token is not None else None
        was_training = model.training
        model.eval()
        try:
            for temp, rows in by_temp.items():
                width = max(len(prompt_ids[h]) for h in rows)
                ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for k, h in enumerate(rows):  # left padding, as generate and TRL pad prompts
                    p = torch.as_tensor(list(prompt_ids[h]), dtype=torch.long)
                    ids[k, width - len(p):] = p
                    mask[k, width - len(p):] = 1
                inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
                for key, v in multimodal_fields.items():
                    v = v[rows].to(device)
                    inputs[key] = v.to(model.dtype) if v.is_floating_point() else v
                new = generate_shared(model, inputs, g, self.max_completion_length, eos, pad_id, do_sample=True,
                                      temperature=temp, top_k=self.top_k or 0, top_p=self.top_p,
                                      suppress_tokens=suppress)
                for k, h in enumerate(rows):
                    seqs = []
                    for row in new[k * g:(k + 1) * g].tolist():
                        cut = next((i for i, t in enumerate(row) if t in eos), None)
                        seqs.append(row[: cut + 1] if cut is not None else row)  # EOS kept, as TRL keeps it
                    out[h] = seqs
        finally:
            model.train(was_training)
        return [s for h in heads for s in out[h]]


def grpo_rows(records, root: str | Path = ".", prompt_style: str = "paper") -> tuple[list[dict], list[str]]:
    """VQA records -> TRL conversational prompt rows ``{id, qtype, images, prompt}`` (CoT prompts, as
    `sample` and `evaluate` build them). A record whose image is missing or undecodable is skipped, with
    one error naming its id."""
    from vlmcot.prompts import build_prompt
    from vlmcot.training.data import trainable_image

    root = Path(root)
    rows, errors = [], []
    seen: dict[Path, str | None] = {}
    for r in records:
        try:
            img = trainable_image(r.image, root, seen)
            prompt = build_prompt(r, "cot", prompt_style)
        except ValueError as e:
            errors.append(f"record {r.id}: {e}")
            continue
        rows.append({"id": r.id, "qtype": r.qtype, "images": [str(img)],
                     "prompt": [{"role": "user", "content": prompt}]})
    return rows, errors


def train_grpo(
    model,
    processor,
    rows: list[dict],
    reward_funcs: list,
    reward_weights: list[float],
    cfg: GRPOTrainConfig,
    output_dir: str | Path,
    checkpoint_dir: str | Path,
    run_hash: str,
    correct_at: float = 1.0,
    report_to: list[str] | None = None,
    run_name: str = "grpo",
    callbacks: list | None = None,
) -> dict[str, float]:
    """Online RL of ``model`` on ``rows`` (see :func:`grpo_rows`) with ``reward_funcs`` (TRL reward
    functions; the first is the answer score the accuracy band reads, correct when >= ``correct_at``);
    save model + processor to ``output_dir``. ``model`` may be a zero-argument loader (called after the
    training arguments: ZeRO-3). Returns the trainer's final metrics, ``global_step`` and the last logged
    value of each RL diagnostic (``last_reward``, ``last_kl``, ...) and the first (``first_accuracy``, ...)."""
    from vlmcot.training.data import to_dataset
    from vlmcot.training.resume import ExactResumeMixin

    if cfg.trainer == "rloo":
        from trl import RLOOTrainer as Base
    else:
        from trl import GRPOTrainer as Base

    class VLMRLTrainer(ExactResumeMixin, VLMRolloutMixin, Base):
        """TRL's online RL trainer with the band filter, prefix-shared rollouts and exact resume."""

    output_dir, checkpoint_dir = Path(output_dir), Path(checkpoint_dir)
    resume = prepare_checkpoint_dir(checkpoint_dir, run_hash)
    args = grpo_config(cfg, checkpoint_dir, report_to=report_to, run_name=run_name, reward_weights=reward_weights)
    model = materialize(model)
    frozen = freeze(model, cfg.freeze_vision_tower, cfg.freeze_projector)
    log.info("%s: %d questions x %d responses a step group, frozen: %s", cfg.trainer.upper(), len(rows),
             cfg.num_generations, frozen or "nothing")
    VLMRLTrainer.band = (cfg.band_low, cfg.band_high) if cfg.band_active else None
    VLMRLTrainer.correct_at = correct_at
    VLMRLTrainer.temperature_mc = cfg.temperature_mc
    VLMRLTrainer.prefix_sharing = cfg.prefix_sharing
    trainer = VLMRLTrainer(
        model=model,
        reward_funcs=list(reward_funcs),
        args=args,
        train_dataset=to_dataset(rows),
        processing_class=processor,
        callbacks=callbacks,
        peft_config=peft_config(cfg.lora),
    )
    metrics = train_and_save(trainer, processor, cfg, resume, output_dir, checkpoint_dir)
    logged = [e for e in trainer.state.log_history if "reward" in e or "accuracy" in e]
    metrics.update(logged_scalars(logged[0] if logged else None, "first"))
    metrics.update(logged_scalars(logged[-1] if logged else None, "last"))
    return metrics
