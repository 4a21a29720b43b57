"""Batched generation: left padding gives the same greedy output as one request at a time."""

import pytest
from PIL import Image

from vlmcot.generation import GenerationConfig, GenRequest, HFBackend
from vlmcot.models import TinyLlavaConfig, build_processor, build_tiny_llava, train_bpe_tokenizer

SMALL = dict(image_size=32, patch_size=16, vision_hidden=32, vision_layers=1, vision_heads=2, text_hidden=48,
             text_layers=2, text_heads=2, text_intermediate=96, max_position=128, vocab_size=300, seed=3)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    for i, color in enumerate(["red", "blue", "green", "white"]):
        Image.new("RGB", (32, 32), color).save(root / f"{i}.png")
    tok = train_bpe_tokenizer(["What is the value of the red bar in the chart?", "USER:\nASSISTANT:\n"] * 4,
                              vocab_size=300)
    cfg = TinyLlavaConfig(**SMALL)
    return HFBackend(build_tiny_llava(cfg, tok), build_processor(tok, 32, 16), root=root, progress=False)


REQUESTS = [
    GenRequest("a", "0.png", "What?"),
    GenRequest("b", "1.png", "What is the value of the red bar in the chart?"),
    GenRequest("c", "2.png", "What is the value?"),
    GenRequest("d", "3.png", "What is the value of the red bar?"),
]


def test_left_padded_batch_matches_one_at_a_time(backend):
    cfg = GenerationConfig(max_new_tokens=12, batch_size=4)
    batched = backend.generate(REQUESTS, cfg)
    single = [backend.generate([r], cfg.model_copy(update={"batch_size": 1}))[0] for r in REQUESTS]
    assert [o.id for o in batched] == ["a", "b", "c", "d"]  # request order, though batches sort by length
    assert [o.texts for o in batched] == [o.texts for o in single]
    assert all(len(o.texts) == 1 and 0 <= o.num_tokens[0] <= 12 for o in batched)


def test_num_return_sequences_and_seeded_sampling(backend):
    cfg = GenerationConfig(max_new_tokens=8, batch_size=2, do_sample=True, num_return_sequences=3, seed=7)
    a = backend.generate(REQUESTS, cfg)
    b = backend.generate(REQUESTS, cfg)
    assert all(len(o.texts) == 3 for o in a)
    assert [o.texts for o in a] == [o.texts for o in b]  # same seed, same draws


@pytest.fixture(scope="module")
def varied(backend):
    """The backend's model with wider weights (greedy output then varies with prompt and position),
    decoded with prefix sharing and with plain model.generate."""
    import copy

    import torch

    model = copy.deepcopy(backend.model)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    shared = HFBackend(model, backend.processor, root=backend.root, progress=False)
    plain = HFBackend(model, backend.processor, root=backend.root, progress=False, prefix_sharing=False)
    assert shared.prefix_sharing and not plain.prefix_sharing
    return shared, plain


def test_prefix_shared_greedy_equals_generate(varied):
    shared, plain = varied
    cfg = GenerationConfig(max_new_tokens=16, batch_size=4)
    a, b = shared.generate(REQUESTS, cfg), plain.generate(REQUESTS, cfg)
    assert [o.texts for o in a] == [o.texts for o in b]
    assert [o.num_tokens for o in a] == [o.num_tokens for o in b]
    assert len({o.texts[0] for o in a}) == 4


def test_prefix_shared_sampling_is_seeded(varied):
    shared, _ = varied
    cfg = GenerationConfig(max_new_tokens=10, batch_size=4, do_sample=True, num_return_sequences=4, seed=3)
    a, b = shared.generate(REQUESTS, cfg), shared.generate(REQUESTS, cfg)
    assert [o.texts for o in a] == [o.texts for o in b]
    assert all(len(set(o.texts)) > 1 for o in a)  # samples of one request differ
    c = shared.generate(REQUESTS, cfg.model_copy(update={"seed": 4}))
    assert [o.texts for o in a] != [o.texts for o in c]
