#!/usr/bin/env python3
"""ref_golden: an independent numpy float32 reference for gen_ckpt checkpoints.

    python3 tests/ref_golden.py --gen build/tests/gen_ckpt --out tests/data/ref
    python3 tests/ref_golden.py --gen build/tests/gen_ckpt --check-dense --presets ''
    python3 tests/ref_golden.py --gen build/tests/gen_ckpt --presets dsv3-mini

It is NOT Hugging Face transformers. It re-implements, step by step, what
transformers 5.x computes on its float32 eager path (modeling_llama, _mistral,
_qwen2, _qwen3, _qwen3_moe, _mixtral, _deepseek_v2, _deepseek_v3, _qwen3_next
and the Qwen3.5 variant, and modeling_rope_utils), so the C engine can be
checked on the MoE, MLA and hybrid (Gated DeltaNet) presets while no machine
with transformers is at hand. tests/hf_golden.py
stays the authority: its goldens replace these files once it has been run.

For each new preset it generates the checkpoint with gen_ckpt, reads the
safetensors shards itself, runs the same protocol as hf_golden.py (prompts of
PROMPT_LENS ids from lcg_prompt, N_GEN greedy tokens by full forward passes
without a cache, first index on ties, no EOS stop, the top-1 minus top-2 margin
per step, then the logits of one forward over prompt + continuation) and
writes tests/data/ref/<preset>.bin in the TSGOLDEN format of
tests/data/README.md, plus VERSIONS.txt.

--check-dense first runs the dense presets, whose real HF goldens live in
tests/data/golden/, and compares: logits of the stored prompt + continuation
(max |a - b| / max(1, |b|) over every row) and our own greedy tokens against
HF's. That is the check that the harness itself (reader, rope, attention,
norms, protocol) is right; it writes nothing for those presets.

Routers: an exact tie at a top-k boundary (the k-th and (k+1)-th candidate
equal) is reported, never resolved by guessing; so is a DeepSeek-V3 pick of an
expert outside the chosen groups (HF masks those with 0.0, not -inf). The
smallest router boundary gap is printed as a robustness hint for low-precision
engines.

Runs with /usr/bin/python3 and Debian's python3-numpy; needs no torch.
Exit status: 0 when every check passed, 1 when one failed, 2 on usage errors.
"""

import argparse
import datetime
import json
import math
import os
import platform
import struct
import sys
import tempfile
import time

try:
    import numpy as np
except ImportError:
    sys.exit("ref_golden: error: no numpy; use /usr/bin/python3 (apt-get install -y python3-numpy)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_golden import (N_GEN, PROMPT_LENS, CheckError, ckpt_hash, feature_variants,  # noqa: E402
                       lcg_prompt, read_golden, run_gen, write_golden)

DENSE_PRESETS = ["llama2-mini", "llama3-mini", "mistral-mini", "qwen2-mini", "qwen3-mini"]
NEW_PRESETS = ["qwen3moe-mini", "qwen3moe-fused-mini", "mixtral-mini", "dsv2lite-mini", "dsv3-mini",
               "llama-hd96-mini", "qwen3-hd256-mini", "qwen3next-mini", "qwen35-mini", "qwen35moe-mini"]
HYBRID_ARCHS = {"Qwen3NextForCausalLM", "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration"}
F32 = np.float32

# DeepseekV2Attention's softmax scale. transformers PR #47435 (merged
# 2026-07-20, "Fix yarn mscale_all_dim for DeepSeek v2 and Mistral 4") gave
# DeepSeek V2 the qk_head_dim^-0.5 * mscale^2 factor that V3 always had; the
# 5.x files before it use qk_head_dim^-0.5 alone. --dsv2-plain-scale selects
# the old behaviour; hf_golden.py prints the scale transformers really used.
DSV2_SOFTMAX_MSCALE = True


