"""The rerank, credit and sample stages on two tiny LLaVA-NeXT models (the paper-scale model class)."""

import json

import pytest
from PIL import Image

from tests.conftest import FakeTracker
from vlmcot.models.tiny import TinyLlavaNextConfig, build_tiny_llava_next


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    Image.new("RGB", (50, 30), "red").save(root / "a.png")
    texts = ["What color? red blue", "### Answer: 7", "The answer is red."]
    for name, seed in (("sft", 0), ("dpo", 1)):
        m, p = build_tiny_llava_next(TinyLlavaNextConfig(seed=seed), texts=texts)
        m.save_pretrained(root / name)
        p.save_pretrained(root / name)
    return root


def test_credit_stage_runs_on_llava_next(models, monkeypatch):
    from vlmcot.pipeline import credit

    monkeypatch.chdir(models)
    pair = {"id": "q1-p0", "dataset": "d", "answer": "red", "image": "a.png", "prompt": "What color?",
            "chosen": "The answer is red.", "rejected": "blue"}
    (models / "pairs.jsonl").write_text(json.dumps(pair) + "\n")
    cfg = credit.Config(pairs="pairs.jsonl", policy="dpo", reference="sft", num_pairs=1, out_dir="out",
                        metrics="credit.json", dtype="bfloat16", device="auto")
    tr = FakeTracker()
    credit.run(cfg, tr)
    assert tr.metrics["examples"] == 2
    rows = [json.loads(x) for x in (models / "out" / "tokens.jsonl").read_text().splitlines()]
    assert rows[0]["tokens"] and len(rows[0]["raw"]) == len(rows[0]["tokens"])


def test_rerank_rewards_on_llava_next(models, monkeypatch):
    from vlmcot.pipeline import rerank
    from vlmcot.records import Candidate, VQARecord

    monkeypatch.chdir(models)
    rec = VQARecord(id="q1", image="a.png", question="What color?", answer="red", dataset="d", qtype="short",
                    split="eval", metric="exact")
    cands = [Candidate(id="q1", sample=i, text=t, extracted=None, correct=i == 0, dataset="d")
             for i, t in enumerate(["### Answer: red", "### Answer: blue"])]
    cfg = rerank.Config(verifiers={"dpo": {"policy": "dpo", "reference": "sft"}}, dtype="bfloat16", device="auto",
                        batch_size=2)
    # the beta the dpo stage saved beside its model scales the reward
    (models / "dpo" / "vlmcot_config.json").write_text(json.dumps({"train": {"beta": 0.25}}))
    outs = rerank.candidate_logprobs(cfg, cands, {"q1": rec})
    assert set(outs) == {"dpo", "sft"}  # keyed by model path
    scored = {"dpo": rerank.VerifierLogprobs(outs["dpo"], outs["sft"], rerank.policy_beta("dpo"))}
    rows, unscorable = rerank.reward_rows(cands, scored)
    assert unscorable == [] and len(rows) == 2 and all(r["tokens"] > 0 and r["reward"] == r["reward"] for r in rows)
    assert all(r["reward"] == pytest.approx(0.25 * (r["logp_dpo"] - r["logp_sft"])) for r in rows)


def test_sample_hf_backend_takes_dtype_and_device(models):
    import torch

    from vlmcot.pipeline import sample

    cfg = sample.Config(model=str(models / "sft"), dtype="bfloat16", device="auto", root=str(models))
    be = sample.make_backend(cfg)
    assert be.model.dtype == torch.bfloat16
    assert be.model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
