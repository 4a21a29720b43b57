"""The GRPO / RLOO wrapper: its settings, the prompt rows, the online accuracy band (rewards of questions
outside the band become NaN: no policy gradient), and on a tiny LLaVA a few steps of each trainer with
prefix-shared rollouts: the policy moves, the vision tower and projector do not, the RL curves are logged."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from vlmcot.records import VQARecord
from vlmcot.training.grpo import GRPOTrainConfig, VLMRolloutMixin, grpo_config, grpo_rows

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=1, text_heads=2, text_intermediate=96, max_position=256, vocab_size=300, seed=4)


def _records(root, n=4):
    recs = []
    for i in range(n):
        Image.new("RGB", (32, 32), (40 * i, 100, 50)).save(root / f"{i}.png")
        mc = i % 2 == 1
        recs.append(VQARecord(id=f"q{i}", image=f"{i}.png", question=f"What is {i} plus 3?", answer="B" if mc else
                              str(i + 3), choices=["1", str(i + 3)] if mc else None, dataset="synth_chart",
                              qtype="multiple_choice" if mc else "numeric", split="train",
                              metric="mc_accuracy" if mc else "relaxed_accuracy"))
    return recs


def test_config_checks():
    with pytest.raises(ValueError, match="band_low"):
        GRPOTrainConfig(band_low=0.9, band_high=0.1)
    with pytest.raises(ValueError, match="max_completion_length"):
        GRPOTrainConfig(max_length=512)
    with pytest.raises(ValueError, match="multiple of num_generations"):
        GRPOTrainConfig(per_device_train_batch_size=12, num_generations=8)
    assert not GRPOTrainConfig().band_active and GRPOTrainConfig(band_low=0.25, band_high=0.85).band_active


def test_trl_configs_get_our_settings(tmp_path):
    cfg = GRPOTrainConfig(num_generations=4, per_device_train_batch_size=8, beta=0.02, temperature=0.6,
                          max_completion_length=64, loss_type="grpo", scale_rewards="none", learning_rate=3e-6)
    g = grpo_config(cfg, tmp_path, reward_weights=[1.0, 0.1])
    assert type(g).__name__ == "GRPOConfig"
    assert (g.num_generations, g.beta, g.temperature, g.max_completion_length) == (4, 0.02, 0.6, 64)
    assert (g.loss_type, g.scale_rewards, g.learning_rate, g.reward_weights) == ("grpo", "none", 3e-6, [1.0, 0.1])
    assert g.remove_unused_columns is False and g.gradient_checkpointing is False and g.use_vllm is False
    r = grpo_config(cfg.model_copy(update={"trainer": "rloo"}), tmp_path)
    assert type(r).__name__ == "RLOOConfig" and r.beta == 0.02 and r.num_generations == 4


def test_rows_are_cot_prompts_and_skip_missing_images(tmp_path):
    recs = _records(tmp_path)
    recs.append(recs[0].model_copy(update={"id": "gone", "image": "missing.png"}))
    rows, errors = grpo_rows(recs, tmp_path)
    assert [r["id"] for r in rows] == ["q0", "q1", "q2", "q3"] and len(errors) == 1 and "gone" in errors[0]
    assert rows[0]["prompt"][0]["role"] == "user" and "reason" in rows[0]["prompt"][0]["content"]
    assert rows[1]["qtype"] == "multiple_choice" and rows[0]["images"][0].endswith("0.png")


class _Base:
    """Stands in for TRL's trainer: returns the gathered reward matrix it was given."""

    def __init__(self, rewards):
        self._r = rewards

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        return self._r.clone()


class _Fake(VLMRolloutMixin, _Base):
    def __init__(self, rewards, band, g, weights):
        super().__init__(rewards)
        self.band, self.correct_at, self.num_generations = band, 1.0, g
        self.model = SimpleNamespace(training=True)
        self._metrics = {"train": defaultdict(list)}
        self.reward_weights = torch.tensor(weights)


def test_band_drops_questions_outside_it_and_logs_the_share():
    # 3 questions x 4 responses: 0/4, 1/4 (0.25, on the edge: kept) and 4/4 correct; answer + format column
    answer = torch.tensor([0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1], dtype=torch.float32)
    fmt = torch.ones(12)
    t = _Fake(torch.stack([answer, fmt], 1), band=(0.25, 0.85), g=4, weights=[1.0, 0.5])
    out = t._calculate_rewards(None, None, None, None)
    assert torch.isnan(out[:4]).all() and torch.isnan(out[8:]).all()  # outside: every reward unscorable
    assert torch.equal(out[4:8], torch.stack([answer, fmt], 1)[4:8])  # inside: untouched
    m = t._metrics["train"]
    assert m["band/share_in_band"] == [pytest.approx(1 / 3)]
    assert m["accuracy"] == [pytest.approx(5 / 12)] and m["reward_all"] == [pytest.approx(5 / 12 + 0.5)]
    assert m["group_accuracy_mixed"] == [pytest.approx(1 / 3)]


def test_no_band_keeps_everything_and_partial_scores_count_only_at_min_score():
    answer = torch.tensor([0.5, 1.0, 0.0, 0.99])  # ANLS-like partial scores: correct only at 1.0
    t = _Fake(answer[:, None], band=None, g=4, weights=[1.0])
    out = t._calculate_rewards(None, None, None, None)
    assert torch.equal(out[:, 0], answer)
    assert t._metrics["train"]["accuracy"] == [0.25] and "band/share_in_band" not in t._metrics["train"]


