"""Training the tiny model's BPE tokenizer on the world's own text (no downloads).

Byte-level BPE, so any character round-trips; digits are split one per token, so the tiny model sees
the same symbols for "12" in a chart and "12" in a sum (arithmetic in CoT rationales needs that).
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE_TOKEN]


# Llama-3's special tokens (the paper-scale LLaVA-NeXT-8B's text model), for the tiny LLaVA-NeXT
LLAMA3_SPECIALS = {
    "pad": "<pad>", "bos": "<|begin_of_text|>", "eos": "<|eot_id|>", "unk": "<unk>",
    "extra": ["<|start_header_id|>", "<|end_header_id|>", "<|end_of_text|>"],
}


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2,
                        specials: dict | None = None):
    """Train a byte-level BPE tokenizer on ``texts``; return a transformers ``PreTrainedTokenizerFast``.

    ``specials``: ``{"pad", "bos", "eos", "unk", "extra": [...]}`` token strings (default: the tiny
    LLaVA's ``<pad> <s> </s> <unk>``; :data:`LLAMA3_SPECIALS` for a Llama-3 style vocabulary).
    """
    sp = specials or {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK, "extra": []}
    special_tokens = [sp["pad"], sp["bos"], sp["eos"], sp["unk"], IMAGE_TOKEN, *sp.get("extra", [])]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    # The chat template writes BOS itself; keep post-processing neutral so templates and plain calls agree.
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=sp["bos"],
        eos_token=sp["eos"],
        pad_token=sp["pad"],
        unk_token=sp["unk"],
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
