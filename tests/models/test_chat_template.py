"""Generation markers for the Llama-3 LLaVA-NeXT chat template, and SFT through TRL with it."""

import pytest

from vlmcot.models.chat_template import (
    LLAMA3_LLAVA_NEXT_TEMPLATE,
    add_generation_markers,
    ensure_training_template,
    has_generation_markers,
    verify_training_template,
)
from vlmcot.models.tiny import build_tiny_llava_next

# the same template with images as '<image>\n' and the text written bare (the other form in circulation)
VARIANT = (LLAMA3_LLAVA_NEXT_TEMPLATE.replace("{{ '<image>' }}", "{{ '<image>\n' }}")
           .replace("{{ '\n' + content['text'] + '<|eot_id|>' }}", "{{ content['text'] + '<|eot_id|>' }}"))

CONV = [
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "The bars are 3 and 4."}]},
    {"role": "user", "content": [{"type": "text", "text": "Sum?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "### Answer: 7"}]},
]


@pytest.mark.parametrize("template", [LLAMA3_LLAVA_NEXT_TEMPLATE, VARIANT])
def test_markers_wrap_assistant_text_and_eot_only(template):
    _, proc = build_tiny_llava_next(chat_template=template)
    assert not has_generation_markers(proc.chat_template)
    new = add_generation_markers(template)
    verify_training_template(proc, new)  # raises unless the mask is exactly text + <|eot_id|>
    tok = proc.tokenizer
    for gen in (False, True):  # renderings unchanged, with and without the generation prompt
        assert (tok.apply_chat_template(CONV[:3], tokenize=False, add_generation_prompt=gen, chat_template=new)
                == tok.apply_chat_template(CONV[:3], tokenize=False, add_generation_prompt=gen,
                                           chat_template=template))
    out = tok.apply_chat_template(CONV, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                  chat_template=new)
    masked = tok.decode([t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m],
                        skip_special_tokens=False)
    assert masked.replace("\n", "") == "The bars are 3 and 4.<|eot_id|>### Answer: 7<|eot_id|>"
    assert ensure_training_template(proc) and has_generation_markers(proc.chat_template)
    assert not ensure_training_template(proc)  # idempotent


def test_template_without_text_loop_is_a_clear_error():
    with pytest.raises(ValueError, match="by hand"):
        add_generation_markers("{% for m in messages %}{{ m['content'] }}{% endfor %}")


def test_trl_rejects_the_shipped_template_and_accepts_the_rewritten_one():
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_stop_token_trained

    _, proc = build_tiny_llava_next()
    with pytest.raises(ValueError, match="not training-compatible"):
        get_training_chat_template(proc)
    ensure_training_template(proc)
    assert get_training_chat_template(proc) is None
    assert is_chat_template_stop_token_trained(proc)