def _tiny(tmp_path):
    from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer

    tok = train_bpe_tokenizer(["The sum is 3 and 4.\n\n### Answer: 7", "What is 1 plus 3?", "USER:\nASSISTANT:\n",
                               "Generate a reason first and then output a short answer."] * 4, vocab_size=300)
    processor = build_processor(tok, 32, 16)
    model = build_tiny_llava(TinyLlavaConfig(**SMALL), tok)
    model.save_pretrained(tmp_path / "sft")  # TRL loads the KL reference from the policy's folder
    processor.save_pretrained(tmp_path / "sft")
    return tmp_path / "sft"


@pytest.mark.slow
@pytest.mark.parametrize("trainer", ["grpo", "rloo"])
def test_few_rl_steps_move_the_language_model_only(tmp_path, trainer, monkeypatch):
    from vlmcot.models.loading import load_model, load_processor
    from vlmcot.rewards import reward_functions
    from vlmcot.training import grpo as G

    path = _tiny(tmp_path)
    recs = _records(tmp_path)
    rows, _ = grpo_rows(recs, tmp_path)
    shared = []
    orig = G.VLMRolloutMixin._generate_shared
    monkeypatch.setattr(G.VLMRolloutMixin, "_generate_shared", lambda self, *a: shared.append(1) or orig(self, *a))
    model = load_model(str(path))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    funcs, weights = reward_functions({r.id: r for r in recs}, format_weight=0.5)
    # a reward that varies inside each group, so every step has a non-zero advantage to follow
    funcs.append(lambda completions, **_: [float(len(c[0]["content"]) % 3) for c in completions])
    weights.append(1.0)
    cfg = GRPOTrainConfig(trainer=trainer, max_steps=3, num_generations=4, per_device_train_batch_size=8,
                          max_completion_length=12, learning_rate=5e-3, warmup_ratio=0.0, logging_steps=1,
                          save_steps=100, beta=0.04, temperature_mc=1.3, band_low=0.0, band_high=1.0)
    stats = G.train_grpo(model, load_processor(str(path)), rows, funcs, weights, cfg, tmp_path / "out",
                         tmp_path / "ckpt", run_hash="h")
    assert stats["global_step"] == 3 and math.isfinite(stats["train_loss"])
    assert len(shared) == 3  # every step's rollouts went through prefix sharing
    for key in ("last_reward", "last_accuracy", "last_reward_all", "last_completions_mean_length"):
        assert key in stats, sorted(stats)
    assert 0 < stats["last_completions_mean_length"] <= 12
    assert (tmp_path / "out/model.safetensors").is_file() and not (tmp_path / "ckpt").exists()
    moved = [n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert any("language_model" in n for n in moved)
    assert not [n for n in moved if "vision_tower" in n or "multi_modal_projector" in n]


@pytest.mark.slow
def test_shared_rollouts_are_whole_groups_with_eos_kept(tmp_path):
    """The prefix-shared rollout returns g sequences per question, each cut after its EOS (kept, as TRL keeps
    it) or max_completion_length long; per-type temperatures split the call; TRL's path when rows are not
    whole groups."""
    from vlmcot.models.loading import load_model, load_processor

    path = _tiny(tmp_path)
    model, processor = load_model(str(path)), load_processor(str(path))
    img = Image.new("RGB", (32, 32), (10, 20, 30))
    msgs = [[{"role": "user", "content": [{"type": "image", "image": img}, {"type": "text", "text": f"q{i}"}]}]
            for i in (0, 0, 0, 1, 1, 1)]
    tok = processor.apply_chat_template(conversation=msgs, add_generation_prompt=True, tokenize=True,
                                        return_dict=True)
    fields = {k: v for k, v in tok.items() if k not in ("input_ids", "attention_mask")}
    eos = processor.tokenizer.eos_token_id
    t = VLMRolloutMixin()
    t.model = model
    t.accelerator = SimpleNamespace(num_processes=1, device=torch.device("cpu"), unwrap_model=lambda m: m)
    t.args = SimpleNamespace(use_transformers_continuous_batching=False)
    t.temperature, t.temperature_mc, t.top_k, t.top_p, t.max_completion_length = 1.0, 2.0, 0, 1.0, 10
    t.eos_token_ids, t._tokenizer = [eos], processor.tokenizer
    t._row_qtypes = ["short"] * 3 + ["multiple_choice"] * 3
    plan = t._shared_plan(tok["input_ids"], fields, 3)
    assert plan is not None and plan["pixel_values"].shape[0] == 6
    torch.manual_seed(0)
    out = t._generate_shared(tok["input_ids"], plan, 3)
    assert len(out) == 6
    for seq in out:
        assert 1 <= len(seq) <= 10 and (eos not in seq[:-1]) and (seq[-1] == eos or len(seq) == 10)
        assert model.config.image_token_id not in seq  # suppressed, as TRL's own generation does
    assert t._shared_plan(tok["input_ids"], fields, 4) is None  # 6 rows are not groups of 4
    assert t._shared_plan(tok["input_ids"][:2] + tok["input_ids"][3:], {}, 1) is not None
