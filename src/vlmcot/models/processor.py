"""The processor of the tiny LLaVA: tokenizer + image processor + a chat template.

The chat template is the single place the conversation layout is defined, for training (TRL renders
it, with ``{% generation %}`` marking the tokens that carry loss) and for generation (the evaluate and
sample stages render it with ``add_generation_prompt=True``). Content may be a string (LLaVA style, with
``<image>`` inline) or a list of ``{"type": "image"|"text"}`` blocks (what TRL passes).
"""

from __future__ import annotations

# Rendered with trim_blocks, so newlines are written as {{ '\n' }}. The assistant header ends in a
# newline, not a space: with a byte-level BPE a trailing space would tokenize differently in training
# ("ĠThe") and in generation ("Ġ" then "The"). EOS sits inside {% generation %} so the model learns to stop.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for block in message['content'] %}{% if block['type'] == 'text' %}{{ block['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{ '\n' }}"
    "{% elif message['role'] == 'user' %}"
    "{{ 'USER:\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for block in message['content'] %}"
    "{% if block['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif block['type'] == 'text' %}{{ block['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ 'ASSISTANT:\n' }}"
    "{% generation %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for block in message['content'] %}{% if block['type'] == 'text' %}{{ block['text'] }}{% endif %}{% endfor %}"
    "{% endif %}{{ eos_token }}"
    "{% endgeneration %}"
    "{{ '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:\n' }}{% endif %}"
)

# CLIP's normalisation constants (the same the paper-scale CLIP-L/336 uses).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build_image_processor(image_size: int):
    """A CLIP image processor sized to the world's square images (resize + center crop to ``image_size``)."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        do_center_crop=True,
        do_convert_rgb=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )


def build_processor(tokenizer, image_size: int, patch_size: int):
    """A ``LlavaProcessor`` whose ``<image>`` expands to (image_size / patch_size)^2 tokens."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=build_image_processor(image_size),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",  # drop CLS ...
        num_additional_image_tokens=1,  # ... which CLIP adds: 16 patch tokens for 64 px / 16
        chat_template=CHAT_TEMPLATE,
    )