def die(msg):
    print(f"ref_golden: error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- safetensors


ST_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


def read_safetensors(path):
    """{name: float32 ndarray} of one .safetensors file (header JSON, raw data)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack_from("<Q", raw, 0)
    hdr = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, t in hdr.items():
        if name == "__metadata__":
            continue
        b, e = t["data_offsets"]
        if t["dtype"] not in ST_DTYPES:
            raise CheckError(f"{path}: {name} has dtype {t['dtype']}; BF16, F16 and F32 are read")
        dt = np.dtype(ST_DTYPES[t["dtype"]])
        a = np.frombuffer(raw, dtype=dt, count=(e - b) // dt.itemsize, offset=base + b)
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        out[name] = a.astype(F32).reshape(t["shape"])
    return out


def load_checkpoint(d):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    w = {}
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".safetensors"):
            for k, v in read_safetensors(os.path.join(d, fn)).items():
                if k in w:
                    raise CheckError(f"{d}: tensor {k} in two shards")
                w[k] = v
    return cfg, w


class Weights:
    """Name lookup that remembers what was read, so that a checkpoint tensor the
    forward never touched (a layout we misread) fails loudly."""

    def __init__(self, w):
        self.w, self.used = w, set()

    def __call__(self, name):
        if name not in self.w:
            raise CheckError(f"checkpoint has no tensor {name}")
        self.used.add(name)
        return self.w[name]

    def has(self, name):
        return name in self.w

    def unused(self):
        return sorted(set(self.w) - self.used)


# ---------------------------------------------------------------- basic ops (float32)


def linear(x, w, b=None):
    """x @ w.T (+ b): nn.Linear with weight (out, in)."""
    y = np.matmul(x, w.T)
    return y if b is None else y + b


def rms_norm(x, w, eps):
    """LlamaRMSNorm in float32: w * (x * rsqrt(mean(x^2) + eps))."""
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
    return w * (x * (F32(1.0) / np.sqrt(var + F32(eps))))


def silu(x):
    return x / (F32(1.0) + np.exp(-x))


def sigmoid(x):
    return F32(1.0) / (F32(1.0) + np.exp(-x))


def softmax(x, axis=-1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True, dtype=F32)


def causal_mask(t, window=None):
    """True where query i may see key j: j <= i, and i - window < j with a
    sliding window (masking_utils.sliding_window_overlay: exactly `window`
    keys including itself)."""
    i = np.arange(t)[:, None]
    j = np.arange(t)[None, :]
    m = j <= i
    if window:
        m &= (i - j) < window
    return m


# ---------------------------------------------------------------- rope (modeling_rope_utils)


def rope_parameters(cfg):
    """config.rope_parameters as transformers 5 standardises it: rope_scaling
    (or rope_parameters) from config.json, rope_type defaulting to "default",
    rope_theta from the top level, original_max_position_embeddings defaulting
    to max_position_embeddings for llama3/yarn/longrope."""
    rp = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
    rp.setdefault("rope_type", rp.get("type", "default"))
    rp.setdefault("rope_theta", cfg.get("rope_theta", 10000.0))
    if rp["rope_type"] in ("llama3", "yarn", "longrope"):
        rp.setdefault("original_max_position_embeddings", cfg["max_position_embeddings"])
    return rp


def yarn_get_mscale(scale, mscale=1.0):
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_inv_freq(cfg, dim):
    """(inv_freq float32 (dim/2), attention_scaling) for the rotary dim `dim`
    (head_dim for Llama/Qwen/Mistral, qk_rope_head_dim for DeepSeek whose
    config sets head_dim = qk_rope_head_dim)."""
    rp = rope_parameters(cfg)
    rt, base = rp["rope_type"], float(rp["rope_theta"])
    exps = np.arange(0, dim, 2, dtype=np.int64).astype(F32) / F32(dim)
    if rt == "default":
        return F32(1.0) / (F32(base) ** exps), 1.0
    if rt == "linear":
        return (F32(1.0) / (F32(base) ** exps)) / F32(rp["factor"]), 1.0
    if rt == "llama3":
        inv = F32(1.0) / (F32(base) ** exps)
        factor, lo, hi = float(rp["factor"]), float(rp["low_freq_factor"]), float(rp["high_freq_factor"])
        old = float(rp["original_max_position_embeddings"])
        lo_wl, hi_wl = old / lo, old / hi
        wavelen = F32(2 * math.pi) / inv
        inv_l = np.where(wavelen > lo_wl, inv / F32(factor), inv)
        smooth = (F32(old) / wavelen - F32(lo)) / F32(hi - lo)
        smoothed = (F32(1.0) - smooth) * inv_l / F32(factor) + smooth * inv_l
        medium = ~(wavelen < hi_wl) & ~(wavelen > lo_wl)
        return np.where(medium, smoothed, inv_l).astype(F32), 1.0
    if rt == "yarn":
        factor = rp.get("factor")
        orig = rp["original_max_position_embeddings"]
        if factor is None:
            factor = cfg["max_position_embeddings"] / orig
        factor = float(factor)
        att = rp.get("attention_factor")
        ms, ms_all = rp.get("mscale"), rp.get("mscale_all_dim")
        if att is None:
            if ms and ms_all:
                att = float(yarn_get_mscale(factor, ms) / yarn_get_mscale(factor, ms_all))
            else:
                att = yarn_get_mscale(factor)
        beta_fast = rp.get("beta_fast") or 32
        beta_slow = rp.get("beta_slow") or 1

        def corr_dim(rot):
            return (dim * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if rp.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=F32) - F32(low)) / F32(high - low), 0, 1).astype(F32)
        extra_f = F32(1.0) - ramp
        pos = F32(base) ** exps
        inv_extra = F32(1.0) / pos
        inv_inter = F32(1.0) / (F32(factor) * pos)
        return (inv_inter * (F32(1.0) - extra_f) + inv_extra * extra_f).astype(F32), float(att)
    raise CheckError(f"rope_type {rt!r} is not implemented in this reference")


def rope_cos_sin(inv_freq, att, t):
    """cos, sin (t, dim/2) of position * inv_freq, times attention_scaling."""
    freqs = np.arange(t, dtype=F32)[:, None] * inv_freq[None, :]
    return np.cos(freqs) * F32(att), np.sin(freqs) * F32(att)


def rope_rotate_half(x, cos, sin):
    """apply_rotary_pos_emb: pairs (i, i + d/2); emb = cat(freqs, freqs).
    x (..., t, d), cos/sin (t, d/2)."""
    h = x.shape[-1] // 2
    c, s = np.concatenate([cos, cos], -1), np.concatenate([sin, sin], -1)
    rot = np.concatenate([-x[..., h:], x[..., :h]], -1)
    return x * c + rot * s


def rope_interleave_v3(x, cos, sin):
    """DeepSeek V3 apply_rotary_pos_emb_interleave: view (d/2, 2), transpose,
    so the even lanes come first and the odd second, then rotate-half."""
    d = x.shape[-1]
    x = x.reshape(*x.shape[:-1], d // 2, 2).swapaxes(-1, -2).reshape(*x.shape[:-1], d)
    return rope_rotate_half(x, cos, sin)


def rope_complex_v2(x, cos, sin):
    """DeepSeek V2 apply_rotary_emb: view_as_complex over adjacent pairs
    (x[2i], x[2i+1]) times polar(1, freq_i) * attention_scaling; the result
    stays interleaved."""
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * cos - b * sin
    out[..., 1::2] = a * sin + b * cos
    return out


# ---------------------------------------------------------------- attention


def sdpa_eager(q, k, v, scale, mask):
    """eager_attention_forward: (q k^T) * scale, masked, softmax in float32, @ v.
    q (H, t, d), k/v (H, t, d*), mask (t, t) bool."""
    s = np.matmul(q, k.swapaxes(-1, -2)) * F32(scale)
    s = np.where(mask[None], s, F32(np.finfo(F32).min))
    return np.matmul(softmax(s), v)


def attention_gqa(x, W, p, cfg, rope, mask):
    """Llama / Mistral / Qwen2 / Qwen3 / Qwen3-MoE / Mixtral self-attention."""
    t = x.shape[0]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nh
    mt = cfg["model_type"]
    # Qwen2: q/k/v biases always; Llama and Qwen3(-MoE): q/k/v/o iff
    # attention_bias; Mistral and Mixtral: none.
    o_bias = mt in ("llama", "qwen3", "qwen3_moe") and cfg.get("attention_bias", False)
    qkv_bias = mt == "qwen2" or o_bias

    def proj(name):
        return linear(x, W(p + name + ".weight"), W(p + name + ".bias") if qkv_bias else None)

    q = proj("q_proj").reshape(t, nh, hd).swapaxes(0, 1)     # (nh, t, hd)
    k = proj("k_proj").reshape(t, nkv, hd).swapaxes(0, 1)    # (nkv, t, hd)
    v = proj("v_proj").reshape(t, nkv, hd).swapaxes(0, 1)
    if mt in ("qwen3", "qwen3_moe"):  # q/k RMSNorm over head_dim, before rope
        q = rms_norm(q, W(p + "q_norm.weight"), cfg["rms_norm_eps"])
        k = rms_norm(k, W(p + "k_norm.weight"), cfg["rms_norm_eps"])
    cos, sin = rope
    q, k = rope_rotate_half(q, cos, sin), rope_rotate_half(k, cos, sin)
    rep = nh // nkv  # repeat_kv: kv head j serves query heads j*rep .. j*rep+rep-1
    k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
    o = sdpa_eager(q, k, v, hd ** -0.5, mask)                 # (nh, t, hd)
    o = o.swapaxes(0, 1).reshape(t, nh * hd)
    return linear(o, W(p + "o_proj.weight"), W(p + "o_proj.bias") if o_bias else None)


def mla_softmax_scale(cfg):
    """qk_head_dim^-0.5, times mscale^2 when the rope is scaled and has
    mscale_all_dim (DeepseekV3Attention.__init__; V2 since PR #47435)."""
    qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    scale = qk ** -0.5
    rp = rope_parameters(cfg)
    if cfg["model_type"] == "deepseek_v2" and not DSV2_SOFTMAX_MSCALE:
        return scale
    if rp.get("rope_type", "default") != "default":
        ms_all = rp.get("mscale_all_dim", 0)
        if ms_all:
            m = yarn_get_mscale(float(rp["factor"]), ms_all)
            scale = scale * m * m
    return scale


def attention_mla(x, W, p, cfg, rope, mask):
    """DeepSeek V2/V3 multi-head latent attention, the HF (non-absorbed) way."""
    t = x.shape[0]
    nh = cfg["num_attention_heads"]
    nope, rdim, vdim = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    kvr = cfg["kv_lora_rank"]
    bias = cfg.get("attention_bias", False)

    def b(name):
        return W(p + name + ".bias") if bias else None

    if cfg.get("q_lora_rank") is None:
        q = linear(x, W(p + "q_proj.weight"))
    else:  # q_a_layernorm keeps DeepseekV*RMSNorm's default eps 1e-6
        qa = linear(x, W(p + "q_a_proj.weight"), b("q_a_proj"))
        q = linear(rms_norm(qa, W(p + "q_a_layernorm.weight"), 1e-6), W(p + "q_b_proj.weight"))
    q = q.reshape(t, nh, nope + rdim).swapaxes(0, 1)                      # (nh, t, nope+rope)
    q_nope, q_pe = q[..., :nope], q[..., nope:]

    ckv = linear(x, W(p + "kv_a_proj_with_mqa.weight"), b("kv_a_proj_with_mqa"))  # (t, kvr+rope)
    latent, k_pe = ckv[:, :kvr], ckv[:, kvr:]
    kv = linear(rms_norm(latent, W(p + "kv_a_layernorm.weight"), 1e-6), W(p + "kv_b_proj.weight"))
    kv = kv.reshape(t, nh, nope + vdim).swapaxes(0, 1)                  # (nh, t, nope+v)
    k_nope, v = kv[..., :nope], kv[..., nope:]
    k_pe = k_pe[None]                                                   # (1, t, rope), shared by heads

    cos, sin = rope
    if cfg["model_type"] == "deepseek_v2":
        q_pe, k_pe = rope_complex_v2(q_pe, cos, sin), rope_complex_v2(k_pe, cos, sin)
    elif cfg.get("rope_interleave", True):
        q_pe, k_pe = rope_interleave_v3(q_pe, cos, sin), rope_interleave_v3(k_pe, cos, sin)
    else:
        q_pe, k_pe = rope_rotate_half(q_pe, cos, sin), rope_rotate_half(k_pe, cos, sin)
    k_pe = np.broadcast_to(k_pe, (nh, t, rdim))
    qs = np.concatenate([q_nope, q_pe], -1)
    ks = np.concatenate([k_nope, k_pe], -1)
    o = sdpa_eager(qs, ks, v, mla_softmax_scale(cfg), mask)            # (nh, t, v)
    o = o.swapaxes(0, 1).reshape(t, nh * vdim)
    return linear(o, W(p + "o_proj.weight"), b("o_proj"))


# ---------------------------------------------------------------- hybrid (Qwen3-Next, Qwen3.5)
#
# Written from transformers' modeling_qwen3_next.py (Qwen3NextRMSNorm,
# Qwen3NextRMSNormGated, Qwen3NextAttention, Qwen3NextGatedDeltaNet with
# torch_causal_conv1d_update / torch_chunk_gated_delta_rule /
# torch_recurrent_gated_delta_rule, Qwen3NextSparseMoeBlock) and the Qwen3.5
# variant (separate in_proj_qkv / in_proj_z / in_proj_b / in_proj_a, config in
# text_config, text tensors under model.language_model.). The prompt goes
# through the chunked form (what HF's eager prefill runs, chunk 64); the
# token-by-token recurrence is kept as a cross-check (check_delta_forms).


def zc_rms_norm(x, w, eps):
    """Qwen3NextRMSNorm: x * rsqrt(mean(x^2) + eps) * (1 + w), weights zero-centred."""
    var = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
    return (x * (F32(1.0) / np.sqrt(var + F32(eps)))) * (F32(1.0) + w)


def l2norm(x, eps=1e-6):
    """fla's l2norm as transformers copies it: x * rsqrt(sum(x^2) + eps)."""
    return x * (F32(1.0) / np.sqrt(np.sum(x * x, axis=-1, keepdims=True, dtype=F32) + F32(eps)))


def softplus(x):
    """F.softplus, beta 1, threshold 20."""
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, F32(20))))).astype(F32)


