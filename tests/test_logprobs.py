"""Teacher-forced response log-probs: only response tokens count, batching changes nothing, and the sum
equals what the model's own loss gives for those tokens (a second, independent computation)."""

import numpy as np
import pytest
import torch
from PIL import Image

from vlmcot.logprobs import ScoreRequest, completion_ids, response_logprobs
from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=2, text_heads=2, text_intermediate=96, max_position=256, vocab_size=300, seed=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lp")
    for i, color in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (32, 32), color).save(root / f"{i}.png")
    tok = train_bpe_tokenizer(["The red bar is 3 and the blue bar is 5.\n\n### Answer: 8", "USER:\nASSISTANT:\n",
                               "What is the sum of the bars?"] * 4, vocab_size=300)
    model = build_tiny_llava(TinyLlavaConfig(**SMALL), tok)
    return model, build_processor(tok, 32, 16), root


REQS = [
    ScoreRequest("a", "0.png", "What is the sum?", "The red bar is 3.\n\n### Answer: 8"),
    ScoreRequest("b", "1.png", "What is the sum of the bars?", "8"),
    ScoreRequest("c", "2.png", "Sum?", "The red bar is 3 and the blue bar is 5, so the sum is 8.\n\n### Answer: 8"),
]


def _loss_sum(model, processor, root, req: ScoreRequest) -> tuple[float, int]:
    """-(sum of response-token log-probs) via the model's own cross-entropy with prompt labels masked."""
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": req.prompt}]}]
    prompt = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    enc = processor(text=[prompt], images=[Image.open(root / req.image).convert("RGB")], add_special_tokens=False,
                    return_tensors="pt")
    resp = processor.tokenizer(req.response + processor.tokenizer.eos_token, add_special_tokens=False,
                               return_tensors="pt")["input_ids"]
    ids = torch.cat([enc["input_ids"], resp], dim=1)
    labels = ids.clone()
    labels[:, : enc["input_ids"].shape[1]] = -100
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=enc["pixel_values"], labels=labels)
    n = resp.shape[1]
    return -out.loss.item() * n, n


def test_sum_matches_model_loss_and_batching(tiny):
    model, processor, root = tiny
    batched = response_logprobs(model, processor, REQS, batch_size=3, root=root)
    single = [response_logprobs(model, processor, [r], batch_size=1, root=root)[0] for r in REQS]
    assert [o.id for o in batched] == ["a", "b", "c"]
    for b, s, req in zip(batched, single, REQS):
        np.testing.assert_allclose(b.logprobs, s.logprobs, atol=1e-4)  # padding never leaks into scores
        expected, n = _loss_sum(model, processor, root, req)
        assert len(b.token_ids) == n and b.token_ids[-1] == processor.tokenizer.eos_token_id
        assert b.total == pytest.approx(expected, abs=1e-3)
        assert np.all(b.logprobs <= 0)


def test_include_eos_false_drops_only_eos(tiny):
    model, processor, root = tiny
    with_eos = response_logprobs(model, processor, REQS[:1], batch_size=16, root=root)[0]
    without = response_logprobs(model, processor, REQS[:1], batch_size=16, root=root, include_eos=False)[0]
    assert with_eos.token_ids[:-1] == without.token_ids
    np.testing.assert_allclose(with_eos.logprobs[:-1], without.logprobs, atol=1e-5)


def test_completion_ids_are_the_response_tokens(tiny):
    _, processor, _ = tiny
    tok = processor.tokenizer
    ids = completion_ids(processor, "Sum?", "### Answer: 8", with_image=True)
    assert ids == tok("### Answer: 8", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
