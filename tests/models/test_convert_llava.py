"""`vlmcot convert-llava`: an original-format LLaVA-NeXT checkpoint (Open-LLaVA-NeXT's layout:
LlavaLlamaForCausalLM, mm_* config keys, safetensors shards + index) -> HF LlavaNext.

The test builds a tiny HF LlavaNext as the reference, writes its tensors under the ORIGINAL names
(the module tree of Open-LLaVA-NeXT's llava_arch.py: model.vision_tower.vision_tower.*,
model.mm_projector.0/2, model.image_newline, model.layers.*) with a Llama-3-style tokenizer that has no
<image> token, converts, and checks: every tensor equal, the vocabulary grown with mean rows, and the
converted model's logits equal to the reference's on the same image + prompt.
"""

from __future__ import annotations

import json
import re

import pytest

torch = pytest.importorskip("torch")

from vlmcot.models.convert_llava import (  # noqa: E402
    LLAVA_LLAMA_3_SYSTEM,
    ConversionError,
    convert_llava_next,
)

SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<pad>"]
PINPOINTS = [[28, 56], [56, 28], [56, 56]]
# HF (transformers v5 module tree) -> original LLaVA-NeXT names; the inverse of what the converter does
TO_ORIGINAL = (
    (r"^model\.language_model\.", "model."),
    (r"^model\.vision_tower\.", "model.vision_tower.vision_tower.vision_model."),
    (r"^model\.multi_modal_projector\.linear_1\.", "model.mm_projector.0."),
    (r"^model\.multi_modal_projector\.linear_2\.", "model.mm_projector.2."),
)


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["What is shown in this image? A red square.", "user assistant system"] * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   pad_token="<pad>", clean_up_tokenization_spaces=False)


def _reference(vocab: int, image_token: int):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration

    text = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rope_theta=500000.0,
                       tie_word_embeddings=False)
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=1,
                              image_size=28, patch_size=14, projection_dim=64, hidden_act="quick_gelu")
    cfg = LlavaNextConfig(text_config=text, vision_config=vision, image_token_index=image_token,
                          image_grid_pinpoints=PINPOINTS, vision_feature_layer=-2,
                          vision_feature_select_strategy="default", use_image_newline_parameter=True,
                          tie_word_embeddings=False, projector_hidden_act="gelu")
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return model


