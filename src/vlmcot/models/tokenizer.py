"""Training the tiny model's BPE tokenizer on the world's own text (no downloads).

Byte-level BPE, so any character round-trips; digits are split one per token, so the tiny model sees
the same symbols for "12" in a chart and "12" in a sum (arithmetic in CoT rationales needs that).
"""

from __future__ import annotations

from collections.abc import Iterable

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = [PAD, BOS, EOS, UNK, IMAGE_TOKEN]


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024, min_frequency: int = 2):
    """Train a byte-level BPE tokenizer on ``texts``; return a transformers ``PreTrainedTokenizerFast``."""
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
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((t for t in texts if t), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        extra_special_tokens={"image_token": IMAGE_TOKEN},
        padding_side="right",
        clean_up_tokenization_spaces=False,
        model_max_length=1_000_000,
    )
