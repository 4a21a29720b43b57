"""Making a model's chat template training-compatible: ``{% generation %}`` around the assistant turn.

TRL's ``assistant_only_loss`` takes the loss mask from the template's ``{% generation %}`` blocks. The
tiny model's template (:mod:`vlmcot.models.processor`) has them; the Llama-3 LLaVA-NeXT template that
``llava-hf/llama3-llava-next-8b-hf`` ships does not, and TRL cannot patch it ("The chat template is not
training-compatible"). :func:`add_generation_markers` rewrites a Llama-3 style template so the assistant
turn's text plus ``<|eot_id|>`` is wrapped in generation markers (user turns and the generation prompt
render exactly as before); :func:`ensure_training_template` applies it to a processor and verifies it
by rendering a conversation: the masked tokens must be exactly the assistant text and the end-of-turn
token, and the text without markers must be unchanged.
"""

from __future__ import annotations

import re

# The Llama-3 LLaVA-NeXT template as the HF-format conversion ships it (llava-hf/llama3-llava-next-8b-hf,
# chat_template.json): images first, then each text block followed by <|eot_id|>, Llama-3 role headers,
# BOS at the start. The hub file itself could not be fetched here; this reproduces the template
# as it appears in public code that hard-codes it for llava-hf/llama3-llava-next-8b-hf (for example a
# reward-model evaluation script mapping LlavaNextForConditionalGeneration + LlamaForCausalLM to this
# text), with the BOS the tokenizer's template writes first ("<|begin_of_text|>" at the start of the
# rendered text, which is what makes vLLM's own BOS a duplicate: see vlmcot.vllm_backend).
LLAMA3_LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>' }}{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ '\n' + content['text'] + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# The text loop of a Llama-3 style multimodal template: `{% for X in message['content'] | selectattr(
# 'type', 'equalto', 'text') %}{{ ... }}{% endfor %}`; its body is what the assistant turn generates.
_TEXT_LOOP = re.compile(
    r"(?P<loop>\{%-?\s*for\s+(?P<var>\w+)\s+in\s+message\[['\"]content['\"]\]\s*\|\s*selectattr\(\s*['\"]type['\"]\s*,"
    r"\s*['\"]equalto['\"]\s*,\s*['\"]text['\"]\s*\)\s*-?%\})(?P<body>.*?)(?P<end>\{%-?\s*endfor\s*-?%\})",
    re.S,
)
_GEN = re.compile(r"\{%-?\s*generation\s*-?%\}")


def has_generation_markers(template: str) -> bool:
    return bool(_GEN.search(template))


def add_generation_markers(template: str) -> str:
    """``template`` with the assistant turn's text loop wrapped in ``{% generation %}``.

    Only the text loop of assistant messages is wrapped; other roles take the original branch, so every
    rendering is unchanged. Raises ValueError when the template has no Llama-3 style text loop.
    """
    if has_generation_markers(template):
        return template
    matches = list(_TEXT_LOOP.finditer(template))
    if len(matches) != 1:
        raise ValueError(
            f"cannot add {{% generation %}} markers: expected one Llama-3 style text loop "
            f"(for ... in message['content'] | selectattr('type', 'equalto', 'text')), found {len(matches)}; "
            "write the markers into the model's chat_template.json by hand (around the assistant text and "
            "its end-of-turn token)"
        )
    m = matches[0]
    loop = m.group(0)
    wrapped = (
        "{% if message['role'] == 'assistant' %}"
        f"{m.group('loop')}{{% generation %}}{m.group('body')}{{% endgeneration %}}{m.group('end')}"
        f"{{% else %}}{loop}{{% endif %}}"
    )
    return template[: m.start()] + wrapped + template[m.end() :]


def _strip_markers(template: str) -> str:
    return re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)


def verify_training_template(processor, template: str) -> None:
    """Render a two-turn conversation with ``template``; raise ValueError unless the assistant mask covers
    exactly each assistant text plus the end-of-turn token, and the markers change no rendered text."""
    probe = "Probe answer 12."
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Q one?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": probe}]},
        {"role": "user", "content": [{"type": "text", "text": "Q two?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": probe}]},
    ]
    tok = processor.tokenizer if hasattr(processor, "tokenizer") else processor
    plain = tok.apply_chat_template(messages, tokenize=False, chat_template=_strip_markers(template))
    marked = tok.apply_chat_template(messages, tokenize=False, chat_template=template)
    if plain != marked:
        raise ValueError("the generation markers changed the rendered conversation")
    out = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                                  chat_template=template)
    ids, mask = out["input_ids"], out["assistant_masks"]
    # the masked tokens, in runs (one run per assistant turn)
    runs, cur = [], []
    for t, m in zip(ids, mask):
        if m:
            cur.append(t)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    if len(runs) != 2:
        raise ValueError(f"expected 2 assistant spans in the loss mask, found {len(runs)}")
    eos = tok.eos_token or ""
    for run in runs:
        text = tok.decode(run, skip_special_tokens=False)
        # leading whitespace the template writes before the text is part of what the model generates
        if text.lstrip() != probe + eos:
            raise ValueError(f"assistant span {text!r} is not the assistant text plus the end-of-turn token {eos!r}")


def ensure_training_template(processor) -> bool:
    """Give ``processor`` a chat template with generation markers (rewritten and verified); True when it
    changed. Templates that already have markers are left alone."""
    template = processor.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if template is None:
        raise ValueError("the processor has no chat template (training needs one with {% generation %} markers)")
    if has_generation_markers(template):
        return False
    new = add_generation_markers(template)
    verify_training_template(processor, new)
    processor.chat_template = new
    if hasattr(processor, "tokenizer"):
        processor.tokenizer.chat_template = new
    return True