def _write_original(model, tok, path, shards=2):
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    state = {}
    for k, v in model.state_dict().items():
        for pat, rep in TO_ORIGINAL:
            k = re.sub(pat, rep, k)
        state[k] = v.contiguous().clone()
    keys = sorted(state)
    weight_map = {}
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: state[k] for k in keys[i::shards]}
        save_file(part, str(path / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    t = model.config.text_config
    cfg = {  # the fields Open-LLaVA-NeXT's config.json carries (Lin-Chen/open-llava-next-llama3-8b layout)
        "_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava_llama", "hidden_size": t.hidden_size, "intermediate_size": t.intermediate_size,
        "num_hidden_layers": t.num_hidden_layers, "num_attention_heads": t.num_attention_heads,
        "num_key_value_heads": t.num_key_value_heads, "max_position_embeddings": t.max_position_embeddings,
        "rms_norm_eps": t.rms_norm_eps, "rope_theta": 500000.0, "rope_scaling": None, "hidden_act": "silu",
        "vocab_size": t.vocab_size, "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True,
        "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id,
        "image_aspect_ratio": "anyres", "image_grid_pinpoints": PINPOINTS, "mm_hidden_size": 64,
        "mm_patch_merge_type": "spatial_unpad", "mm_projector_type": "mlp2x_gelu", "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2, "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_use_im_patch_token": False, "mm_use_im_start_end": False, "tokenizer_model_max_length": 4096,
        "tokenizer_padding_side": "right", "tune_mm_mlp_adapter": False, "unfreeze_mm_vision_tower": True,
        "mm_vision_tower_lr": 2e-6, "use_mm_proj": True, "transformers_version": "4.39.0",
    }
    (path / "config.json").write_text(json.dumps(cfg, indent=2))
    tok.save_pretrained(str(path))
    return state


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llava")
    tok = _tokenizer()
    vocab = len(tok)
    ref = _reference(vocab, image_token=tok.pad_token_id)  # any in-vocab id stands in for LLaVA's -200
    original = _write_original(ref, tok, tmp / "orig")
    dst = convert_llava_next(tmp / "orig", tmp / "hf")
    return ref, original, dst, vocab


def test_original_layout_has_the_names_open_llava_next_uses(converted):
    _, original, _, _ = converted
    for k in ("model.vision_tower.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
              "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight",
              "model.mm_projector.0.weight", "model.mm_projector.2.bias", "model.image_newline",
              "model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight",
              "lm_head.weight"):
        assert k in original, k


def test_weights_config_and_vocab(converted):
    from transformers import LlavaNextForConditionalGeneration

    ref, original, dst, vocab = converted
    hf = LlavaNextForConditionalGeneration.from_pretrained(str(dst))
    cfg = hf.config
    assert cfg.vision_feature_layer == -2 and cfg.vision_feature_select_strategy == "default"
    assert cfg.image_grid_pinpoints == PINPOINTS and cfg.vision_config.image_size == 28
    assert cfg.vision_config.num_hidden_layers == 3 and cfg.text_config.rope_parameters["rope_theta"] == 500000.0
    rows = cfg.text_config.vocab_size
    assert rows % 64 == 0 and rows >= vocab + 1 and cfg.image_token_id == vocab  # <image> appended
    got, want = hf.state_dict(), ref.state_dict()
    assert set(got) == set(want)
    for k, v in want.items():
        if k in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(got[k][:vocab], v), k
            assert torch.allclose(got[k][vocab:], v.mean(0, keepdim=True).expand(rows - vocab, -1)), k
        else:
            assert torch.equal(got[k], v), k


def test_converted_logits_equal_reference(converted):
    from PIL import Image
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    ref, _, dst, vocab = converted
    proc = AutoProcessor.from_pretrained(str(dst))
    hf = LlavaNextForConditionalGeneration.from_pretrained(str(dst)).eval()
    image = Image.new("RGB", (56, 28), (200, 30, 30))
    image.paste((20, 200, 40), (30, 5, 50, 20))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown in this image?"}]}]
    text = proc.apply_chat_template(msgs, add_generation_prompt=True)
    inputs = proc(images=image, text=text, return_tensors="pt", add_special_tokens=False)
    n_img = int((inputs["input_ids"] == hf.config.image_token_id).sum())
    assert n_img > 4  # anyres: base image + tiles + newline tokens
    with torch.no_grad():
        out = hf(**inputs).logits
        ref_ids = inputs["input_ids"].clone()
        ref_ids[ref_ids == hf.config.image_token_id] = ref.config.image_token_id
        want = ref(**{**inputs, "input_ids": ref_ids}).logits
    torch.testing.assert_close(out[..., :vocab], want, rtol=1e-5, atol=1e-5)


def test_chat_template_renders_llava_llama_3(converted):
    from transformers import AutoProcessor

    _, _, dst, _ = converted
    proc = AutoProcessor.from_pretrained(str(dst))
    msgs = [{"role": "user", "content": "<image>\nWhat is it?"}, {"role": "assistant", "content": "A square."}]
    text = proc.apply_chat_template(msgs, tokenize=False)
    # conv_llava_llama_3.get_prompt() (SeparatorStyle.MPT) for the same two turns
    system = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" + LLAVA_LLAMA_3_SYSTEM)
    expected = (system + "<|eot_id|>" + "<|start_header_id|>user<|end_header_id|>\n\n" + "<image>\nWhat is it?"
                + "<|eot_id|>" + "<|start_header_id|>assistant<|end_header_id|>\n\n" + "A square." + "<|eot_id|>")
    assert text == expected
    gen = proc.apply_chat_template(msgs[:1], tokenize=False, add_generation_prompt=True)
    assert gen.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    # turns end with <|eot_id|>: it is the tokenizer's EOS (where generation stops), <|end_of_text|> too
    tok = proc.tokenizer
    assert tok.eos_token == "<|eot_id|>" and tok.pad_token == "<pad>"
    conv = json.loads((dst / "conversion.json").read_text())
    assert conv["generation_eos_token_ids"] == [tok.convert_tokens_to_ids("<|eot_id|>"),
                                                tok.convert_tokens_to_ids("<|end_of_text|>")]
    own = proc.apply_chat_template([{"role": "system", "content": "Be brief."}, *msgs[:1]], tokenize=False)
    assert "Be brief.<|eot_id|>" in own and LLAVA_LLAMA_3_SYSTEM not in own


def test_rejects_non_llava_source(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlavaNextForConditionalGeneration"]}))
    with pytest.raises(ConversionError, match="not an original-format"):
        convert_llava_next(tmp_path, tmp_path / "out")
    with pytest.raises(ConversionError, match="no config.json"):
        convert_llava_next(tmp_path / "missing", tmp_path / "out")


def test_cli_convert_llava(converted, tmp_path):
    from typer.testing import CliRunner

    from vlmcot.cli import app

    _, _, dst, _ = converted
    src = dst.parent / "orig"
    res = CliRunner().invoke(app, ["convert-llava", str(src), str(tmp_path / "out"), "--dtype", "bfloat16"])
    assert res.exit_code == 0, res.output
    assert "LlavaNextForConditionalGeneration" in res.output
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["architectures"] == ["LlavaNextForConditionalGeneration"] and cfg["dtype"] == "bfloat16"
    bad = CliRunner().invoke(app, ["convert-llava", str(tmp_path / "nothing"), str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "no config.json" in bad.output


def test_converted_folder_generates_through_the_project_backend(converted, tmp_path):
    from PIL import Image

    from vlmcot.generation import GenerationConfig, GenRequest, HFBackend
    from vlmcot.models import load_model_and_processor

    _, _, dst, _ = converted
    Image.new("RGB", (56, 28), (200, 30, 30)).save(tmp_path / "wide.png")
    Image.new("RGB", (28, 56), (20, 30, 200)).save(tmp_path / "tall.png")
    model, proc = load_model_and_processor(str(dst))
    backend = HFBackend(model, proc, root=tmp_path)
    reqs = [GenRequest("w", "wide.png", "What is shown?"), GenRequest("t", "tall.png", "Which color?")]
    out = backend.generate(reqs, GenerationConfig(max_new_tokens=4, batch_size=2))
    assert [o.id for o in out] == ["w", "t"] and all(1 <= o.num_tokens[0] <= 4 for o in out)


def test_eos_is_the_tokenizers_eot_everywhere(converted, caplog):
    """config.json, generation_config.json and the tokenizer name <|eot_id|> as EOS: SFT's token alignment
    changes nothing (no 'new PAD/BOS/EOS tokens' warning), and generation stops at <|eot_id|>."""
    import logging

    from transformers import AutoProcessor, LlavaNextForConditionalGeneration
    from transformers.trainer_utils import align_special_tokens

    _, _, dst, _ = converted
    proc = AutoProcessor.from_pretrained(str(dst))
    eot = proc.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert proc.tokenizer.eos_token == "<|eot_id|>"
    disk = json.loads((dst / "config.json").read_text())["text_config"]
    gen = json.loads((dst / "generation_config.json").read_text())
    assert disk["eos_token_id"][0] == eot and gen["eos_token_id"][0] == eot
    assert disk["pad_token_id"] == proc.tokenizer.pad_token_id == gen["pad_token_id"]
    hf = LlavaNextForConditionalGeneration.from_pretrained(str(dst))
    before = (hf.config.text_config.eos_token_id, hf.generation_config.eos_token_id)
    with caplog.at_level(logging.WARNING, logger="transformers.trainer_utils"):
        align_special_tokens(hf, proc)
    assert "new PAD/BOS/EOS" not in caplog.text
    assert (hf.config.text_config.eos_token_id, hf.generation_config.eos_token_id) == before


def test_generation_stops_at_eot(converted, tmp_path):
    from PIL import Image

    from vlmcot.generation import GenerationConfig, GenRequest, HFBackend
    from vlmcot.models import load_model_and_processor

    _, _, dst, _ = converted
    Image.new("RGB", (28, 28), (200, 30, 30)).save(tmp_path / "sq.png")
    model, proc = load_model_and_processor(str(dst))
    eot = proc.tokenizer.convert_tokens_to_ids("<|eot_id|>")
    head = model.lm_head
    # a head whose argmax is always <|eot_id|>: greedy decoding must stop after that one token
    biased = torch.nn.Linear(head.in_features, head.out_features, bias=True, dtype=head.weight.dtype)
    with torch.no_grad():
        biased.weight.zero_()
        biased.bias.zero_()
        biased.bias[eot] = 10.0
    model.lm_head = biased
    out = HFBackend(model, proc, root=tmp_path).generate([GenRequest("s", "sq.png", "What?")],
                                                           GenerationConfig(max_new_tokens=6))
    assert out[0].num_tokens[0] == 0 and out[0].texts[0] == ""
    ids = model.generate(**proc(images=Image.open(tmp_path / "sq.png"), text="<image>\nWhat?", return_tensors="pt"),
                         max_new_tokens=6, do_sample=False)
    assert ids.shape[1] - 1 == ids[0].tolist().index(eot)  # model.generate's own stop (generation_config.json)