def delta_recurrent(q, k, v, g, beta):
    """torch_recurrent_gated_delta_rule (q, k already l2-normalised): q (H, t,
    dk), k (H, t, dk), v (H, t, dv), g and beta (H, t). Returns (H, t, dv)."""
    h, t, dk = k.shape
    q = q * F32(1.0 / math.sqrt(dk))
    S = np.zeros((h, dk, v.shape[-1]), F32)
    out = np.zeros((h, t, v.shape[-1]), F32)
    for i in range(t):
        S = S * np.exp(g[:, i])[:, None, None]
        mem = np.sum(S * k[:, i, :, None], axis=-2, dtype=F32)
        delta = (v[:, i] - mem) * beta[:, i, None]
        S = S + k[:, i, :, None] * delta[:, None, :]
        out[:, i] = np.sum(S * q[:, i, :, None], axis=-2, dtype=F32)
    return out


def delta_chunked(q, k, v, g, beta, C=64):
    """torch_chunk_gated_delta_rule (q, k already l2-normalised), chunks of C:
    within a chunk the WY/UT form, across chunks the state."""
    h, t, dk = k.shape
    dv = v.shape[-1]
    pad = (C - t % C) % C
    q, k, v = [np.pad(x, ((0, 0), (0, pad), (0, 0))) for x in (q, k, v)]
    g, beta = [np.pad(x, ((0, 0), (0, pad))) for x in (g, beta)]
    n = (t + pad) // C
    q = q * F32(1.0 / math.sqrt(dk))
    k_beta, v_beta = k * beta[..., None], v * beta[..., None]
    q, k, v, k_beta, v_beta = [x.reshape(h, n, C, x.shape[-1]) for x in (q, k, v, k_beta, v_beta)]
    g = np.cumsum(g.reshape(h, n, C), axis=-1, dtype=F32)
    decay = np.tril(np.exp(np.tril(g[..., :, None] - g[..., None, :])))
    incl = np.triu(np.ones((C, C), bool), 0)
    attn = -np.where(incl, F32(0.0), np.matmul(k_beta, k.swapaxes(-1, -2)) * decay)
    for i in range(1, C):
        row = attn[..., i, :i].copy()
        sub = attn[..., :i, :i].copy()
        attn[..., i, :i] = row + np.sum(row[..., :, None] * sub, axis=-2, dtype=F32)
    attn = attn + np.eye(C, dtype=F32)
    value = np.matmul(attn, v_beta)
    k_cumdecay = np.matmul(attn, k_beta * np.exp(g)[..., None])
    S = np.zeros((h, dk, dv), F32)
    out = np.zeros((h, n, C, dv), F32)
    strict = np.triu(np.ones((C, C), bool), 1)
    for i in range(n):
        qi, ki, vi, gi = q[:, i], k[:, i], value[:, i], g[:, i]
        a = np.where(strict, F32(0.0), np.matmul(qi, ki.swapaxes(-1, -2)) * decay[:, i])
        v_new = vi - np.matmul(k_cumdecay[:, i], S)
        out[:, i] = np.matmul(qi * np.exp(gi)[..., None], S) + np.matmul(a, v_new)
        S = (S * np.exp(gi[:, -1])[:, None, None]
             + np.matmul((ki * np.exp(gi[:, -1:] - gi)[..., None]).swapaxes(-1, -2), v_new))
    return out.reshape(h, n * C, dv)[:, :t]


