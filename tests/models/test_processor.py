"""The chat template: string and block content render the same; generation prompt; assistant mask."""

import pytest

from vlmcot.models import build_processor, train_bpe_tokenizer


@pytest.fixture(scope="module")
def processor():
    tok = train_bpe_tokenizer(["The answer is 7.", "USER:\nASSISTANT:\n"] * 4, vocab_size=280)
    return build_processor(tok, 32, 16)


def test_string_and_block_content_render_alike(processor):
    as_blocks = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]},
                 {"role": "assistant", "content": [{"type": "text", "text": "7"}]}]
    as_string = [{"role": "user", "content": "<image>\nQ?"}, {"role": "assistant", "content": "7"}]
    text = processor.apply_chat_template(as_blocks, tokenize=False)
    assert text == processor.apply_chat_template(as_string, tokenize=False)
    assert text == "<s>USER:\n<image>\nQ?\nASSISTANT:\n7</s>\n"


def test_generation_prompt(processor):
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}]
    text = processor.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<s>USER:\n<image>\nQ?\nASSISTANT:\n"


def test_system_turn(processor):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    assert processor.apply_chat_template(msgs, tokenize=False) == "<s>Be brief.\nUSER:\nQ?\n"
