"""Restoring a Trainer checkpoint's weights for real, shared by every trainer of the project.

Why this exists: transformers 5's ``save_pretrained`` (which the Trainer's checkpoints use) writes a
LLaVA's weights in the hub's original key layout (``language_model.model.*``, ``vision_tower.*``;
``revert_weight_conversion``), while the model in memory names them ``model.language_model.*``,
``model.vision_tower.*``. ``Trainer._load_from_checkpoint`` loads that file with a raw
``model.load_state_dict(state_dict, strict=False)``, which applies no key conversion: every key missed,
transformers only logged "missing keys ... unexpected keys ...", and a resumed run went on from the
weights it had at start (base init, or the SFT model) with the checkpoint's optimizer, schedule and
step counter. :class:`ExactResumeMixin` restores them through ``from_pretrained`` instead (the same key
conversion every other load of a saved model goes through) and fails on any key left over.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


class CheckpointMismatch(RuntimeError):
    """A checkpoint's weights do not cover the model being resumed exactly."""


def restore_weights(model, checkpoint: str) -> None:
    """Copy the weights saved in ``checkpoint`` (a ``save_pretrained`` folder) into ``model`` in place.

    Every parameter and buffer of ``model`` must be in the checkpoint and every checkpoint weight in
    ``model`` (tied weights count once); otherwise :class:`CheckpointMismatch` names the keys.
    """
    import torch

    # from_pretrained may initialise before loading: keep the global RNG as it was (the Trainer restores
    # the checkpoint's RNG state later, but nothing here should depend on that ordering)
    with torch.random.fork_rng(devices=[]):
        saved, info = type(model).from_pretrained(checkpoint, dtype="auto", output_loading_info=True)
    problems = {k: info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs")}
    problems = {k: sorted(map(str, v))[:8] for k, v in problems.items() if v}
    if problems:
        raise CheckpointMismatch(f"{checkpoint}: weights do not match the model: {problems}")
    # strict: the in-memory names on both sides now; any difference fails, never a silent fresh start
    try:
        model.load_state_dict(saved.state_dict(), strict=True)
    except RuntimeError as e:  # shapes or names differ: a checkpoint of another model
        raise CheckpointMismatch(f"{checkpoint}: weights do not match the model: {str(e)[:2000]}") from e
    del saved
    log.info("restored %d weights from %s", len(model.state_dict()), checkpoint)


class ExactResumeMixin:
    """Put first in a Trainer subclass's bases: ``_load_from_checkpoint`` restores the weights for real.

    The optimizer, scheduler, step counter, RNG state and data position are the Trainer's own (saved
    with ``save_only_model=False``, common.trainer_kwargs); only the weight loading was broken.
    DeepSpeed, FSDP and PEFT checkpoints keep the Trainer's own path (their formats are not
    ``save_pretrained`` folders of the whole model).
    """

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        from transformers import PreTrainedModel

        target = self.model if model is None else model
        if (
            getattr(self, "is_deepspeed_enabled", False)
            or getattr(self, "is_fsdp_enabled", False)
            or not isinstance(target, PreTrainedModel)
            or getattr(target, "_hf_peft_config_loaded", False)
        ):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        restore_weights(target, resume_from_checkpoint)
