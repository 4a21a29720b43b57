"""Building the tiny LLaVA from configs: CLIP vision tower + MLP projector + Llama decoder.

Uses transformers' own ``LlavaForConditionalGeneration``, the class the paper-scale path loads from the
hub, so every later stage (SFT, sampling, DPO, evaluation) runs the same code at both scales.
"""

from __future__ import annotations

from pydantic import Field

from vlmcot.config import StrictModel


class TinyLlavaConfig(StrictModel):
    """Sizes of the tiny LLaVA (params.yaml ``base.model``)."""

    image_size: int = Field(64, ge=8)  # input resolution (px); the world's images are resized to it
    patch_size: int = Field(16, ge=2)  # ViT patch; (image_size/patch_size)^2 image tokens
    vision_hidden: int = Field(96, ge=8)  # CLIP hidden size
    vision_layers: int = Field(2, ge=1)  # CLIP transformer layers
    vision_heads: int = Field(4, ge=1)  # CLIP attention heads
    vision_feature_layer: int = -1  # which CLIP layer feeds the projector (LLaVA uses -2 at scale)
    text_hidden: int = Field(192, ge=8)  # Llama hidden size
    text_layers: int = Field(3, ge=1)  # Llama decoder layers
    text_heads: int = Field(4, ge=1)  # Llama attention heads
    text_intermediate: int = Field(512, ge=8)  # Llama MLP width
    max_position: int = Field(512, ge=32)  # longest sequence (image tokens + prompt + answer)
    vocab_size: int = Field(1024, ge=64)  # BPE vocabulary trained on the world's text
    seed: int = 0  # weight initialisation seed

    @property
    def num_image_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


def build_tiny_llava(cfg: TinyLlavaConfig, tokenizer):
    """A randomly initialised ``LlavaForConditionalGeneration`` matching ``tokenizer``'s vocabulary."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    if cfg.image_size % cfg.patch_size:
        raise ValueError(f"base.model.image_size ({cfg.image_size}) must be a multiple of patch_size ({cfg.patch_size})")
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden,
        intermediate_size=cfg.vision_hidden * 4,
        num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_position,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,  # halves the embedding cost; the vocabulary is small anyway
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.image_token_id,
        image_seq_length=cfg.num_image_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=cfg.vision_feature_layer,
        tie_word_embeddings=True,
    )
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


class TinyLlavaNextConfig(StrictModel):
    """Sizes of a tiny LLaVA-NeXT with the paper-scale model's structure (llava-hf/llama3-llava-next-8b-hf):
    anyres tiling over ``image_grid_pinpoints``, CLIP vision tower read at layer -2, Llama text model with
    Llama-3 special tokens and the Llama-3 LLaVA-NeXT chat template (no generation markers, as shipped)."""

    image_size: int = Field(32, ge=8)  # CLIP input (one tile); the 8B model: 336
    patch_size: int = Field(16, ge=2)
    # tiles the image is resized/padded to (multiples of image_size); the 8B model: 336x672 ... 1008x336
    image_grid_pinpoints: list[list[int]] = [[32, 64], [64, 32], [64, 64]]
    vision_hidden: int = Field(32, ge=8)
    vision_layers: int = Field(2, ge=2)
    vision_heads: int = Field(2, ge=1)
    vision_feature_layer: int = -2  # LLaVA-NeXT reads the penultimate CLIP layer
    text_hidden: int = Field(64, ge=8)
    text_layers: int = Field(2, ge=1)
    text_heads: int = Field(4, ge=1)
    text_kv_heads: int = Field(2, ge=1)  # grouped-query attention, as Llama-3 8B (32 heads, 8 kv)
    text_intermediate: int = Field(128, ge=8)
    max_position: int = Field(1024, ge=64)
    vocab_size: int = Field(400, ge=64)
    seed: int = 0


# texts the tiny LLaVA-NeXT's tokenizer is trained on when the caller passes none
_DEFAULT_TEXTS = ["What is shown in the image? The bars are 3 and 4.", "### Answer: 7", "Answer the question."]


def build_tiny_llava_next(cfg: TinyLlavaNextConfig | None = None, texts: list[str] | None = None,
                          chat_template: str | None = None):
    """(model, processor): a randomly initialised ``LlavaNextForConditionalGeneration`` and its
    ``LlavaNextProcessor`` (Llama-3 specials, PIL LLaVA-NeXT image processor, Llama-3 LLaVA-NeXT template)."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    from vlmcot.models.chat_template import LLAMA3_LLAVA_NEXT_TEMPLATE
    from vlmcot.models.processor import CLIP_MEAN, CLIP_STD
    from vlmcot.models.tokenizer import LLAMA3_SPECIALS, train_bpe_tokenizer

    cfg = cfg or TinyLlavaNextConfig()
    for hw in cfg.image_grid_pinpoints:
        if len(hw) != 2 or hw[0] % cfg.image_size or hw[1] % cfg.image_size:
            raise ValueError(f"image_grid_pinpoints entry {hw} must be [h, w], multiples of image_size {cfg.image_size}")
    base_texts = list(texts or _DEFAULT_TEXTS) + [
        "<|start_header_id|>user<|end_header_id|>\n\n", "<|start_header_id|>assistant<|end_header_id|>\n\n"]
    tok = train_bpe_tokenizer(base_texts * 4, vocab_size=cfg.vocab_size, specials=LLAMA3_SPECIALS)
    vision = CLIPVisionConfig(
        hidden_size=cfg.vision_hidden, intermediate_size=cfg.vision_hidden * 4, num_hidden_layers=cfg.vision_layers,
        num_attention_heads=cfg.vision_heads, image_size=cfg.image_size, patch_size=cfg.patch_size,
        projection_dim=cfg.vision_hidden,
    )
    text = LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.text_hidden, intermediate_size=cfg.text_intermediate,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        num_key_value_heads=cfg.text_kv_heads, max_position_embeddings=cfg.max_position,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=tok.image_token_id,
        image_grid_pinpoints=cfg.image_grid_pinpoints, vision_feature_select_strategy="default",
        vision_feature_layer=cfg.vision_feature_layer,
    )
    torch.manual_seed(cfg.seed)
    model = LlavaNextForConditionalGeneration(config)
    for gc_key, val in (("bos_token_id", tok.bos_token_id), ("eos_token_id", tok.eos_token_id),
                        ("pad_token_id", tok.pad_token_id)):
        setattr(model.generation_config, gc_key, val)
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": cfg.image_size}, crop_size={"height": cfg.image_size, "width": cfg.image_size},
        image_grid_pinpoints=cfg.image_grid_pinpoints, image_mean=CLIP_MEAN, image_std=CLIP_STD,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=cfg.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat_template or LLAMA3_LLAVA_NEXT_TEMPLATE,
    )
    return model, processor
