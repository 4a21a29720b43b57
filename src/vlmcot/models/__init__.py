"""The VLM side of the pipeline: the tiny LLaVA and tiny LLaVA-NeXT (built from configs, tokenizer trained
locally) and loading any LLaVA-style model by path or hub id."""

from vlmcot.models.loading import load_model_and_processor
from vlmcot.models.processor import CHAT_TEMPLATE, build_image_processor, build_processor
from vlmcot.models.tiny import (
    TinyLlavaConfig,
    TinyLlavaNextConfig,
    build_tiny_llava,
    build_tiny_llava_next,
    count_parameters,
)
from vlmcot.models.tokenizer import IMAGE_TOKEN, train_bpe_tokenizer

__all__ = [
    "CHAT_TEMPLATE",
    "IMAGE_TOKEN",
    "TinyLlavaConfig",
    "TinyLlavaNextConfig",
    "build_image_processor",
    "build_processor",
    "build_tiny_llava",
    "build_tiny_llava_next",
    "count_parameters",
    "load_model_and_processor",
    "train_bpe_tokenizer",
]
