"""Every model-calling path on a tiny LLaVA-NeXT (anyres tiles, image_sizes, CLIP layer -2, Llama-3 template):
teacher-forced log-probs, HF generation with and without prefix sharing, and dtype/device from params."""

import pytest
import torch
from PIL import Image

from vlmcot.generation import GenerationConfig, GenRequest, HFBackend
from vlmcot.logprobs import ScoreRequest, response_logprobs
from vlmcot.models.tiny import build_tiny_llava_next


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("lnext")
    Image.new("RGB", (50, 30), "red").save(root / "wide.png")
    Image.new("RGB", (30, 60), "blue").save(root / "tall.png")
    model, processor = build_tiny_llava_next(texts=["What color? red blue", "### Answer: 7"])
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root, model.eval(), processor


def test_logprobs_match_a_full_forward_with_image_sizes(tiny):
    root, model, processor = tiny
    reqs = [ScoreRequest("a", "wide.png", "What color?", "red"), ScoreRequest("b", "tall.png", "What?", "blue blue")]
    out = response_logprobs(model, processor, reqs, batch_size=2, root=root)
    assert [len(o.token_ids) for o in out] and all(o.logprobs.size == len(o.token_ids) for o in out)
    # the same score, one request at a time through the processor's full conversation
    for r, o in zip(reqs, out):
        conv = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r.prompt}]},
                {"role": "assistant", "content": [{"type": "text", "text": r.response}]}]
        text = processor.apply_chat_template(conv, tokenize=False)
        enc = processor(text=[text], images=[Image.open(root / r.image).convert("RGB")], return_tensors="pt",
                        add_special_tokens=False)
        assert "image_sizes" in enc
        ids = enc["input_ids"][0].tolist()
        n = len(o.token_ids)
        start = next(i for i in range(len(ids) - n, -1, -1) if ids[i : i + n] == o.token_ids)
        with torch.inference_mode():
            logp = torch.log_softmax(model(**enc).logits[0].float(), -1)
        ref = [logp[start + k - 1, t].item() for k, t in enumerate(o.token_ids)]
        assert o.logprobs.tolist() == pytest.approx(ref, abs=1e-4)


@pytest.mark.parametrize("prefix_sharing", [True, False])
def test_hf_backend_generates_on_llava_next(tiny, prefix_sharing):
    root, model, processor = tiny
    be = HFBackend(model, processor, root=root, progress=False, prefix_sharing=prefix_sharing)
    assert be.prefix_sharing == prefix_sharing  # LLaVA-NeXT on Llama is supported by prefix sharing
    reqs = [GenRequest("a", "wide.png", "What color?"), GenRequest("b", "tall.png", "What?")]
    out = be.generate(reqs, GenerationConfig(max_new_tokens=4, batch_size=2))
    assert [o.id for o in out] == ["a", "b"] and all(len(o.texts) == 1 for o in out)


def test_prefix_sharing_equals_generate_greedy_on_llava_next(tiny):
    root, model, processor = tiny
    reqs = [GenRequest("a", "wide.png", "What color?"), GenRequest("b", "tall.png", "What?")]
    cfg = GenerationConfig(max_new_tokens=6, batch_size=2)
    a = HFBackend(model, processor, root=root, progress=False, prefix_sharing=True).generate(reqs, cfg)
    b = HFBackend(model, processor, root=root, progress=False, prefix_sharing=False).generate(reqs, cfg)
    assert [o.texts for o in a] == [o.texts for o in b]


def test_bf16_weights_and_device_from_params(tiny):
    root, _, _ = tiny
    be = HFBackend.from_pretrained(str(root / "model"), root=root, dtype="bfloat16", device="auto", progress=False)
    assert be.model.dtype == torch.bfloat16
    assert be.model.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    out = be.generate([GenRequest("a", "wide.png", "What color?")], GenerationConfig(max_new_tokens=3))
    assert len(out[0].texts) == 1
    lp = response_logprobs(be.model, be.processor, [ScoreRequest("a", "wide.png", "What color?", "red")],
                           batch_size=1, root=root)
    assert lp[0].logprobs.size == len(lp[0].token_ids) > 0