DELTA_CHECK = {"worst": 0.0}


def linear_attention(x, W, p, c):
    """Qwen3NextGatedDeltaNet / Qwen3.5's GatedDeltaNet over a whole prompt."""
    t = x.shape[0]
    nk, nv = c["linear_num_key_heads"], c["linear_num_value_heads"]
    dk, dv = c["linear_key_head_dim"], c["linear_value_head_dim"]
    r, kd, vd = nv // nk, nk * dk, nv * dv
    if W.has(p + "in_proj_qkvz.weight"):  # Qwen3-Next: fix_query_key_value_ordering
        qkvz = linear(x, W(p + "in_proj_qkvz.weight")).reshape(t, nk, 2 * dk + 2 * r * dv)
        ba = linear(x, W(p + "in_proj_ba.weight")).reshape(t, nk, 2 * r)
        q, k = qkvz[..., :dk], qkvz[..., dk:2 * dk]
        v = qkvz[..., 2 * dk:2 * dk + r * dv].reshape(t, nv, dv)
        z = qkvz[..., 2 * dk + r * dv:].reshape(t, nv, dv)
        b, a = ba[..., :r].reshape(t, nv), ba[..., r:].reshape(t, nv)
        mixed = np.concatenate([q.reshape(t, kd), k.reshape(t, kd), v.reshape(t, vd)], -1)
    else:  # Qwen3.5
        mixed = linear(x, W(p + "in_proj_qkv.weight"))
        z = linear(x, W(p + "in_proj_z.weight")).reshape(t, nv, dv)
        b, a = linear(x, W(p + "in_proj_b.weight")), linear(x, W(p + "in_proj_a.weight"))
    w = W(p + "conv1d.weight")[:, 0, :]  # (conv_dim, K), depthwise
    K = w.shape[1]
    padded = np.concatenate([np.zeros((K - 1, mixed.shape[1]), F32), mixed])
    conv = np.zeros_like(mixed)
    for j in range(K):  # nn.Conv1d(padding=K-1)[..., :t]: out[i] = sum_j w[j] x[i - K + 1 + j]
        conv = conv + w[:, j] * padded[j:j + t]
    conv = silu(conv)
    q = conv[:, :kd].reshape(t, nk, dk)
    k = conv[:, kd:2 * kd].reshape(t, nk, dk)
    v = conv[:, 2 * kd:].reshape(t, nv, dv)
    beta = sigmoid(b)
    g = -np.exp(W(p + "A_log")) * softplus(a + W(p + "dt_bias"))
    q, k = np.repeat(q, r, axis=1), np.repeat(k, r, axis=1)  # repeat_interleave over heads
    q, k = l2norm(q), l2norm(k)
    args = (q.swapaxes(0, 1), k.swapaxes(0, 1), v.swapaxes(0, 1), g.T.copy(), beta.T.copy())
    o = delta_chunked(*args)
    if DELTA_CHECK.get("on"):
        ref = delta_recurrent(*args)
        DELTA_CHECK["worst"] = max(DELTA_CHECK["worst"], float(np.abs(o - ref).max() / max(1e-30, np.abs(ref).max())))
    o = o.swapaxes(0, 1)  # (t, nv, dv)
    var = np.mean(o * o, axis=-1, keepdims=True, dtype=F32)  # Qwen3NextRMSNormGated: plain w
    o = W(p + "norm.weight") * (o * (F32(1.0) / np.sqrt(var + F32(c["rms_norm_eps"]))))
    o = o * silu(z)
    return linear(o.reshape(t, vd), W(p + "out_proj.weight"))


def attention_gated(x, W, p, c, rope, mask):
    """Qwen3NextAttention: q_proj gives per head q then the output gate; q/k
    zero-centred RMSNorm; RoPE over the first int(head_dim * partial_rotary_factor)
    dims; output * sigmoid(gate)."""
    t = x.shape[0]
    nh, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
    qg = linear(x, W(p + "q_proj.weight")).reshape(t, nh, 2 * hd)
    q, gate = qg[..., :hd], qg[..., hd:].reshape(t, nh * hd)
    eps = c["rms_norm_eps"]
    q = zc_rms_norm(q, W(p + "q_norm.weight"), eps).swapaxes(0, 1)
    k = zc_rms_norm(linear(x, W(p + "k_proj.weight")).reshape(t, nkv, hd), W(p + "k_norm.weight"), eps).swapaxes(0, 1)
    v = linear(x, W(p + "v_proj.weight")).reshape(t, nkv, hd).swapaxes(0, 1)
    cos, sin = rope
    rd = 2 * cos.shape[-1]
    q = np.concatenate([rope_rotate_half(q[..., :rd], cos, sin), q[..., rd:]], -1)
    k = np.concatenate([rope_rotate_half(k[..., :rd], cos, sin), k[..., rd:]], -1)
    rep = nh // nkv
    k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
    o = sdpa_eager(q, k, v, hd ** -0.5, mask).swapaxes(0, 1).reshape(t, nh * hd)
    return linear(o * sigmoid(gate), W(p + "o_proj.weight"))


# ---------------------------------------------------------------- MLPs


def mlp_dense(x, gate, up, down):
    """down(silu(gate x) * up x)."""
    return linear(silu(linear(x, gate)) * linear(x, up), down)


class RouterStats:
    """Exact ties at the top-k boundary, masked picks, the smallest gap."""

    def __init__(self):
        self.ties, self.masked_picks, self.min_gap, self.calls = 0, 0, math.inf, 0

    def boundary(self, scores, k, what):
        """scores (t, n): the value a top-k picks from; returns the indices of
        the k largest (descending), noting ties with the (k+1)-th."""
        order = np.argsort(-scores, axis=-1, kind="stable")
        idx = order[:, :k]
        if scores.shape[-1] > k:
            kth = np.take_along_axis(scores, order[:, k - 1:k], -1)[:, 0]
            nxt = np.take_along_axis(scores, order[:, k:k + 1], -1)[:, 0]
            gap = kth - nxt
            n_tie = int(np.sum(gap == 0))
            if n_tie:
                self.ties += n_tie
                print(f"  !!!! exact tie at the top-{k} boundary of {what} in {n_tie} row(s): "
                      f"torch.topk may pick either; this reference picks the lower index", flush=True)
            self.min_gap = min(self.min_gap, float(np.min(gap)))
        self.calls += 1
        return idx


