"""Sampling N continuations per prompt with the prompt computed once (prefix sharing).

``model.generate(num_return_sequences=N)`` expands the inputs *before* the prefill, so the vision
tower and the whole prompt (64 image tokens + question, ~115 tokens for the embedded model) run N times,
and every decoding step reads N copies of the prompt's keys and values (transformers'
``DynamicCache`` also re-concatenates the whole cache each step). Here instead:

1. **Prefill once per question**: the model's own forward (vision tower, projector, language model)
   on the left-padded batch of Q unique prompts, position ids as ``generate`` makes them
   (``cumsum(attention_mask) - 1``). Its cache holds the prompt keys/values, ``[Q, kv_heads, P, d]``.
2. **Decode Q*N rows** in a loop, with the language model's own modules (norms, projections, rotary
   embedding, MLP, head) and one change, attention split in two parts: the N rows of a question attend
   to the *shared* prompt keys as N queries of one matrix product (``[Q, kv, N*groups, d] x [Q, kv, d,
   P]``: nothing copied N times), and to their own generated keys kept in a preallocated buffer
   (written in place, no concatenation; keys stored transposed so ``q @ k^T`` reads contiguous memory). One softmax runs over both parts, so this is the same
   attention as over the expanded cache, up to float rounding.
3. Rows that have emitted EOS leave the batch (in bulk, once an eighth of the rows is done; questions
   whose rows are all done leave the shared-prompt part too), so short answers stop costing compute.

Token selection matches ``generate``: logits in float32, EOS masked before ``min_new_tokens``,
transformers' own temperature / top-k / top-p warpers, greedy = argmax; sampling draws one uniform per
row from torch's global generator (seed it with ``torch.manual_seed``) and picks by inverse CDF, an exact
draw from the same distribution as ``torch.multinomial`` at a tenth of its cost (``multinomial`` spends
~2 ms per step on 128 x 1024 probabilities on one core). Outputs are therefore reproducible for a seed
but are not the same draws as ``generate`` with that seed; greedy output is the same token for token.

Only decoder-only Llama language models are supported (the embedded tiny LLaVA and LLaVA(-NeXT) on
Llama); :func:`unsupported_reason` says why another model is not, and the caller falls back to
``generate``.
"""

from __future__ import annotations

import sys

import torch

# generation_config fields whose non-default values this loop does not implement (-> use generate)
_UNSUPPORTED_GEN = {
    "repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "bad_words_ids": None, "sequence_bias": None,
    "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "min_length": 0, "min_p": None, "typical_p": 1.0, "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0, "top_h": None, "renormalize_logits": False, "guidance_scale": None,
}


# drop finished rows once this share of the active rows is done (> 1: never; tests vary it)
COMPACT_AT = 0.125


def _decoder(model):
    """The text decoder (``LlamaModel``) inside a VLM or causal LM, or None."""
    return model.get_decoder() if hasattr(model, "get_decoder") else None


def unsupported_reason(model) -> str | None:
    """None when :func:`generate_shared` can run this model, else why not."""
    if getattr(model.config, "is_encoder_decoder", False):
        return "encoder-decoder model"
    lm = _decoder(model)
    if lm is None or type(lm).__name__ != "LlamaModel":
        return f"text decoder {type(lm).__name__} is not LlamaModel"
    if model.get_output_embeddings() is None:
        return "no output embeddings (lm_head)"
    attn = lm.layers[0].self_attn
    if not all(hasattr(attn, a) for a in ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim")):
        return "unexpected attention module layout"
    if not hasattr(sys.modules[type(attn).__module__], "apply_rotary_pos_emb"):
        return "no apply_rotary_pos_emb in the attention module's file"
    gc = getattr(model, "generation_config", None)
    if gc is not None:
        for key, default in _UNSUPPORTED_GEN.items():
            val = getattr(gc, key, default)
            if val is not None and val != default:
                return f"generation_config.{key}={val!r} is not implemented"
    return None


def _warpers(do_sample: bool, temperature: float, top_k: int, top_p: float):
    """transformers' own warpers, in generate's order (temperature, top-k, top-p)."""
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    if not do_sample:
        return []
    out = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return out


def _select(logits: torch.Tensor, step: int, do_sample: bool, warpers, eos: torch.Tensor,
            min_new_tokens: int, rows_total: int, row_ids: torch.Tensor) -> torch.Tensor:
    """Next token per active row from float32 logits ``[rows, vocab]``.

    Sampling draws one uniform for every row of the call, finished or not, and uses the active rows'
    ones: a row's draws depend only on the seed and its index, not on when other rows finished.
    """
    if step < min_new_tokens:
        logits[:, eos] = float("-inf")
    if not do_sample:
        return logits.argmax(-1)
    for w in warpers:
        logits = w(None, logits)
    cdf = torch.softmax(logits, dim=-1).cumsum_(-1)
    u = torch.rand(rows_total, device=cdf.device, dtype=cdf.dtype)[row_ids, None] * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)


