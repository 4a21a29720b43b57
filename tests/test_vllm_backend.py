"""vLLM request building, tested without vLLM installed."""

import importlib.util
from types import SimpleNamespace

import pytest

from vlmcot.generation import GenerationConfig, GenRequest
from vlmcot.vllm_backend import VLLMBackend, build_prompts, collect, sampling_kwargs


def test_sampling_params_by_mode():
    s = sampling_kwargs(GenerationConfig(do_sample=True, temperature=1.2, top_p=0.9, num_return_sequences=32,
                                         max_new_tokens=256, seed=7))
    assert s == {"n": 32, "max_tokens": 256, "seed": 7, "temperature": 1.2, "top_p": 0.9, "top_k": -1}
    g = sampling_kwargs(GenerationConfig(max_new_tokens=16))
    assert g["temperature"] == 0.0 and g["n"] == 1
    with pytest.raises(ValueError, match="do_sample"):
        sampling_kwargs(GenerationConfig(num_return_sequences=4))


def test_multimodal_prompts_use_chat_template_and_images():
    seen = []

    def render(messages):
        seen.append(messages)
        blocks = messages[0]["content"]
        return "".join("<image>" if b["type"] == "image" else b["text"] for b in blocks) + " ASSISTANT:"

    reqs = [GenRequest("a", "img/a.png", "What is 2+2?\nGenerate a reason first and then output a short answer."),
            GenRequest("b", None, "Text only?")]
    prompts = build_prompts(reqs, render, load_image=lambda p: f"PIL({p})")
    assert prompts[0] == {"prompt": "<image>What is 2+2?\nGenerate a reason first and then output a short answer."
                                    " ASSISTANT:", "multi_modal_data": {"image": "PIL(img/a.png)"}}
    assert prompts[1] == {"prompt": "Text only? ASSISTANT:"}
    assert seen[0][0]["role"] == "user" and seen[0][0]["content"][0] == {"type": "image"}


def test_collect_maps_outputs_in_order():
    reqs = [GenRequest("a", None, "p"), GenRequest("b", None, "q")]
    outs = [SimpleNamespace(outputs=[SimpleNamespace(text=" x \n", token_ids=[1, 2]),
                                     SimpleNamespace(text="y", token_ids=[3])]),
            SimpleNamespace(outputs=[SimpleNamespace(text="z", token_ids=[])])]
    res = collect(reqs, outs)
    assert [(r.id, r.texts, r.num_tokens) for r in res] == [("a", ["x", "y"], [2, 1]), ("b", ["z"], [0])]
    with pytest.raises(RuntimeError, match="1 outputs for 2"):
        collect(reqs, outs[:1])


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm installed")
def test_selecting_vllm_without_it_is_a_clear_error():
    with pytest.raises(ImportError, match="pip install vllm"):
        VLLMBackend("some/model")


def _count_bos(tok, text):
    # what vLLM does with a text prompt: tokenize with the tokenizer's special tokens
    return tok(text, add_special_tokens=True)["input_ids"].count(tok.bos_token_id)


def test_llama3_prompt_gets_exactly_one_bos():
    from tokenizers.processors import TemplateProcessing

    from vlmcot.generation import user_message
    from vlmcot.models.tiny import build_tiny_llava_next
    from vlmcot.vllm_backend import strip_duplicate_bos

    _, proc = build_tiny_llava_next()
    tok = proc.tokenizer
    text = proc.apply_chat_template(user_message("What?"), tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|begin_of_text|>")
    # a tokenizer that does not add BOS itself: the template's BOS stays
    assert strip_duplicate_bos(text, tok) == text and _count_bos(tok, text) == 1
    # Llama-3's tokenizer adds <|begin_of_text|> itself (its post-processor): vLLM would see two
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", tok.bos_token_id)])
    assert _count_bos(tok, text) == 2
    fixed = strip_duplicate_bos(text, tok)
    assert _count_bos(tok, fixed) == 1 and fixed == text[len("<|begin_of_text|>"):]
