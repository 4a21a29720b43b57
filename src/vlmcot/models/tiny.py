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
