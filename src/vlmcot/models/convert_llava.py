"""Convert an original-format LLaVA-NeXT checkpoint (Open-LLaVA-NeXT, LLaVA-NeXT: class
``LlavaLlamaForCausalLM``) to transformers' ``LlavaNextForConditionalGeneration`` (``vlmcot convert-llava``).

The paper initialises from Open-LLaVA-NeXT-LLaMA3-8B (``Lin-Chen/open-llava-next-llama3-8b``), which
ships in the original LLaVA layout that transformers cannot load. The key mapping is the one in
transformers' own ``convert_llava_next_weights_to_hf.py`` (written for transformers' v5 module
layout), for the module tree of Open-LLaVA-NeXT's ``llava/model/llava_arch.py`` @a4dfe53:

=============================================  ==============================================
original (LlavaLlamaForCausalLM)               HF (LlavaNextForConditionalGeneration)
=============================================  ==============================================
model.embed_tokens / model.layers.* / norm     model.language_model.*
lm_head.weight                                 lm_head.weight
model.vision_tower.vision_tower.vision_model.*  model.vision_tower.*  (v5's flat CLIPVisionModel)
model.mm_projector.0 / .2  (mlp2x_gelu)        model.multi_modal_projector.linear_1 / linear_2
model.image_newline  (spatial_unpad)           model.image_newline
=============================================  ==============================================

Config: ``mm_vision_select_layer`` (-2) -> ``vision_feature_layer``; ``mm_vision_select_feature``
"patch" -> ``vision_feature_select_strategy`` "default" (drop CLS); ``image_grid_pinpoints`` kept;
the CLIP config is read from the checkpoint's tensor shapes (CLIP-L/336 for the paper), or given.
Vocabulary: LLaVA splices images in at input id -200, HF needs an ``<image>`` token, so one is
added (and ``<pad>`` if the tokenizer has none, as Open-LLaVA-NeXT's train.py does); the embedding
and LM head grow to a multiple of 64 rows, new rows set to the mean of the existing ones (the HF
script samples around that mean; the mean is deterministic). Original token ids are unchanged.

The processor gets a Llama-3 chat template that renders Open-LLaVA-NeXT's ``llava_llama_3``
conversation (llava/conversation.py @a4dfe53, SeparatorStyle.MPT) with its system prompt.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OPEN_LLAVA_NEXT_COMMIT = "a4dfe537cb9dab9e3f6e72390406ca3e21217bd5"  # xiaoachen98/Open-LLaVA-NeXT
# conv_llava_llama_3.system, minus the "<|begin_of_text|>...<|end_header_id|>\n\n" header it embeds
LLAVA_LLAMA_3_SYSTEM = (
    "You are a helpful language and vision assistant. You are able to understand the visual content "
    "that the user provides, and assist the user with a variety of tasks using natural language."
)

# The llava_llama_3 layout (MPT style): system + <|eot_id|>, then role header + message + <|eot_id|>
# per turn, and the bare assistant header to generate. A system message in `messages` replaces the
# default. Content is a string (LLaVA style, "<image>\n" inline) or a list of image/text blocks.
# Assistant content is wrapped in {% generation %} so TRL's assistant-only loss finds it.
LLAMA3_LLAVA_TEMPLATE = (
    "{{ bos_token }}<|start_header_id|>system<|end_header_id|>\n\n"
    "{% if messages[0]['role'] == 'system' %}"
    "{% if messages[0]['content'] is string %}{{ messages[0]['content'] }}"
    "{% else %}{% for block in messages[0]['content'] %}{% if block['type'] == 'text' %}{{ block['text'] }}{% endif %}{% endfor %}"
    "{% endif %}"
    "{% set loop_messages = messages[1:] %}"
    "{% else %}{{ '" + LLAVA_LLAMA_3_SYSTEM + "' }}{% set loop_messages = messages %}{% endif %}"
    "<|eot_id|>"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}<|start_header_id|>user<|end_header_id|>\n\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for block in message['content'] %}"
    "{% if block['type'] == 'image' %}{{ '<image>\n' }}"
    "{% elif block['type'] == 'text' %}{{ block['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|eot_id|>"
    "{% elif message['role'] == 'assistant' %}<|start_header_id|>assistant<|end_header_id|>\n\n"
    "{% generation %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for block in message['content'] %}{% if block['type'] == 'text' %}{{ block['text'] }}{% endif %}{% endfor %}"
    "{% endif %}<|eot_id|>"
    "{% endgeneration %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)

# (pattern, replacement) applied in order; the first that matches a key wins.
KEY_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"^model\.vision_tower\.vision_tower\.vision_model\.(.+)$"), r"model.vision_tower.\1"),
    (re.compile(r"^model\.mm_projector\.0\.(weight|bias)$"), r"model.multi_modal_projector.linear_1.\1"),
    (re.compile(r"^model\.mm_projector\.2\.(weight|bias)$"), r"model.multi_modal_projector.linear_2.\1"),
    (re.compile(r"^model\.image_newline$"), r"model.image_newline"),
    (re.compile(r"^model\.((?:embed_tokens|layers|norm)\..+)$"), r"model.language_model.\1"),
    (re.compile(r"^lm_head\.weight$"), r"lm_head.weight"),
)
_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class ConversionError(ValueError):
    """The source is not a checkpoint this converter can map (names the file or key)."""


def map_key(key: str) -> str | None:
    """The HF name of an original key; None for buffers that are not weights (rotary inv_freq)."""
    if key.endswith((".inv_freq", "embeddings.position_ids")):  # buffers older transformers saved
        return None
    for pat, rep in KEY_RULES:
        if pat.match(key):
            return pat.sub(rep, key)
    raise ConversionError(f"unknown key {key!r} in the original checkpoint (no mapping to LlavaNext)")


def load_original_state_dict(src: Path) -> dict[str, Any]:
    """All tensors of the checkpoint: safetensors shards (via the index if there is one) or .bin."""
    import torch
    from safetensors.torch import load_file

    index = src / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in src.glob("*.safetensors"))
    state: dict[str, Any] = {}
    if files:
        for f in files:
            if not (src / f).is_file():
                raise ConversionError(f"{src}: shard {f} named in the index is missing")
            state.update(load_file(str(src / f)))
        return state
    bins = sorted(src.glob("pytorch_model*.bin"))
    if not bins:
        raise ConversionError(f"{src}: no *.safetensors or pytorch_model*.bin weights")
    for b in bins:
        state.update(torch.load(b, map_location="cpu", weights_only=True))
    return state


def vision_config_from_state(state: dict[str, Any], prefix: str = "model.vision_tower.vision_tower.vision_model."):
    """The CLIPVisionConfig the tower's tensors imply (CLIP-L/336 for the paper); heads = hidden / 64
    as every OpenAI CLIP ViT; quick_gelu as OpenAI CLIP."""
    from transformers import CLIPVisionConfig

    try:
        patch = state[prefix + "embeddings.patch_embedding.weight"]
        pos = state[prefix + "embeddings.position_embedding.weight"]
        fc1 = state[prefix + "encoder.layers.0.mlp.fc1.weight"]
    except KeyError as e:
        raise ConversionError(f"vision tower tensor {e.args[0]!r} not in the checkpoint (pass --vision-config)") from None
    layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))}
    hidden, patch_size = patch.shape[0], patch.shape[-1]
    side = round((pos.shape[0] - 1) ** 0.5)
    if side * side != pos.shape[0] - 1:
        raise ConversionError(f"position embeddings of {pos.shape[0]} rows are not 1 + a square number of patches")
    return CLIPVisionConfig(
        hidden_size=hidden,
        intermediate_size=fc1.shape[0],
        num_hidden_layers=max(layers) + 1,
        num_attention_heads=max(1, hidden // 64),
        image_size=side * patch_size,
        patch_size=patch_size,
        projection_dim=768 if hidden == 1024 else hidden,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
    )


def _text_config(src_cfg: dict, vocab_size: int):
    from transformers import LlamaConfig

    keep = {k: v for k, v in src_cfg.items() if not k.startswith(("mm_", "_")) and k not in (
        "architectures", "model_type", "image_aspect_ratio", "image_grid_pinpoints", "tokenizer_model_max_length",
        "tokenizer_padding_side", "tune_mm_mlp_adapter", "freeze_mm_mlp_adapter", "unfreeze_mm_vision_tower",
        "use_mm_proj", "image_crop_resolution", "image_split_resolution", "transformers_version", "torch_dtype",
        "dtype", "vocab_size")}  # fmt: skip
    if keep.get("rope_scaling") is None:
        keep.pop("rope_scaling", None)  # null in LLaMA-3 configs; v5 reads rope_theta into rope_parameters
    return LlamaConfig(**keep, vocab_size=vocab_size)


def _check_source(src_cfg: dict, path: Path) -> None:
    arch = src_cfg.get("architectures") or []
    if "LlavaLlamaForCausalLM" not in arch and src_cfg.get("model_type") != "llava_llama":
        raise ConversionError(
            f"{path}: architectures {arch} / model_type {src_cfg.get('model_type')!r}: not an original-format "
            "LLaVA(-NeXT) Llama checkpoint (LlavaLlamaForCausalLM); an HF-format model needs no conversion"
        )
    if src_cfg.get("mm_projector_type", "linear") != "mlp2x_gelu":
        raise ConversionError(f"{path}: mm_projector_type {src_cfg.get('mm_projector_type')!r}: only mlp2x_gelu "
                              "(LLaVA-NeXT's 2-layer MLP) maps to LlavaNext's projector")
    if "unpad" not in src_cfg.get("mm_patch_merge_type", "flat"):
        raise ConversionError(f"{path}: mm_patch_merge_type {src_cfg.get('mm_patch_merge_type')!r}: LlavaNext "
                              "implements spatial_unpad (anyres with image_newline) only")
    if src_cfg.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        raise ConversionError(f"{path}: mm_vision_select_feature {src_cfg.get('mm_vision_select_feature')!r}")
    if not src_cfg.get("image_grid_pinpoints"):
        raise ConversionError(f"{path}: no image_grid_pinpoints (anyres) in config.json")


def convert_llava_next(src: str | Path, dst: str | Path, dtype: str | None = None,
                       vision_config: str | Path | None = None, pad_to_multiple_of: int = 64) -> Path:
    """Convert ``src`` (original LLaVA-NeXT folder) into an HF LlavaNext folder ``dst``; returns dst."""
    import torch
    from transformers import (
        AddedToken,
        AutoTokenizer,
        CLIPVisionConfig,
        GenerationConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextProcessor,
    )
    # the PIL backend: no torchvision needed, and the same resize/pad arithmetic as LLaVA's own code
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    src, dst = Path(src), Path(dst)
    cfg_path = src / "config.json"
    if not cfg_path.is_file():
        raise ConversionError(f"{src}: no config.json (download the checkpoint folder first, see docs/paper.md)")
    src_cfg = json.loads(cfg_path.read_text())
    _check_source(src_cfg, cfg_path)

    state = load_original_state_dict(src)
    try:
        tok = AutoTokenizer.from_pretrained(str(src))
    except (OSError, ValueError) as e:
        raise ConversionError(
            f"{src}: no loadable tokenizer ({type(e).__name__}: {str(e).splitlines()[0][:200]}); copy the tokenizer "
            f"files of the base LLM ({src_cfg.get('_name_or_path', 'the Llama-3 model')}) into {src}"
        ) from None
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<pad>"})  # Open-LLaVA-NeXT's train.py does the same
    tok.add_tokens(AddedToken("<image>", special=True, normalized=False), special_tokens=True)
    end_of_text = tok.eos_token
    if "<|eot_id|>" in tok.get_vocab():
        # llava_llama_3 ends every turn with <|eot_id|>; the project stops generation and ends training
        # targets at tokenizer.eos_token, so that is the turn end, not <|end_of_text|>
        tok.eos_token = "<|eot_id|>"
    image_id = tok.convert_tokens_to_ids("<image>")

    embed = state["model.embed_tokens.weight"]
    rows = max(embed.shape[0], len(tok))
    rows = -(-rows // pad_to_multiple_of) * pad_to_multiple_of
    text_cfg = _text_config(src_cfg, rows)
    if vision_config is not None:
        vcfg = CLIPVisionConfig.from_pretrained(str(vision_config))
        vcfg = getattr(vcfg, "vision_config", vcfg)
    else:
        vcfg = vision_config_from_state(state)

    select_feature = src_cfg.get("mm_vision_select_feature", "patch")
    eot = tok.convert_tokens_to_ids("<|eot_id|>") if "<|eot_id|>" in tok.get_vocab() else None
    eot_text = tok.convert_tokens_to_ids(end_of_text) if end_of_text else None
    config = LlavaNextConfig(
        text_config=text_cfg.to_dict(),
        vision_config=vcfg.to_dict(),
        image_token_index=image_id,
        image_grid_pinpoints=src_cfg["image_grid_pinpoints"],
        vision_feature_layer=src_cfg.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy="default" if select_feature == "patch" else "full",
        projector_hidden_act="gelu",
        use_image_newline_parameter=True,
        tie_word_embeddings=False,
        image_seq_length=(vcfg.image_size // vcfg.patch_size) ** 2,
    )
    config.pad_token_id = tok.pad_token_id
    # the tokenizer's turn end (<|eot_id|>) first, then <|end_of_text|>: the text config, the generation
    # config and the tokenizer agree, so the trainers' token alignment changes (and warns about) nothing
    eos = list(dict.fromkeys(i for i in (eot, eot_text) if i is not None))
    config.text_config.eos_token_id = eos if len(eos) > 1 else (eos[0] if eos else None)
    config.text_config.bos_token_id = tok.bos_token_id
    config.text_config.pad_token_id = tok.pad_token_id

    new_state: dict[str, Any] = {}
    for k, v in state.items():
        nk = map_key(k)
        if nk is not None:
            new_state[nk] = v
    for name in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
        w = new_state[name]
        if w.shape[0] < rows:
            # new rows (pad, <image>, padding to 64): the mean of the trained rows
            mean = w.float().mean(0, keepdim=True).to(w.dtype)
            new_state[name] = torch.cat([w, mean.expand(rows - w.shape[0], -1)], 0)

    with torch.device("meta"):
        model = LlavaNextForConditionalGeneration(config)
    expected = set(model.state_dict())
    for k in [k for k in new_state if k not in expected and k.startswith("model.vision_tower.")]:
        # transformers versions whose CLIPVisionModel keeps a .vision_model level
        alt = "model.vision_tower.vision_model." + k[len("model.vision_tower."):]
        if alt in expected:
            new_state[alt] = new_state.pop(k)
    missing, unexpected = model.load_state_dict(new_state, strict=False, assign=True)
    missing = [k for k in missing if not k.endswith("inv_freq")]
    if missing or unexpected:
        raise ConversionError(f"{src}: weights do not fit LlavaNext: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.tie_weights()
    if dtype is not None:
        model = model.to({"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype])
    model.eval()

    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id, eos_token_id=eos or None,
                                               pad_token_id=tok.pad_token_id)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))

    size = vcfg.image_size
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_grid_pinpoints=src_cfg["image_grid_pinpoints"],
        image_mean=_CLIP_MEAN,
        image_std=_CLIP_STD,
        do_convert_rgb=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=vcfg.patch_size,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
        num_additional_image_tokens=1,  # CLIP's CLS, dropped by the "default" strategy
        chat_template=LLAMA3_LLAVA_TEMPLATE,
        image_token="<image>",
    )
    processor.save_pretrained(str(dst))
    (dst / "conversion.json").write_text(json.dumps({
        "source": str(src), "source_architectures": src_cfg.get("architectures"),
        "mm_vision_tower": src_cfg.get("mm_vision_tower"), "original_vocab_rows": int(embed.shape[0]),
        "vocab_rows": rows, "image_token_id": image_id, "pad_token_id": tok.pad_token_id,
        "eos_token": tok.eos_token, "generation_eos_token_ids": eos,
        "conversation": "llava_llama_3", "open_llava_next_commit": OPEN_LLAVA_NEXT_COMMIT,
    }, indent=2) + "\n")
    log.info("converted %s -> %s (%d tensors, vocab %d -> %d)", src, dst, len(new_state), embed.shape[0], rows)
    return dst
