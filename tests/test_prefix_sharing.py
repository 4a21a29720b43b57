"""Prefix-shared decoding: greedy equals model.generate token for token (left padding, several samples
per prompt, grouped-query attention, rows finishing at different steps); sampling is seeded, independent
of when rows leave the batch, and draws from the model's distribution."""

import pytest
import torch
from PIL import Image

import vlmcot.prefix_sharing as ps
from vlmcot.generation import HFBackend
from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=2, text_heads=2, text_intermediate=96, max_position=128, vocab_size=300, seed=3)
PROMPTS = ["What?", "What is the value of the red bar in the chart?", "What is the value?",
           "What is the value of the red bar?"]


def spread(model, std: float = 0.2) -> None:
    """Redraw the weights wider: at the default init greedy decoding repeats one token whatever the
    prompt, which would hide position or padding errors."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * std)


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """(model, processor inputs for 4 left-padded prompts with images, pad id)."""
    root = tmp_path_factory.mktemp("ps")
    tok = train_bpe_tokenizer(["What is the value of the red bar in the chart?", "USER:\nASSISTANT:\n"] * 4,
                              vocab_size=300)
    model = build_tiny_llava(TinyLlavaConfig(**SMALL), tok).eval()
    spread(model)
    proc = build_processor(tok, 32, 16)
    images = []
    for i, color in enumerate(["red", "blue", "green", "white"]):
        Image.new("RGB", (32, 32), color).save(root / f"{i}.png")
        images.append(Image.open(root / f"{i}.png").convert("RGB"))
    backend = HFBackend(model, proc, root=root, progress=False)
    from vlmcot.generation import GenRequest

    texts = [backend._prompt_text(GenRequest(str(i), "x", p)) for i, p in enumerate(PROMPTS)]
    inputs = proc(text=texts, images=images, padding=True, padding_side="left", add_special_tokens=False,
                  return_tensors="pt")
    assert (inputs["attention_mask"] == 0).any()  # really left-padded
    return model, inputs, tok.pad_token_id


def hf_new_tokens(model, inputs, **kw):
    with torch.inference_mode():
        out = model.generate(**inputs, **kw)
    return out[:, inputs["input_ids"].shape[1] :]


def pad_to(t: torch.Tensor, width: int, pad: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad)


def test_supported():
    from transformers import GPT2Config, GPT2LMHeadModel

    assert "GPT2" in ps.unsupported_reason(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=8, n_head=2)))


@pytest.mark.parametrize("n", [1, 3])
def test_greedy_equals_generate(llava, n):
    model, inputs, pad = llava
    assert ps.unsupported_reason(model) is None
    # generate refuses greedy with num_return_sequences > 1: its rows would be copies
    ref = hf_new_tokens(model, inputs, max_new_tokens=20, do_sample=False, pad_token_id=pad,
                        eos_token_id=model.config.text_config.eos_token_id).repeat_interleave(n, dim=0)
    mine = ps.generate_shared(model, inputs, n, 20, model.config.text_config.eos_token_id, pad)
    assert mine.shape == (4 * n, 20)
    assert len({tuple(r) for r in ref.tolist()}) == 4 and len(set(ref[0].tolist())) > 5  # not degenerate
    assert torch.equal(mine, pad_to(ref, 20, pad))


@pytest.mark.parametrize("compact_at", [0.0, 0.125, 2.0])
def test_greedy_equals_generate_when_rows_stop_at_different_steps(llava, monkeypatch, compact_at):
    """A token that greedy decoding emits at different steps per prompt, taken as EOS: rows leave the
    batch (and prompts leave the shared part) at different times, and the output still matches."""
    model, inputs, pad = llava
    free = hf_new_tokens(model, inputs, max_new_tokens=16, do_sample=False, pad_token_id=pad)
    firsts = {}
    for tok_id in free.unique().tolist():
        steps = [(row == tok_id).nonzero()[0, 0].item() if (row == tok_id).any() else 99 for row in free]
        if len(set(steps)) >= 3:
            firsts[tok_id] = steps
    assert firsts, "no token stops the prompts at different steps"
    eos = max(firsts, key=lambda t: len(set(firsts[t])))
    monkeypatch.setattr(ps, "COMPACT_AT", compact_at)
    for n in (1, 2):
        ref = hf_new_tokens(model, inputs, max_new_tokens=16, do_sample=False, pad_token_id=pad,
                            eos_token_id=eos).repeat_interleave(n, dim=0)
        mine = ps.generate_shared(model, inputs, n, 16, eos, pad)
        assert torch.equal(mine, pad_to(ref, 16, pad))


def test_min_new_tokens_matches_generate(llava):
    model, inputs, pad = llava
    eos = model.config.text_config.eos_token_id
    ref = hf_new_tokens(model, inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False, pad_token_id=pad)
    mine = ps.generate_shared(model, inputs, 1, 12, eos, pad, min_new_tokens=12)
    assert torch.equal(mine, ref)


def test_grouped_query_attention_text_only():
    """A text-only Llama with 4 query heads sharing 2 key/value heads, 2 samples per prompt."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                         pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()
    spread(model, 0.3)
    ids = torch.randint(3, 64, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0
    mask[2, :2] = 0
    ids = ids.masked_fill(mask == 0, 0)
    inputs = {"input_ids": ids, "attention_mask": mask}
    assert ps.unsupported_reason(model) is None
    ref = hf_new_tokens(model, inputs, max_new_tokens=10, do_sample=False, pad_token_id=0).repeat_interleave(2, 0)
    assert len({tuple(r) for r in ref.tolist()}) == 3
    assert torch.equal(ps.generate_shared(model, inputs, 2, 10, 2, 0), pad_to(ref, 10, 0))


def sample(model, inputs, pad, seed, n=4, **kw):
    torch.manual_seed(seed)
    kw = {"do_sample": True, "temperature": 1.0, **kw}
    return ps.generate_shared(model, inputs, n, 12, model.config.text_config.eos_token_id, pad, **kw)


def test_sampling_is_seeded(llava):
    model, inputs, pad = llava
    a, b, c = sample(model, inputs, pad, 1), sample(model, inputs, pad, 1), sample(model, inputs, pad, 2)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert len({tuple(r) for r in a.tolist()}) > 4  # the samples of a prompt differ


def test_suppressed_tokens_are_never_drawn_and_greedy_matches_generate(llava):
    model, inputs, pad = llava
    eos = model.config.text_config.eos_token_id
    free = sample(model, inputs, pad, 1, n=8)
    common = torch.bincount(free.flatten(), minlength=300)
    common[pad] = common[eos] = 0
    banned = [int(common.argmax()), model.config.image_token_id]  # the most drawn token, and the image token
    held = sample(model, inputs, pad, 1, n=8, suppress_tokens=banned)
    assert not torch.isin(held, torch.tensor(banned)).any()
    ref = hf_new_tokens(model, inputs, max_new_tokens=12, do_sample=False, pad_token_id=pad, eos_token_id=eos,
                        suppress_tokens=banned)
    mine = ps.generate_shared(model, inputs, 1, 12, eos, pad, suppress_tokens=banned)
    assert torch.equal(mine, pad_to(ref, 12, pad))


def test_sampling_does_not_depend_on_when_rows_leave(llava, monkeypatch):
    """Row draws are tied to the row, so compacting the batch (or not) leaves the samples unchanged.
    A token the samples emit at many different steps, as EOS, makes rows stop at different steps."""
    model, inputs, pad = llava
    draws = sample(model, inputs, pad, 4, n=8)

    def stops(t):  # distinct first-occurrence steps of token t over the rows
        return len({(row == t).nonzero()[0, 0].item() for row in draws if (row == t).any()})

    common = max(draws.unique().tolist(), key=stops)
    outs = []
    for compact_at in (0.0, 0.125, 2.0):
        monkeypatch.setattr(ps, "COMPACT_AT", compact_at)
        torch.manual_seed(4)
        outs.append(ps.generate_shared(model, inputs, 8, 12, common, pad, do_sample=True))
    lengths = {int((row != pad).sum()) for row in outs[0]}
    assert len(lengths) >= 3  # rows did stop at different steps
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


def test_low_temperature_and_tiny_top_p_are_greedy(llava):
    model, inputs, pad = llava
    greedy = ps.generate_shared(model, inputs, 3, 12, model.config.text_config.eos_token_id, pad)
    assert torch.equal(sample(model, inputs, pad, 5, n=3, temperature=1e-4), greedy)
    assert torch.equal(sample(model, inputs, pad, 5, n=3, top_p=1e-6), greedy)
    assert torch.equal(sample(model, inputs, pad, 5, n=3, top_k=1), greedy)


def test_first_token_frequencies_follow_the_model(llava):
    """20000 first tokens of one prompt at T=1.5, top-p 0.9 against the warped softmax of its logits:
    nothing outside the nucleus, and a chi-square fit (tokens binned to >= 100 expected draws) within
    5 sigma of its degrees of freedom."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    model, inputs, pad = llava
    one = {k: v[1:2] for k, v in inputs.items()}
    with torch.inference_mode():
        logits = model(**one).logits[:, -1].float()
    probs = torch.softmax(TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(1.5)(None, logits)), -1)[0].double()
    draws = 20000
    torch.manual_seed(0)
    first = ps.generate_shared(model, one, draws, 1, model.config.text_config.eos_token_id, pad,
                               do_sample=True, temperature=1.5, top_p=0.9)[:, 0]
    counts = torch.bincount(first, minlength=probs.numel()).double()
    assert counts[probs == 0].sum() == 0
    observed, expected, obs_bin, exp_bin = [], [], 0.0, 0.0
    for t in torch.argsort(probs, descending=True).tolist():
        obs_bin, exp_bin = obs_bin + counts[t].item(), exp_bin + probs[t].item() * draws
        if exp_bin >= 100:
            observed.append(obs_bin)
            expected.append(exp_bin)
            obs_bin = exp_bin = 0.0
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected))
    df = len(expected) - 1
    assert df >= 10
    assert chi2 < df + 5 * (2 * df) ** 0.5, (chi2, df)
