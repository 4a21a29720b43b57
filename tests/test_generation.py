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