def router_softmax_topk(logits, k, norm, stats, what):
    """Qwen3-MoE (norm iff norm_topk_prob) and Mixtral (norm always):
    softmax over all experts in float32, top-k, optional renormalisation."""
    probs = softmax(logits)
    idx = stats.boundary(probs, k, what)
    w = np.take_along_axis(probs, idx, -1)
    if norm:
        w = w / np.sum(w, axis=-1, keepdims=True, dtype=F32)
    return idx, w


def router_deepseek_v2(logits, cfg, stats, what):
    """DeepseekV2Moe.route_tokens_to_experts: softmax in float32; greedy top-k
    or group_limited_greedy (group score = max of the group, other groups'
    scores set to 0.0); weights times routed_scaling_factor; no renormalisation
    (HF ignores norm_topk_prob for V2)."""
    probs = softmax(logits)
    k = cfg["num_experts_per_tok"]
    method = cfg.get("topk_method", "greedy")
    if method == "greedy":
        idx = stats.boundary(probs, k, what)
    elif method == "group_limited_greedy":
        ng, tg = cfg["n_group"], cfg["topk_group"]
        t, e = probs.shape
        gs = probs.reshape(t, ng, e // ng).max(-1)
        gidx = stats.boundary(gs, tg, what + " groups")
        gmask = np.zeros((t, ng), bool)
        np.put_along_axis(gmask, gidx, True, -1)
        emask = np.repeat(gmask, e // ng, axis=-1)
        idx = stats.boundary(np.where(emask, probs, F32(0.0)), k, what)
        stats.masked_picks += int(np.sum(~np.take_along_axis(emask, idx, -1)))
    else:
        raise CheckError(f"topk_method {method!r} is not implemented for deepseek_v2")
    w = np.take_along_axis(probs, idx, -1) * F32(cfg.get("routed_scaling_factor", 1.0))
    return idx, w


def router_deepseek_v3(logits, bias, cfg, stats, what):
    """DeepseekV3MoE.route_tokens_to_experts: sigmoid scores; choice = score +
    e_score_correction_bias; group score = sum of the group's top-2 choices;
    keep topk_group groups; the rest masked with 0.0; top-k of the choices;
    weights = the unbiased scores, / (sum + 1e-20) iff norm_topk_prob, times
    routed_scaling_factor."""
    s = sigmoid(logits)
    choice = s + bias[None, :]
    t, e = choice.shape
    ng, tg, k = cfg["n_group"], cfg["topk_group"], cfg["num_experts_per_tok"]
    grouped = choice.reshape(t, ng, e // ng)
    top2 = -np.sort(-grouped, axis=-1)[..., :2]
    gs = top2[..., 0] + top2[..., 1]
    gidx = stats.boundary(gs, tg, what + " groups")
    gmask = np.zeros((t, ng), bool)
    np.put_along_axis(gmask, gidx, True, -1)
    emask = np.repeat(gmask, e // ng, axis=-1)
    masked = np.where(emask, choice, F32(0.0))
    idx = stats.boundary(masked, k, what)
    picked_out = int(np.sum(~np.take_along_axis(emask, idx, -1)))
    if picked_out:
        stats.masked_picks += picked_out
        print(f"  !!!! {what}: {picked_out} pick(s) of an expert outside the chosen groups "
              f"(its choice score was masked to 0.0 and beat a negative one)", flush=True)
    w = np.take_along_axis(s, idx, -1)
    if cfg.get("norm_topk_prob", True):
        w = w / (np.sum(w, axis=-1, keepdims=True, dtype=F32) + F32(1e-20))
    return idx, w * F32(cfg["routed_scaling_factor"])


def mlp_moe(x, experts, idx, w):
    """Sum over the chosen experts of weight * down(silu(gate x) * up x),
    accumulated expert by expert in increasing expert index, like the HF
    experts loop (index_add_ per hit expert). experts: (gate (E,F,D), up
    (E,F,D), down (E,D,F))."""
    gate, up, down = experts
    out = np.zeros_like(x)
    for e in np.unique(idx):
        rows, slot = np.nonzero(idx == e)
        y = mlp_dense(x[rows], gate[e], up[e], down[e]) * w[rows, slot][:, None]
        out[rows] += y  # rows are distinct: one add per token per expert
    return out


def load_experts(W, p, cfg, n_experts):
    """(gate, up, down) stacked (E, F, D), (E, F, D), (E, D, F) from either
    the fused layout (experts.gate_up_proj (E, 2F, D), gate rows first, and
    experts.down_proj (E, D, F)), Mixtral's experts.N.w1/w3/w2, or per-expert
    experts.N.gate_proj/up_proj/down_proj."""
    if W.has(p + "experts.gate_up_proj"):
        gu = W(p + "experts.gate_up_proj")
        f = gu.shape[1] // 2
        return gu[:, :f], gu[:, f:], W(p + "experts.down_proj")
    if W.has(p + "experts.0.w1.weight"):
        names = ("w1", "w3", "w2")
    else:
        names = ("gate_proj", "up_proj", "down_proj")
    return tuple(np.stack([W(f"{p}experts.{e}.{n}.weight") for e in range(n_experts)]) for n in names)


# ---------------------------------------------------------------- model


class Model:
    """One checkpoint: config, weights and the per-layer block kinds."""

    def __init__(self, cfg, w):
        self.W = Weights(w)
        self.stats = RouterStats()
        arch = cfg["architectures"][0]
        self.hybrid = arch in HYBRID_ARCHS
        self.tp = "model."
        if "text_config" in cfg:  # Qwen3.5: the text model's config and tensors nest
            top = cfg
            cfg = dict(cfg["text_config"])
            cfg.setdefault("tie_word_embeddings", top.get("tie_word_embeddings", False))
            cfg["architectures"] = top["architectures"]
            self.tp = "model.language_model."
            for name in w:  # the vision tower is not the text model's: not read, not missed
                if name.startswith("model.visual."):
                    self.W.used.add(name)
        self.cfg = cfg
        known = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                 "Qwen3MoeForCausalLM", "MixtralForCausalLM", "DeepseekV2ForCausalLM",
                 "DeepseekV3ForCausalLM"} | HYBRID_ARCHS
        if arch not in known:
            raise CheckError(f"architecture {arch} is not implemented in this reference")
        self.mla = cfg["model_type"] in ("deepseek_v2", "deepseek_v3")
        self.notes = []
        if self.mla and cfg.get("moe_layer_freq", 1) != 1:
            self.notes.append(f"moe_layer_freq {cfg['moe_layer_freq']} ignored, as HF does")
        if cfg["model_type"] == "deepseek_v2" and cfg.get("norm_topk_prob"):
            self.notes.append("norm_topk_prob true ignored, as HF's DeepseekV2Moe does")
        if cfg["model_type"] == "deepseek_v3" and cfg.get("topk_method", "noaux_tc") != "noaux_tc":
            self.notes.append(f"topk_method {cfg['topk_method']} ignored, as HF's DeepseekV3MoE does")
        self.kinds = [self.mlp_kind(i) for i in range(cfg["num_hidden_layers"])]
        n = cfg["num_hidden_layers"]
        self.layer_types = cfg.get("layer_types") or (
            ["linear_attention" if (i + 1) % cfg.get("full_attention_interval", 4) else "full_attention"
             for i in range(n)] if self.hybrid else ["full_attention"] * n)
        self.windows = [self.window(i) for i in range(cfg["num_hidden_layers"])]
        rdim = cfg["qk_rope_head_dim"] if self.mla else (cfg.get("head_dim")
                                                          or cfg["hidden_size"] // cfg["num_attention_heads"])
        if self.hybrid:
            prf = (cfg.get("rope_parameters") or {}).get("partial_rotary_factor",
                                                         cfg.get("partial_rotary_factor", 1.0))
            rdim = int(rdim * prf)
        self.inv_freq, self.att_scaling = rope_inv_freq(cfg, rdim)
        self.experts = {}
        for i, kind in enumerate(self.kinds):
            if kind != "dense":
                p = f"{self.tp}layers.{i}.{self.mlp_prefix()}"
                self.experts[i] = load_experts(self.W, p, cfg, self.n_experts())

    def n_experts(self):
        c = self.cfg
        return c.get("num_experts") or c.get("num_local_experts") or c.get("n_routed_experts")

    def mlp_prefix(self):
        return "block_sparse_moe." if self.cfg["model_type"] == "mixtral" else "mlp."

    def mlp_kind(self, i):
        """Which layers are MoE: Qwen3-MoE (Qwen2MoeDecoderLayer) iff i not in
        mlp_only_layers and num_experts > 0 and (i + 1) % decoder_sparse_step
        == 0; DeepSeek iff i >= first_k_dense_replace; Mixtral always."""
        c, mt = self.cfg, self.cfg["model_type"]
        if mt in ("qwen3_next", "qwen3_5_moe_text"):  # Qwen3NextDecoderLayer's rule
            moe = (i not in (c.get("mlp_only_layers") or []) and c.get("num_experts", 0) > 0
                   and (i + 1) % c.get("decoder_sparse_step", 1) == 0)
            return "qwen3_next" if moe else "dense"
        if mt == "qwen3_moe":
            moe = (i not in (c.get("mlp_only_layers") or []) and c.get("num_experts", 0) > 0
                   and (i + 1) % c.get("decoder_sparse_step", 1) == 0)
            return "qwen3_moe" if moe else "dense"
        if mt == "mixtral":
            return "mixtral"
        if mt in ("deepseek_v2", "deepseek_v3"):
            return mt if i >= c.get("first_k_dense_replace", 0) else "dense"
        return "dense"

    def window(self, i):
        """Sliding window of layer i, or None. Mistral/Mixtral: config's
        sliding_window; Qwen2/3(-MoE): only with use_sliding_window (Qwen2/3
        from layer max_window_layers on)."""
        c, mt = self.cfg, self.cfg["model_type"]
        if mt in ("mistral", "mixtral"):
            return c.get("sliding_window")
        if mt in ("qwen2", "qwen3", "qwen3_moe") and c.get("use_sliding_window") and c.get("sliding_window"):
            if mt == "qwen3_moe" or i >= c.get("max_window_layers", 0):
                return c["sliding_window"]
        return None

    def mlp(self, i, x):
        W, c, kind = self.W, self.cfg, self.kinds[i]
        p = f"{self.tp}layers.{i}.{self.mlp_prefix()}"
        if kind == "dense":
            return mlp_dense(x, W(p + "gate_proj.weight"), W(p + "up_proj.weight"), W(p + "down_proj.weight"))
        what = f"layer {i} router"
        logits = linear(x, W(p + "gate.weight"))
        if kind == "qwen3_next":  # Qwen3NextSparseMoeBlock: softmax top-k, + sigmoid-gated shared expert
            idx, w = router_softmax_topk(logits, c["num_experts_per_tok"], c.get("norm_topk_prob", True),
                                         self.stats, what)
            out = mlp_moe(x, self.experts[i], idx, w)
            if c.get("shared_expert_intermediate_size"):
                sh = mlp_dense(x, W(p + "shared_expert.gate_proj.weight"), W(p + "shared_expert.up_proj.weight"),
                               W(p + "shared_expert.down_proj.weight"))
                out = out + sigmoid(linear(x, W(p + "shared_expert_gate.weight"))) * sh
            return out
        if kind == "qwen3_moe":
            idx, w = router_softmax_topk(logits, c["num_experts_per_tok"], c.get("norm_topk_prob", False),
                                         self.stats, what)
        elif kind == "mixtral":
            idx, w = router_softmax_topk(logits, c["num_experts_per_tok"], True, self.stats, what)
        elif kind == "deepseek_v2":
            idx, w = router_deepseek_v2(logits, c, self.stats, what)
        else:
            idx, w = router_deepseek_v3(logits, W(p + "gate.e_score_correction_bias"), c, self.stats, what)
        out = mlp_moe(x, self.experts[i], idx, w)
        if kind in ("deepseek_v2", "deepseek_v3") and c.get("n_shared_experts"):
            out = out + mlp_dense(x, W(p + "shared_experts.gate_proj.weight"),
                                  W(p + "shared_experts.up_proj.weight"),
                                  W(p + "shared_experts.down_proj.weight"))
        return out

    def forward(self, ids):
        """Logits (t, vocab) of one forward over ids."""
        W, c = self.W, self.cfg
        t, eps = len(ids), c["rms_norm_eps"]
        rope = rope_cos_sin(self.inv_freq, self.att_scaling, t)
        norm = zc_rms_norm if self.hybrid else rms_norm
        x = W(self.tp + "embed_tokens.weight")[np.asarray(ids)]
        for i in range(c["num_hidden_layers"]):
            p = f"{self.tp}layers.{i}."
            mask = causal_mask(t, self.windows[i])
            h = norm(x, W(p + "input_layernorm.weight"), eps)
            if self.layer_types[i] == "linear_attention":
                x = x + linear_attention(h, W, p + "linear_attn.", c)
            elif self.hybrid:
                x = x + attention_gated(h, W, p + "self_attn.", c, rope, mask)
            else:
                attn = attention_mla if self.mla else attention_gqa
                x = x + attn(h, W, p + "self_attn.", c, rope, mask)
            h = norm(x, W(p + "post_attention_layernorm.weight"), eps)
            x = x + self.mlp(i, h)
        x = norm(x, W(self.tp + "norm.weight"), eps)
        head = W("lm_head.weight") if W.has("lm_head.weight") else W(self.tp + "embed_tokens.weight")
        if not W.has("lm_head.weight") and not c.get("tie_word_embeddings", False):
            raise CheckError("no lm_head.weight and tie_word_embeddings is false")
        return linear(x, head)

    def describe(self):
        c = self.cfg
        kinds = ",".join(("lin+" if lt == "linear_attention" and self.hybrid else "") + (k if k == "dense" else "moe")
                         for k, lt in zip(self.kinds, self.layer_types))
        rp = rope_parameters(c)
        s = f"{c['architectures'][0]} layers[{kinds}] rope={rp['rope_type']} att_scaling={self.att_scaling:.6g}"
        if self.mla:
            s += f" softmax_scale={mla_softmax_scale(c):.6g}"
        if any(self.windows):
            s += f" window={self.windows}"
        return s


# ---------------------------------------------------------------- protocol


def top2_margin(row):
    i = int(np.argmax(row))  # first index on ties, like torch.argmax on CPU
    rest = np.delete(row, i)
    return i, float(row[i] - np.max(rest))


def greedy(model, prompt, what):
    """N_GEN greedy tokens after prompt by full forwards (no cache, no EOS
    stop), the top-1 minus top-2 margin at each step, and the exact argmax
    ties met."""
    ids, margins, ties = list(prompt), [], 0
    for _ in range(N_GEN):
        tok, m = top2_margin(model.forward(ids)[-1])
        if m == 0:
            ties += 1
            print(f"  !!!! {what}: exact tie for the argmax at step {len(margins)}", flush=True)
        ids.append(tok)
        margins.append(m)
    return ids[len(prompt):], margins, ties


def run_protocol(model, preset, vocab):
    """hf_golden's protocol for the three prompts: greedy, margins, one forward
    over prompt + gen. Returns records [(prompt, gen, margins, logits)] and the
    number of exact argmax ties."""
    records, ties = [], 0
    for n in PROMPT_LENS:
        prompt = lcg_prompt(preset, n, vocab)
        gen, margins, t = greedy(model, prompt, f"{preset} prompt {n}")
        ties += t
        logits = model.forward(prompt + gen).astype(F32)
        flips = int(np.sum(logits[n - 1:n - 1 + N_GEN].argmax(1) != np.asarray(gen)))
        if flips:
            raise CheckError(f"prompt {n}: the forward over prompt+gen disagrees with the step loop "
                             f"at {flips} position(s)")
        records.append((prompt, gen, margins, logits))
    return records, ties


def check_dense(args, preset, tmp):
    d = os.path.join(tmp, preset)
    h_gen, _ = run_gen(args.gen, preset, d)
    path = os.path.join(args.golden, preset + ".bin")
    vocab, h, recs = read_golden(path)
    if h != h_gen:
        raise CheckError(f"{path} was made from ckpt_hash {h:#018x}, gen_ckpt now gives {h_gen:#018x}")
    cfg, w = load_checkpoint(d)
    model = Model(cfg, w)
    t0 = time.time()
    worst_rel, worst_abs, worst_rowrel, same = 0.0, 0.0, 0.0, True
    mins = []
    for pr, ge, ma, lo in recs:
        ids = list(map(int, pr)) + list(map(int, ge))
        ours = model.forward(ids)
        diff = np.abs(ours.astype(np.float64) - lo)
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float((diff / np.maximum(1.0, np.abs(lo))).max()))
        worst_rowrel = max(worst_rowrel, float((diff.max(1) / np.abs(lo).max(1)).max()))
        gen, _, _ = greedy(model, list(map(int, pr)), f"{preset} prompt {len(pr)}")
        if gen != list(map(int, ge)):
            same = False
            k = next(i for i in range(N_GEN) if gen[i] != ge[i])
            print(f"  {preset} prompt {len(pr)}: our greedy differs from HF at step {k} "
                  f"(HF margin there {ma[k]:.3g})", flush=True)
        mins.append(float(np.min(ma)))
    unused = model.W.unused()
    if unused:
        raise CheckError(f"tensors the forward never read: {unused[:5]}")
    return {"abs": worst_abs, "rel": worst_rel, "rowrel": worst_rowrel, "tokens": same, "mins": mins,
            "time": time.time() - t0, "desc": model.describe()}


def ref_one(args, preset, tmp):
    d = os.path.join(tmp, preset)
    h_gen, line = run_gen(args.gen, preset, d)
    h = ckpt_hash(d)
    if h != h_gen:
        raise CheckError(f"directory hash: gen_ckpt says {h_gen:#018x}, python {h:#018x}")
    cfg, w = load_checkpoint(d)
    model = Model(cfg, w)
    print(f"  {line}\n  {model.describe()}", flush=True)
    for note in model.notes:
        print(f"  note: {note}", flush=True)
    t0 = time.time()
    records, argmax_ties = run_protocol(model, preset, model.cfg["vocab_size"])
    if model.hybrid:  # the chunked gated delta rule against the token-by-token recurrence
        DELTA_CHECK.update(on=True, worst=0.0)
        pr, ge = records[-1][0], records[-1][1]
        model.forward(pr + ge)
        DELTA_CHECK["on"] = False
        print(f"  chunked vs recurrent gated delta rule over {len(pr + ge)} tokens: max rel diff "
              f"{DELTA_CHECK['worst']:.2e}", flush=True)
        if DELTA_CHECK["worst"] > 1e-5:
            raise CheckError(f"chunked and recurrent delta rules differ by {DELTA_CHECK['worst']:.2e}")
    dt = time.time() - t0
    unused = model.W.unused()
    if unused:
        raise CheckError(f"tensors the forward never read (layout misread?): {unused[:6]}")
    effects = predict_effects(cfg, w, records)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, preset + ".bin")
    write_golden(path, model.cfg["vocab_size"], h, records)
    v2, h2, back = read_golden(path)
    if v2 != model.cfg["vocab_size"] or h2 != h or any(
            list(a[0]) != r[0] or list(a[1]) != r[1] or not (a[3] == r[3]).all() for a, r in zip(back, records)):
        raise CheckError(f"{path}: re-read does not match what was written")
    for (pr, ge, ma, _) in records:
        m = min(ma)
        print(f"  prompt {len(pr):>2}: min margin {m:.4f} at step {ma.index(m)}; gen {ge[:8]}...", flush=True)
    st = model.stats
    return {"hash": h, "mins": [min(r[2]) for r in records], "time": dt, "path": path,
            "ties": st.ties + argmax_ties, "masked": st.masked_picks,
            "gap": st.min_gap if st.calls else None, "bytes": os.path.getsize(path), "effects": effects}


def predict_effects(cfg, w, records):
    """hf_golden.py's feature checks (feature_variants) run on this model: the
    logits over the longest prompt + gen with one config key changed must stay
    put before position n_same and move by > 0.01 after it. A prediction that
    fails here would fail there too."""
    pr, ge, _, lo = max(records, key=lambda r: len(r[0]))
    out = []
    for what, change, n_same in feature_variants(cfg):
        alt = Model({**cfg, **change}, w)
        row = np.abs(alt.forward(pr + ge) - lo).max(1)
        d_same = float(row[:n_same].max()) if n_same else 0.0
        d_diff = float(row[n_same:].max())
        good = d_same <= 1e-4 and d_diff >= 1e-2
        print(f"  predicted for hf_golden: {what} {change}: max |dlogit| {d_same:.2g} before position "
              f"{n_same}, {d_diff:.3g} after{'' if good else '  !!!! would FAIL its check'}", flush=True)
        out.append(f"{what}:{d_diff:.2g}{'' if good else '(FAIL)'}")
    return " ".join(out) or "-"


def write_versions(args, presets, results):
    lines = [
        "NOT transformers: numpy float32 reference (tests/ref_golden.py) that re-implements",
        "transformers 5.x's float32 eager path; tests/hf_golden.py still owes the real HF goldens.",
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        "semantics: read from transformers 5.x sources (modeling_*/modular_* of llama, mistral, qwen2,",
        "  qwen3, qwen2_moe, qwen3_moe, mixtral, deepseek_v2, deepseek_v3, qwen3_next, qwen3_5,",
        "  qwen3_5_moe; modeling_rope_utils), not",
        "  checked against a 5.17 install; the dense presets agree with the HF goldens to ~6e-6",
        f"command: {' '.join([sys.executable] + sys.argv)}",
        f"python: {platform.python_version()} ({sys.executable})",
        f"numpy: {np.__version__}",
        f"host: {platform.platform()}",
        f"deepseek_v2 softmax scale: qk_head_dim^-0.5{' * mscale^2 (transformers PR #47435 on)' if DSV2_SOFTMAX_MSCALE else ' only (before transformers PR #47435)'}",
    ]
    path = os.path.join(args.out, "VERSIONS.txt")
    if os.path.exists(path):  # the lines of presets not rerun now stay
        with open(path) as f:
            for ln in f:
                name = ln.split(":", 1)[0]
                if name in NEW_PRESETS and name not in presets and ": ckpt_hash" in ln:
                    lines.append(ln.rstrip("\n"))
    for p in presets:
        r = results.get(p)
        if r:
            lines.append(f"{p}: ckpt_hash {r['hash']:#018x}, min margins "
                         + " ".join(f"{m:.4f}" for m in r["mins"])
                         + f", router ties {r['ties']}, masked picks {r['masked']}")
    with open(os.path.join(args.out, "VERSIONS.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    global DSV2_SOFTMAX_MSCALE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gen", default="build/tests/gen_ckpt", help="the gen_ckpt binary")
    ap.add_argument("--out", default="tests/data/ref", help="where <preset>.bin and VERSIONS.txt go")
    ap.add_argument("--golden", default="tests/data/golden", help="HF goldens for --check-dense")
    ap.add_argument("--presets", default=None,
                    help=f"comma-separated (default: {','.join(NEW_PRESETS)}; '' for none)")
    ap.add_argument("--check-dense", action="store_true",
                    help=f"first compare with the HF goldens of {','.join(DENSE_PRESETS)}")
    ap.add_argument("--dsv2-plain-scale", action="store_true",
                    help="DeepSeek V2 softmax scale without mscale^2 (transformers before PR #47435)")
    args = ap.parse_args()
    DSV2_SOFTMAX_MSCALE = not args.dsv2_plain_scale
    if not (os.path.isfile(args.gen) and os.access(args.gen, os.X_OK)):
        die(f"{args.gen}: no gen_ckpt binary (see tests/data/README.md to build it)")
    args.gen = os.path.abspath(args.gen)
    presets = NEW_PRESETS if args.presets is None else [p for p in args.presets.split(",") if p]
    for p in presets:
        if p not in NEW_PRESETS:
            die(f"{p}: not a preset this writes (new presets: {', '.join(NEW_PRESETS)}; "
                f"the dense ones have HF goldens, see --check-dense)")
    ok = True
    with tempfile.TemporaryDirectory(prefix="ref_golden_") as tmp:
        if args.check_dense:
            print("== self-check against the HF goldens (tests/data/golden)", flush=True)
            rows = []
            for p in DENSE_PRESETS:
                try:
                    r = check_dense(args, p, tmp)
                    good = r["rel"] < 1e-4 and r["tokens"]
                    ok &= good
                    rows.append((p, r, good))
                    print(f"  {p}: {r['desc']}", flush=True)
                except (CheckError, OSError, ValueError, KeyError) as ex:
                    ok = False
                    rows.append((p, None, False))
                    print(f"ref_golden: {p}: FAIL: {ex}", file=sys.stderr, flush=True)
            print(f"\n{'preset':<14} {'max|d|/max(1,|hf|)':>18} {'max|d|':>9} {'row-rel':>9} "
                  f"{'greedy==HF':>10} {'HF min margins':<22} {'time':>6}  verdict")
            for p, r, good in rows:
                if r is None:
                    print(f"{p:<14} FAILED (see above)")
                    continue
                print(f"{p:<14} {r['rel']:>18.2e} {r['abs']:>9.2e} {r['rowrel']:>9.2e} "
                      f"{'yes' if r['tokens'] else 'NO':>10} {' '.join(f'{m:.4f}' for m in r['mins']):<22} "
                      f"{r['time']:>5.1f}s  {'ok' if good else 'FAIL'}")
            print("(row-rel: max |d| of a row / max |hf logit| of that row)\n")
        results = {}
        for p in presets:
            print(f"== {p}", flush=True)
            try:
                results[p] = ref_one(args, p, tmp)
            except (CheckError, OSError, ValueError, KeyError) as ex:
                ok = False
                results[p] = None
                print(f"ref_golden: {p}: FAIL: {type(ex).__name__}: {ex}", file=sys.stderr, flush=True)
        if any(results.values()):
            write_versions(args, presets, results)
        if presets:
            print(f"\n{'preset':<20} {'prompts':<9} {'min margin per prompt':<24} {'time':>6} "
                  f"{'ties':>4} {'masked':>6} {'min router gap':>14}  {'ckpt_hash':<18}  "
                  f"hf_golden feature checks, predicted dlogit")
            for p in presets:
                r = results[p]
                if r is None:
                    print(f"{p:<20} FAILED (see above)")
                    continue
                gap = "-" if r["gap"] is None else f"{r['gap']:.3g}"
                print(f"{p:<20} {','.join(map(str, PROMPT_LENS)):<9} "
                      f"{' '.join(f'{m:.4f}' for m in r['mins']):<24} {r['time']:>5.1f}s {r['ties']:>4} "
                      f"{r['masked']:>6} {gap:>14}  {r['hash']:#018x}  {r['effects']}")
                if r["ties"]:
                    ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