@torch.inference_mode()
def generate_shared(
    model,
    inputs: dict,
    num_return_sequences: int,
    max_new_tokens: int,
    eos_token_id: int | list[int],
    pad_token_id: int,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,
    suppress_tokens: list[int] | None = None,
) -> torch.Tensor:
    """New tokens ``[Q * N, max_new_tokens]`` (row ``q*N + j`` is sample j of prompt q, as ``generate``
    orders them); after a row's EOS, and for steps after every row finished, ``pad_token_id``.

    ``inputs`` is a processor output for Q left-padded prompts (``input_ids``, ``attention_mask``,
    ``pixel_values``, ...). ``suppress_tokens`` are never drawn (generate's ``suppress_tokens``: GRPO keeps
    a VLM from sampling its image token, which would then mismatch the image features).
    """
    n = num_return_sequences
    lm = _decoder(model)
    head = model.get_output_embeddings()
    layers = list(lm.layers[: lm.config.num_hidden_layers])
    rope_fn = sys.modules[type(layers[0].self_attn).__module__].apply_rotary_pos_emb
    attn0 = layers[0].self_attn
    d = attn0.head_dim
    n_heads = attn0.q_proj.out_features // d
    n_kv = attn0.k_proj.out_features // d
    groups = n_heads // n_kv
    scale = attn0.scaling
    eos = torch.tensor([eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id),
                       device=inputs["input_ids"].device)
    warpers = _warpers(do_sample, temperature, top_k, top_p)

    # 1. prefill: one forward per unique prompt, exactly as generate's first step
    mask = inputs["attention_mask"]
    q_count, p_len = mask.shape
    position_ids = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
    out = model(**inputs, position_ids=position_ids, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    # keys stored transposed ([Q, kv, d, P]; generated keys [rows, kv, d, T]): q @ k^T then reads
    # contiguous memory (a transposed slice makes matmul several times slower on CPU)
    prefix_k = [cache.layers[i].keys.transpose(-1, -2).contiguous() for i in range(len(layers))]
    prefix_v = [cache.layers[i].values for i in range(len(layers))]
    first_logits = out.logits[:, -1].to(dtype=torch.float32)
    del out, cache
    dtype = prefix_k[0].dtype
    neg = torch.finfo(dtype).min
    # additive mask over the prompt keys (left padding), broadcast over heads and queries
    prefix_bias = torch.zeros(q_count, 1, 1, p_len, dtype=dtype, device=mask.device).masked_fill_(
        (mask == 0)[:, None, None, :], neg)

    rows_total = q_count * n
    device = mask.device
    tokens_out = torch.full((rows_total, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    row_ids = torch.arange(rows_total, device=device)  # active rows (ids into the Q*N layout)
    row_pos = mask.long().sum(-1).repeat_interleave(n)  # next position id of each active row
    q_ids = torch.arange(q_count, device=device)  # questions with an active row
    slot = row_ids.clone()  # each active row's place in the [len(q_ids) * n] layout
    suffix_k = [torch.empty(rows_total, n_kv, d, max_new_tokens, dtype=dtype, device=device) for _ in layers]
    suffix_v = [torch.empty(rows_total, n_kv, max_new_tokens, d, dtype=dtype, device=device) for _ in layers]

    logits = first_logits.repeat_interleave(n, dim=0)
    alive = torch.ones(rows_total, dtype=torch.bool, device=device)  # per active row: no EOS yet
    suppress = torch.tensor(suppress_tokens, device=device) if suppress_tokens else None
    for step in range(max_new_tokens):
        if suppress is not None:
            logits[:, suppress] = float("-inf")
        nxt = _select(logits, step, do_sample, warpers, eos, min_new_tokens, rows_total, row_ids)
        tokens_out[row_ids, step] = torch.where(alive, nxt, pad_token_id)
        alive &= ~torch.isin(nxt, eos)
        if step == max_new_tokens - 1:
            break
        live = int(alive.sum())
        if live == 0:
            break
        if alive.numel() - live >= max(1.0, COMPACT_AT * alive.numel()):
            # compact once an eighth of the rows is done (copying the buffers each time one finishes
            # would cost about a decoding step); done rows decode until then, their tokens unused
            keep = alive.nonzero().squeeze(1)
            row_ids, row_pos, nxt, alive = row_ids[keep], row_pos[keep], nxt[keep], alive[keep]
            suffix_k = _cut(suffix_k, keep, step, transposed=True)
            suffix_v = _cut(suffix_v, keep, step)
            live_q = torch.unique(row_ids // n)
            if live_q.numel() != q_ids.numel():  # a question is finished: drop its prompt keys
                sel = torch.searchsorted(q_ids, live_q)
                prefix_k = [p[sel] for p in prefix_k]
                prefix_v = [p[sel] for p in prefix_v]
                prefix_bias = prefix_bias[sel]
                q_ids = live_q
            slot = torch.searchsorted(q_ids, row_ids // n) * n + row_ids % n
        logits = _decode_step(nxt, row_pos, step, slot, q_ids.numel() * n, lm, layers, head, rope_fn,
                              prefix_k, prefix_v, prefix_bias, suffix_k, suffix_v,
                              n, n_kv, groups, d, scale)
        row_pos = row_pos + 1
    return tokens_out


def _cut(bufs: list[torch.Tensor], keep: torch.Tensor, step: int, transposed: bool = False) -> list[torch.Tensor]:
    """Buffers of generated keys/values for the kept rows: fresh full-size buffers holding the first
    ``step`` positions (dim 2, or the last dim when ``transposed``)."""
    if step == 0:
        return [b[: keep.numel()] for b in bufs]  # nothing written yet: any rows will do
    out = []
    for b in bufs:
        nb = torch.empty(keep.numel(), *b.shape[1:], dtype=b.dtype, device=b.device)
        if transposed:
            nb[..., :step] = b[keep, ..., :step]
        else:
            nb[:, :, :step] = b[keep, :, :step]
        out.append(nb)
    return out


def _decode_step(tok, pos, step, slot, full_rows, lm, layers, head, rope_fn, prefix_k, prefix_v, prefix_bias,
                 suffix_k, suffix_v, n, n_kv, groups, d, scale) -> torch.Tensor:
    """One token for each active row; returns float32 logits ``[rows, vocab]``."""
    rows = tok.shape[0]
    qn = full_rows // n  # questions in the shared-prompt layout
    same_layout = rows == full_rows  # no row has left: skip the scatter/gather
    x = lm.embed_tokens(tok)  # [rows, hidden]
    cos, sin = lm.rotary_emb(x[:, None, :], pos[:, None])  # [rows, 1, d]
    for li, layer in enumerate(layers):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(rows, n_kv * groups, 1, d)
        k = attn.k_proj(h).view(rows, n_kv, 1, d)
        v = attn.v_proj(h).view(rows, n_kv, 1, d)
        q, k = rope_fn(q, k, cos, sin)
        sk, sv = suffix_k[li], suffix_v[li]
        sk[:, :, :, step] = k[:, :, 0]
        sv[:, :, step] = v[:, :, 0]
        q = q.view(rows, n_kv, groups, d)  # head h = kv * groups + g (repeat_kv's order)
        # shared prompt: the n rows of a question are n*groups queries against one key matrix
        qf = q if same_layout else q.new_zeros(full_rows, n_kv, groups, d).index_copy_(0, slot, q)
        qp = qf.view(qn, n, n_kv, groups, d).transpose(1, 2).reshape(qn, n_kv, n * groups, d)
        sp = torch.matmul(qp, prefix_k[li]).mul_(scale).add_(prefix_bias)  # [qn,kv,n*g,P]
        p_len = sp.shape[-1]
        sp = sp.view(qn, n_kv, n, groups, p_len).transpose(1, 2).reshape(full_rows, n_kv, groups, p_len)
        if not same_layout:
            sp = sp[slot]
        ss = torch.matmul(q, sk[..., : step + 1]).mul_(scale)  # [rows,kv,g,step+1]
        w = torch.softmax(torch.cat([sp, ss], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
        wp, ws = w[..., :p_len], w[..., p_len:]
        if not same_layout:
            wp = wp.new_zeros(full_rows, n_kv, groups, p_len).index_copy_(0, slot, wp)
        wp = wp.reshape(qn, n, n_kv, groups, p_len).transpose(1, 2).reshape(qn, n_kv, n * groups, p_len)
        op = torch.matmul(wp, prefix_v[li]).view(qn, n_kv, n, groups, d).transpose(1, 2)
        op = op.reshape(full_rows, n_kv, groups, d)
        if not same_layout:
            op = op[slot]
        o = op + torch.matmul(ws, sv[:, :, : step + 1])
        x = x + attn.o_proj(o.reshape(rows, n_kv * groups * d))
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return head(lm.norm(x)).to(torch.float32)
