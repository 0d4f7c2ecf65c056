#!/usr/bin/env python3
"""hf_golden: golden logits from Hugging Face transformers for gen_ckpt checkpoints.

    python3 tests/hf_golden.py --gen build/tests/gen_ckpt --out tests/data/golden
    python3 tests/hf_golden.py --gen build/tests/gen_ckpt --check-only

For every preset (llama3-small excepted) it generates the checkpoint with our
C program, loads it with AutoModelForCausalLM (float32, eager attention, CPU),
checks that HF read exactly what we wrote (no missing or unexpected keys, every
parameter equal to the safetensors value; MoE experts are compared through the
per-expert <-> fused 3-D mapping transformers 5 applies at load time), and for
three fixed prompts records
the greedy continuation of 32 tokens (full forward passes without a cache, no
stop at EOS), the top-1/top-2 margin at each step and the logits of one forward
over prompt + continuation. It writes tests/data/golden/<preset>.bin (format in
tests/data/README.md, reader in tests/golden.h) and VERSIONS.txt. Each preset's
features (sliding window, rope scaling, MoE routing options, DeepSeek group
limit and rope interleave) are switched in turn in config.json to check that
transformers applies them (feature_variants), and for DeepSeek the MLA softmax
scale HF uses is printed against tests/ref_golden.py's assumption.

Until this has run for the MoE/MLA presets (qwen3moe-mini, qwen3moe-fused-mini,
mixtral-mini, dsv2lite-mini, dsv3-mini, llama-hd96-mini, qwen3-hd256-mini),
tests/ref_golden.py writes numpy
stand-ins for them into tests/data/ref/.

--check-only needs no torch/numpy: it checks each checkpoint's structure
(safetensors headers, offsets, index, tensor names and shapes against
config.json, init statistics), that two runs give identical bytes, and that our
Python directory hash equals the one gen_ckpt prints.

Exit status: 0 when every check passed, 1 when one failed, 2 on usage errors.
"""

import argparse
import array
import datetime
import json
import math
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import tempfile

PRESETS = ["llama2-mini", "llama3-mini", "mistral-mini", "qwen2-mini", "qwen3-mini",
           "qwen3moe-mini", "qwen3moe-fused-mini", "mixtral-mini", "dsv2lite-mini", "dsv3-mini",
           "llama-hd96-mini", "qwen3-hd256-mini", "qwen3next-mini", "qwen35-mini", "qwen35moe-mini"]
ALL_PRESETS = PRESETS + ["llama3-small"]
# Hybrid linear-attention presets (unrun so far: written in a session without torch). Their
# checkpoint is checked by from_pretrained's loading info and param_diff rather than by
# expected_tensors; the Qwen3.5 ones load through AutoModelForImageTextToText, whose vision
# tower gen_ckpt only stubs (4 tensors): missing, unexpected or resized model.visual.* entries
# are ignored, everything else must match.
HYBRID_ARCHS = {"Qwen3NextForCausalLM", "Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration"}


def text_cfg(cfg):
    """The text model's config: text_config (Qwen3.5) with the top level's tying, else cfg."""
    if "text_config" not in cfg:
        return cfg
    tc = dict(cfg["text_config"])
    tc.setdefault("tie_word_embeddings", cfg.get("tie_word_embeddings", False))
    tc["architectures"] = cfg["architectures"]
    return tc
PROMPT_LENS = (1, 9, 41)
N_GEN = 32
FIRST_TOKEN = 3  # prompt ids are drawn from [3, vocab): 0..2 are pad/bos/eos by convention

GOLDEN_MAGIC = b"TSGOLDEN"
GOLDEN_VERSION = 1
GOLDEN_HEADER = struct.Struct("<8sIIIIQ")  # magic, version, header_size, vocab, n_prompts, ckpt_hash
GOLDEN_RECORD = struct.Struct("<IIII")  # n_prompt, n_gen, reserved, reserved

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1

DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}
# Keys a config.json of that model_type must spell out: their HF defaults are
# those of the big models (DeepseekV3Config: 256 experts, n_group 8, first 3
# layers dense, ...), so a missing one would silently give another model.
_MLA_KEYS = ("kv_lora_rank", "q_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim",
             "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "moe_intermediate_size",
             "first_k_dense_replace", "routed_scaling_factor", "norm_topk_prob")
FAMILY_KEYS = {
    "qwen3_moe": ("num_experts", "num_experts_per_tok", "moe_intermediate_size", "norm_topk_prob",
                  "decoder_sparse_step", "mlp_only_layers"),
    "mixtral": ("num_local_experts", "num_experts_per_tok"),
    "deepseek_v2": _MLA_KEYS + ("topk_method",),
    "deepseek_v3": _MLA_KEYS + ("n_group", "topk_group", "rope_interleave"),
}
TORCH_DTYPE_ST = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


class CheckError(Exception):
    pass


def die(msg):
    print(f"hf_golden: error: {msg}", file=sys.stderr)
    sys.exit(2)


# ---------------------------------------------------------------- hashing, prompts


def fnv1a64(h, data):
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & MASK64
    return h


def ckpt_hash(d):
    """FNV-1a 64 over the regular files of d in byte-wise name order, each
    contributing its name, a 0 byte and its contents (tests/golden.h)."""
    h = FNV_OFFSET
    bd = os.fsencode(d)
    for name in sorted(os.listdir(bd)):
        p = os.path.join(bd, name)
        if not os.path.isfile(p):
            continue
        h = fnv1a64(h, name + b"\0")
        with open(p, "rb") as f:
            h = fnv1a64(h, f.read())
    return h


def lcg_prompt(preset, n, vocab):
    """Prompt of n ids in [3, vocab): Knuth's MMIX LCG seeded with the FNV-1a 64
    of b"<preset>:<n>", state = state * 6364136223846793005 + 1442695040888963407
    (mod 2^64), each id = 3 + (state >> 33) % (vocab - 3), stepping before each."""
    s = fnv1a64(FNV_OFFSET, f"{preset}:{n}".encode())
    out = []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & MASK64
        out.append(FIRST_TOKEN + (s >> 33) % (vocab - FIRST_TOKEN))
    return out


# ---------------------------------------------------------------- gen_ckpt


def run_gen(gen, preset, out, seed=None):
    cmd = [gen, "--preset", preset, "--out", out]
    if seed is not None:
        cmd += ["--seed", str(seed)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise CheckError(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip()}")
    h = None
    for line in r.stdout.splitlines():
        if line.startswith("ckpt_hash "):
            h = int(line.split()[1], 16)
    if h is None:
        raise CheckError(f"{' '.join(cmd)} printed no ckpt_hash line: {r.stdout!r}")
    return h, r.stdout.strip().splitlines()[0]


# ---------------------------------------------------------------- structure (no torch)


def read_st_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckError(f"{path}: shorter than 8 bytes")
        n = struct.unpack("<Q", raw)[0]
        size = os.path.getsize(path)
        if n > size - 8:
            raise CheckError(f"{path}: header length {n} > file size {size} - 8")
        hb = f.read(n)
    if n % 8:
        raise CheckError(f"{path}: header length {n} not a multiple of 8")
    stripped = hb.rstrip(b" ")
    if not stripped.endswith(b"}") or len(hb) - len(stripped) >= 8:
        raise CheckError(f"{path}: header not padded with < 8 spaces after the JSON")
    hdr = json.loads(hb)
    return hdr, 8 + n, size


def moe_layers(cfg):
    """Indices of the MoE layers, as the HF decoder layers decide: Qwen3-MoE
    (Qwen2MoeDecoderLayer) iff not in mlp_only_layers and (i + 1) %
    decoder_sparse_step == 0; DeepSeek V2/V3 iff i >= first_k_dense_replace
    (moe_layer_freq is not read); Mixtral every layer."""
    mt, L = cfg["model_type"], cfg["num_hidden_layers"]
    if mt == "qwen3_moe":
        only = cfg.get("mlp_only_layers") or []
        step = cfg.get("decoder_sparse_step", 1)
        return [i for i in range(L) if i not in only and cfg.get("num_experts", 0) > 0 and (i + 1) % step == 0]
    if mt == "mixtral":
        return list(range(L))
    if mt in ("deepseek_v2", "deepseek_v3"):
        return [i for i in range(L) if i >= cfg.get("first_k_dense_replace", 0)]
    return []


def n_experts(cfg):
    return cfg.get("num_experts") or cfg.get("num_local_experts") or cfg.get("n_routed_experts")


def expected_tensors(cfg, fused=False):
    """name -> shape from config.json, as HF's modeling code lays the model out.
    fused: the checkpoint stores each MoE layer's experts as two 3-D tensors,
    experts.gate_up_proj (E, 2F, D) (gate rows first) and experts.down_proj
    (E, D, F), the way transformers 5 holds them in memory, instead of one
    gate/up/down (Mixtral: w1/w3/w2) triple per expert."""
    mt = cfg["model_type"]
    h, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    nh, nkv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or h // nh
    ffn, V = cfg["intermediate_size"], cfg["vocab_size"]
    mla = mt in ("deepseek_v2", "deepseek_v3")
    # Qwen2: q/k/v biases always; Llama and Qwen3(-MoE): q/k/v/o iff
    # attention_bias; Mistral and Mixtral: none; DeepSeek: see below.
    o_bias = mt in ("llama", "qwen3", "qwen3_moe") and cfg.get("attention_bias", False)
    qkv_bias = mt == "qwen2" or o_bias
    moe = set(moe_layers(cfg))
    t = {"model.embed_tokens.weight": [V, h], "model.norm.weight": [h]}
    if not cfg.get("tie_word_embeddings", False):
        t["lm_head.weight"] = [V, h]
    for i in range(L):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = [h]
        t[p + "post_attention_layernorm.weight"] = [h]
        a = p + "self_attn."
        if mla:
            nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
            kvr, qlr = cfg["kv_lora_rank"], cfg.get("q_lora_rank")
            if qlr is None:
                t[a + "q_proj.weight"] = [nh * (nope + rope), h]
            else:
                t[a + "q_a_proj.weight"] = [qlr, h]
                t[a + "q_a_layernorm.weight"] = [qlr]
                t[a + "q_b_proj.weight"] = [nh * (nope + rope), qlr]
            t[a + "kv_a_proj_with_mqa.weight"] = [kvr + rope, h]
            t[a + "kv_a_layernorm.weight"] = [kvr]
            t[a + "kv_b_proj.weight"] = [nh * (nope + vd), kvr]
            t[a + "o_proj.weight"] = [h, nh * vd]
            if cfg.get("attention_bias", False):
                if qlr is not None:
                    t[a + "q_a_proj.bias"] = [qlr]
                t[a + "kv_a_proj_with_mqa.bias"] = [kvr + rope]
                t[a + "o_proj.bias"] = [h]
        else:
            t[a + "q_proj.weight"] = [nh * hd, h]
            t[a + "k_proj.weight"] = [nkv * hd, h]
            t[a + "v_proj.weight"] = [nkv * hd, h]
            t[a + "o_proj.weight"] = [h, nh * hd]
            if qkv_bias:
                t[a + "q_proj.bias"] = [nh * hd]
                t[a + "k_proj.bias"] = [nkv * hd]
                t[a + "v_proj.bias"] = [nkv * hd]
            if o_bias:
                t[a + "o_proj.bias"] = [h]
            if mt in ("qwen3", "qwen3_moe"):
                t[a + "q_norm.weight"] = [hd]
                t[a + "k_norm.weight"] = [hd]
        if i not in moe:
            t[p + "mlp.gate_proj.weight"] = [ffn, h]
            t[p + "mlp.up_proj.weight"] = [ffn, h]
            t[p + "mlp.down_proj.weight"] = [h, ffn]
            continue
        E = n_experts(cfg)
        F = ffn if mt == "mixtral" else cfg["moe_intermediate_size"]
        m = p + ("block_sparse_moe." if mt == "mixtral" and not fused else "mlp.")
        t[m + "gate.weight"] = [E, h]
        if mt == "deepseek_v3":
            t[m + "gate.e_score_correction_bias"] = [E]
        if fused:
            t[m + "experts.gate_up_proj"] = [E, 2 * F, h]
            t[m + "experts.down_proj"] = [E, h, F]
        else:
            names = ("w1", "w3", "w2") if mt == "mixtral" else ("gate_proj", "up_proj", "down_proj")
            for e in range(E):
                t[f"{m}experts.{e}.{names[0]}.weight"] = [F, h]
                t[f"{m}experts.{e}.{names[1]}.weight"] = [F, h]
                t[f"{m}experts.{e}.{names[2]}.weight"] = [h, F]
        if mla and cfg.get("n_shared_experts"):
            fs = cfg["moe_intermediate_size"] * cfg["n_shared_experts"]
            t[m + "shared_experts.gate_proj.weight"] = [fs, h]
            t[m + "shared_experts.up_proj.weight"] = [fs, h]
            t[m + "shared_experts.down_proj.weight"] = [h, fs]
    return t


def decode_floats(raw, dtype):
    if dtype == "F32":
        a = array.array("f")
        a.frombytes(raw)
    elif dtype == "F16":
        a = struct.unpack(f"<{len(raw) // 2}e", raw)
    else:  # BF16: widen to f32 bit patterns
        u = array.array("H")
        u.frombytes(raw)
        w = array.array("I", (x << 16 for x in u))
        a = array.array("f")
        a.frombytes(w.tobytes())
    if sys.byteorder != "little" and dtype == "F32":
        a.byteswap()
    return a


def init_target(name, shape, cfg):
    """(mean, std) that gen_ckpt draws this tensor from."""
    if cfg.get("architectures", [""])[0] in HYBRID_ARCHS:
        if name.endswith("linear_attn.norm.weight") or name.endswith("norm1.weight") or name.endswith("dt_bias"):
            return 1.0, 0.1
        if name.endswith("norm.weight") or name.endswith("A_log"):  # zero-centred norms: x * (1 + w)
            return 0.0, 0.1
        if name.endswith("embed_tokens.weight"):
            return 0.0, 1.0 / math.sqrt(cfg["hidden_size"])
    if name.endswith("norm.weight"):
        return 1.0, 0.1
    if name.endswith(".bias") or name.endswith(".e_score_correction_bias"):
        return 0.0, 0.1
    if name == "model.embed_tokens.weight":
        return 0.0, 1.0 / math.sqrt(cfg["hidden_size"])
    return 0.0, 1.0 / math.sqrt(shape[-1])  # fan-in: the last dim, also of (E, out, in) experts


def check_structure(d):
    """Validates the checkpoint in d; returns {name: (file, dtype, shape, begin, end)}."""
    cfg_path = os.path.join(d, "config.json")
    with open(cfg_path) as f:
        cfg = text_cfg(json.load(f))
    hybrid = cfg["architectures"][0] in HYBRID_ARCHS
    for k in () if hybrid else ("architectures", "model_type", "hidden_size", "intermediate_size",
              "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
              "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings",
              "hidden_act", "torch_dtype", "bos_token_id", "eos_token_id") + FAMILY_KEYS.get(cfg.get("model_type"), ()):
        if k not in cfg:
            raise CheckError(f"{cfg_path}: missing key {k}")
    want_dtype = TORCH_DTYPE_ST[cfg["torch_dtype"]]
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    index_path = os.path.join(d, "model.safetensors.index.json")
    sharded = os.path.exists(index_path)
    if sharded:
        n = len(files)
        want = [f"model-{k:05d}-of-{n:05d}.safetensors" for k in range(1, n + 1)]
        if files != want:
            raise CheckError(f"{d}: shard files {files}, expected {want}")
    elif files != ["model.safetensors"]:
        raise CheckError(f"{d}: expected model.safetensors alone, found {files}")

    tensors = {}
    for fn in files:
        path = os.path.join(d, fn)
        hdr, data_start, size = read_st_header(path)
        meta = hdr.pop("__metadata__", None)
        if meta is not None and meta != {"format": "pt"}:
            raise CheckError(f"{path}: __metadata__ {meta}")
        end = 0
        for name, t in sorted(hdr.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            b, e = t["data_offsets"]
            if b != end:
                raise CheckError(f"{path}: {name} starts at {b}, previous tensor ended at {end}")
            dt_ok = want_dtype if not name.endswith("e_score_correction_bias") else "F32"  # as DeepSeek-V3 ships it
            if t["dtype"] != dt_ok:
                raise CheckError(f"{path}: {name} dtype {t['dtype']}, expected {dt_ok}")
            nbytes = DTYPE_BYTES[t["dtype"]] * math.prod(t["shape"])
            if e - b != nbytes:
                raise CheckError(f"{path}: {name} spans {e - b} bytes, shape needs {nbytes}")
            if name in tensors:
                raise CheckError(f"{path}: {name} also in {tensors[name][0]}")
            tensors[name] = (fn, t["dtype"], t["shape"], data_start + b, data_start + e)
            end = e
        if data_start + end != size:
            raise CheckError(f"{path}: data ends at {data_start + end}, file is {size} bytes")

    fused = any(n.endswith(".experts.gate_up_proj") for n in tensors)
    exp = {} if hybrid else expected_tensors(cfg, fused)
    if not hybrid and set(exp) != set(tensors):
        raise CheckError(f"{d}: tensors missing {sorted(set(exp) - set(tensors))}, "
                         f"unexpected {sorted(set(tensors) - set(exp))}")
    for name, shape in exp.items():
        if tensors[name][2] != shape:
            raise CheckError(f"{d}: {name} shape {tensors[name][2]}, expected {shape}")

    if sharded:
        with open(index_path) as f:
            idx = json.load(f)
        total = sum(t[4] - t[3] for t in tensors.values())
        if idx.get("metadata", {}).get("total_size") != total:
            raise CheckError(f"{index_path}: total_size {idx.get('metadata')}, tensors hold {total}")
        wm = idx.get("weight_map", {})
        if wm != {n: t[0] for n, t in tensors.items()}:
            raise CheckError(f"{index_path}: weight_map does not match the shard headers")
        if set(wm.values()) != set(files):
            raise CheckError(f"{index_path}: not every shard is referenced")

    # Init statistics: mean and std within a loose band of the target.
    for name, (fn, dt, shape, b, e) in tensors.items():
        with open(os.path.join(d, fn), "rb") as f:
            f.seek(b)
            v = decode_floats(f.read(e - b), dt)
        n = len(v)
        mean = sum(v) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in v) / n)
        tm, ts = init_target(name, shape, cfg)
        tol = 6 * ts / math.sqrt(n) + 0.02 * ts
        if abs(mean - tm) > tol or abs(std - ts) > 0.25 * ts + 6 * ts / math.sqrt(n):
            raise CheckError(f"{d}: {name} mean {mean:.4g} std {std:.4g}, "
                             f"expected ~{tm} / ~{ts:.4g}")
    return cfg, tensors


def check_only(args, presets):
    rows, ok = [], True
    with tempfile.TemporaryDirectory(prefix="hf_golden_") as tmp:
        for p in presets:
            a, b = os.path.join(tmp, p + "-a"), os.path.join(tmp, p + "-b")
            try:
                h_a, line = run_gen(args.gen, p, a)
                h_b, _ = run_gen(args.gen, p, b)
                names = sorted(os.listdir(a))
                if names != sorted(os.listdir(b)):
                    raise CheckError("two runs wrote different file sets")
                for n in names:
                    with open(os.path.join(a, n), "rb") as fa, open(os.path.join(b, n), "rb") as fb:
                        if fa.read() != fb.read():
                            raise CheckError(f"two runs wrote different bytes in {n}")
                h_py = ckpt_hash(a)
                if h_py != h_a or h_a != h_b:
                    raise CheckError(f"hash: gen_ckpt {h_a:#018x}/{h_b:#018x}, python {h_py:#018x}")
                cfg, tensors = check_structure(a)
                size = sum(os.path.getsize(os.path.join(a, n)) for n in names)
                rows.append((p, "ok", len(names), len(tensors), size, f"{h_py:#018x}"))
                print(line)
            except (CheckError, OSError, ValueError, KeyError) as ex:
                ok = False
                rows.append((p, "FAIL", "-", "-", "-", "-"))
                print(f"hf_golden: {p}: FAIL: {ex}", file=sys.stderr)
    print(f"\n{'preset':<20} {'check':<5} {'files':>5} {'tensors':>7} {'bytes':>10}  ckpt_hash")
    for r in rows:
        print(f"{r[0]:<20} {r[1]:<5} {r[2]:>5} {r[3]:>7} {r[4]:>10}  {r[5]}")
    return 0 if ok else 1


# ---------------------------------------------------------------- golden (torch)


def write_golden(path, vocab, h, records):
    import numpy as np

    parts = [GOLDEN_HEADER.pack(GOLDEN_MAGIC, GOLDEN_VERSION, GOLDEN_HEADER.size, vocab,
                                len(records), h)]
    for prompt, gen, margins, logits in records:
        assert logits.shape == (len(prompt) + len(gen), vocab)
        parts.append(GOLDEN_RECORD.pack(len(prompt), len(gen), 0, 0))
        parts.append(np.asarray(prompt, dtype="<i4").tobytes())
        parts.append(np.asarray(gen, dtype="<i4").tobytes())
        parts.append(np.asarray(margins, dtype="<f4").tobytes())
        parts.append(np.ascontiguousarray(logits, dtype="<f4").tobytes())
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"".join(parts))
    os.replace(tmp, path)


def read_golden(path):
    """Python mirror of tests/golden.h, used to re-read what we wrote."""
    import numpy as np

    with open(path, "rb") as f:
        b = f.read()
    magic, ver, hsize, vocab, n, h = GOLDEN_HEADER.unpack_from(b, 0)
    if magic != GOLDEN_MAGIC or ver != GOLDEN_VERSION:
        raise CheckError(f"{path}: bad magic/version")
    off, recs = hsize, []
    for _ in range(n):
        np_, ng, _, _ = GOLDEN_RECORD.unpack_from(b, off)
        off += GOLDEN_RECORD.size
        pr = np.frombuffer(b, "<i4", np_, off); off += 4 * np_
        ge = np.frombuffer(b, "<i4", ng, off); off += 4 * ng
        ma = np.frombuffer(b, "<f4", ng, off); off += 4 * ng
        lo = np.frombuffer(b, "<f4", (np_ + ng) * vocab, off).reshape(np_ + ng, vocab)
        off += 4 * (np_ + ng) * vocab
        recs.append((pr, ge, ma, lo))
    if off != len(b):
        raise CheckError(f"{path}: {len(b) - off} trailing bytes")
    return vocab, h, recs


def loading_problems(info, skip_visual=False):
    bad = []
    for k, v in (info or {}).items():
        if v and skip_visual and not isinstance(v, str):
            v = [x for x in v if "visual." not in str(x)]
        if v:  # every field (missing_keys, unexpected_keys, mismatched_keys, error_msgs, ...)
            bad.append(f"{k}={sorted(map(str, v)) if not isinstance(v, str) else v}")
    return bad


_EXPERT_NAMES = {"gate": ("gate_proj", "w1"), "up": ("up_proj", "w3"), "down": ("down_proj", "w2")}


def param_source(name, cfg, ckpt):
    """How the checkpoint makes up model parameter `name`: (checkpoint names,
    build) where build(list of tensors) gives the value, or None. Besides the
    same name, it knows the MoE layouts transformers 5 may convert between
    at load time: per-expert gate/up/down (Mixtral w1/w3/w2, under
    block_sparse_moe.) <-> fused experts.gate_up_proj (E, 2F, D), gate rows
    first, and experts.down_proj (E, D, F); block_sparse_moe.gate ->
    mlp.gate."""
    import torch

    if name in ckpt:
        return [name], lambda ts: ts[0]
    m = re.fullmatch(r"(model\.layers\.\d+\.)(mlp|block_sparse_moe)\.(.+)", name)
    if not m:
        return None
    lay, rest = m.group(1), m.group(3)
    for blk in ("mlp.", "block_sparse_moe."):
        if rest == "gate.weight" and lay + blk + "gate.weight" in ckpt:
            return [lay + blk + "gate.weight"], lambda ts: ts[0]
        E = n_experts(cfg)
        # fused model parameter from per-expert checkpoint tensors
        for part, pieces in (("gate_up_proj", ("gate", "up")), ("down_proj", ("down",))):
            if rest != "experts." + part:
                continue
            for style in (0, 1):
                names = [[f"{lay}{blk}experts.{e}.{_EXPERT_NAMES[pc][style]}.weight" for pc in pieces]
                         for e in range(E)]
                flat = [n for per in names for n in per]
                if all(n in ckpt for n in flat):
                    k = len(pieces)
                    return flat, lambda ts, k=k: torch.stack(
                        [torch.cat(ts[e * k:(e + 1) * k], 0) for e in range(len(ts) // k)])
        # per-expert model parameter from fused checkpoint tensors
        pe = re.fullmatch(r"experts\.(\d+)\.(\w+)\.weight", rest)
        if pe:
            e, w = int(pe.group(1)), pe.group(2)
            piece = next((pc for pc, alts in _EXPERT_NAMES.items() if w in alts), None)
            if piece in ("gate", "up") and lay + blk + "experts.gate_up_proj" in ckpt:
                half = 0 if piece == "gate" else 1
                return [lay + blk + "experts.gate_up_proj"], lambda ts, e=e, half=half: \
                    ts[0][e].chunk(2, 0)[half]
            if piece == "down" and lay + blk + "experts.down_proj" in ckpt:
                return [lay + blk + "experts.down_proj"], lambda ts, e=e: ts[0][e]
    return None


def param_diff(model, tensors, d, cfg, torch):
    """max |model parameter - safetensors value| over every parameter and
    persistent buffer of the model, each built from the checkpoint tensors
    it came from (param_source: transformers 5 may hold MoE experts fused
    while the checkpoint stores them per expert, or the reverse); fails on a
    model tensor with no source, a checkpoint tensor no model tensor used, a
    shape mismatch, and a tied lm_head that is not the embedding."""
    from safetensors import safe_open

    sd = model.state_dict()
    cache = {}

    def get(name):
        if name not in cache:
            with safe_open(os.path.join(d, tensors[name][0]), framework="pt") as f:
                cache[name] = f.get_tensor(name).to(torch.float32)
        return cache[name]

    worst, used, notes = 0.0, set(), []
    nested = "model.language_model.embed_tokens.weight" in sd
    embed = "model.language_model.embed_tokens.weight" if nested else "model.embed_tokens.weight"
    for name, got in sd.items():
        if nested and name.startswith("model.visual."):  # the stubbed vision tower: not the text model's
            used.add(name)
            continue
        if name == "lm_head.weight" and "lm_head.weight" not in tensors:
            if not torch.equal(got, sd[embed]):
                raise CheckError(f"tied lm_head.weight differs from {embed}")
            continue
        src = param_source(name, cfg, tensors)
        if src is None:
            raise CheckError(f"model tensor {name} {tuple(got.shape)} has no source in the checkpoint")
        names, build = src
        want = build([get(n) for n in names])
        if got.dtype != torch.float32:
            raise CheckError(f"{name}: model dtype {got.dtype}, asked for float32")
        if tuple(got.shape) != tuple(want.shape):
            raise CheckError(f"{name}: model shape {tuple(got.shape)}, built from {names[:2]}... "
                             f"as {tuple(want.shape)}")
        if names != [name]:
            notes.append(f"{name} <- {names[0]}{' ... ' + names[-1] if len(names) > 1 else ''}")
        used.update(names)
        worst = max(worst, float((got - want).abs().max()))
    unused = sorted(n for n in set(tensors) - used if not (nested and n.startswith("model.visual.")))
    if unused:
        raise CheckError(f"checkpoint tensors no model tensor took: {unused[:6]}{' ...' if len(unused) > 6 else ''}")
    if notes:
        print(f"  {len(notes)} model tensors built from other checkpoint names, e.g. {notes[0]}", flush=True)
    return worst


def hf_view(model):
    """A few config values as HF resolved them, for the log."""
    c = model.config
    parts = [f"{type(model).__name__}"]
    rp = getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None)
    parts.append(f"rope={rp}")
    for k in ("sliding_window", "use_sliding_window", "head_dim", "tie_word_embeddings",
              "_attn_implementation", "_experts_implementation", "num_experts_per_tok", "norm_topk_prob",
              "mlp_only_layers", "decoder_sparse_step", "first_k_dense_replace", "topk_method", "n_group",
              "topk_group", "routed_scaling_factor", "rope_interleave"):
        if hasattr(c, k):
            parts.append(f"{k}={getattr(c, k)}")
    return " ".join(parts)


def feature_variants(cfg):
    """(what, config.json change, n_same) for each feature the preset
    exercises: with the change, the logits must stay put before position
    n_same and move (> 0.01) somewhere after it. tests/ref_golden.py runs the
    same list on its numpy model to predict the effects."""
    mt = cfg["model_type"]
    v = []
    if cfg.get("sliding_window") and cfg.get("use_sliding_window", True):
        v.append(("sliding_window", {"sliding_window": None}, cfg["sliding_window"]))
    if cfg.get("rope_scaling"):
        v.append(("rope_scaling", {"rope_scaling": None}, 1))  # position 0 is unrotated
    if mt in ("qwen3_moe", "qwen3_next"):
        v.append(("norm_topk_prob", {"norm_topk_prob": not cfg["norm_topk_prob"]}, 0))
    if mt == "qwen3_next":  # RoPE over a quarter of the head; position 0 is unrotated
        v.append(("partial_rotary_factor", {"partial_rotary_factor": 0.5}, 1))
    if mt in ("mixtral", "deepseek_v2") and cfg["num_experts_per_tok"] > 1:
        v.append(("top-1", {"num_experts_per_tok": 1}, 0))
    if mt in ("deepseek_v2", "deepseek_v3") and cfg["routed_scaling_factor"] != 1:
        v.append(("routed_scaling_factor", {"routed_scaling_factor": 1.0}, 0))
    if mt == "deepseek_v3":
        if cfg["n_group"] > 1 and cfg["topk_group"] < cfg["n_group"]:
            v.append(("group_limit", {"n_group": 1, "topk_group": 1}, 0))
        if cfg.get("rope_interleave"):
            v.append(("rope_interleave", {"rope_interleave": False}, 1))
    return v


def mla_scale_report(model, cfg):
    """The softmax scale transformers' MLA attention uses, against both
    readings: qk_head_dim^-0.5 alone (DeepseekV2 before transformers PR
    #47435) and times mscale(factor, mscale_all_dim)^2 (DeepseekV3; V2 after
    the PR). tests/ref_golden.py assumes the latter unless --dsv2-plain-scale."""
    if cfg["model_type"] not in ("deepseek_v2", "deepseek_v3"):
        return None
    plain = (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]) ** -0.5
    rs = cfg.get("rope_scaling") or {}
    m = 1.0
    if rs.get("mscale_all_dim") and float(rs.get("factor", 1)) > 1:
        m = 0.1 * rs["mscale_all_dim"] * math.log(float(rs["factor"])) + 1.0
    got = float(model.model.layers[0].self_attn.scaling)
    kind = ("with mscale^2" if abs(got - plain * m * m) < 1e-9 * plain else
            "plain" if abs(got - plain) < 1e-9 * plain else "UNEXPECTED")
    msg = (f"  MLA softmax scale: transformers uses {got:.9g} ({kind}; plain {plain:.9g}, "
           f"with mscale^2 {plain * m * m:.9g})")
    if kind != "with mscale^2":
        msg += ("\n  !!!!!!!! tests/ref_golden.py assumed mscale^2: rerun it with --dsv2-plain-scale"
                if kind == "plain" and cfg["model_type"] == "deepseek_v2" else
                "\n  !!!!!!!! not what DeepseekV3Attention computes as read for tests/ref_golden.py")
    print(msg, flush=True)
    return kind


def feature_effects(d, cfg, ids, logits, torch):
    """Reloads the model with each feature the preset exercises changed in
    config.json (feature_variants) and checks that this changes the logits
    over ids only where it should, so that a transformers version that
    silently ignored the key could not produce a golden file without it.
    Returns a short text for the summary."""
    from transformers import AutoModelForCausalLM

    variants = feature_variants(cfg)
    out = []
    for what, change, n_same in variants:
        alt = d + "-no-" + what.replace("/", "_")
        os.makedirs(alt)
        for fn in os.listdir(d):
            if fn != "config.json":
                os.symlink(os.path.join(d, fn), os.path.join(alt, fn))
        with open(os.path.join(alt, "config.json"), "w") as f:
            json.dump({**cfg, **change}, f, indent=2)
        m = AutoModelForCausalLM.from_pretrained(alt, dtype=torch.float32, attn_implementation="eager")
        m.eval()
        with torch.no_grad():
            lo = m(torch.tensor([ids])).logits[0].float().cpu().numpy()
        row = abs(lo - logits).max(axis=1)
        d_same = float(row[:n_same].max()) if n_same else 0.0
        d_diff = float(row[n_same:].max())
        first = next((i for i in range(len(row)) if row[i] > 1e-4), None)
        if d_same > 1e-4 or d_diff < 1e-2:
            raise CheckError(f"changing {what} ({change}) changed the logits by {d_same:.3g} at positions "
                             f"< {n_same} (want ~0) and {d_diff:.3g} after (want > 0.01): transformers "
                             f"may not apply {what} as config.json asks")
        print(f"  {what} changed {change}: max |dlogit| {d_same:.2g} before position {n_same}, {d_diff:.3g} after; "
              f"first position that changes: {first}", flush=True)
        out.append(f"{what}:{d_diff:.2g}")
    return " ".join(out) or "-"


def compare_ref(args, preset, h, records):
    """Compares what HF computed with tests/ref_golden.py's numpy stand-in
    for this preset, if there is one: same greedy tokens, and the logits'
    max |hf - ref| / max(1, |hf|). A large difference means the numpy
    reference (and every C check made against it) misread transformers."""
    path = os.path.join(args.ref, preset + ".bin")
    if not os.path.exists(path):
        return "ref:-"
    _, rh, recs = read_golden(path)
    if rh != h:
        print(f"  {path}: made from another checkpoint (ckpt_hash {rh:#018x}); not compared", flush=True)
        return "ref:stale"
    worst, same = 0.0, True
    for (pr, ge, _, lo), (rp, rg, _, rl) in zip(records, recs):
        if list(rp) != list(pr):
            return "ref:other-prompts"
        if list(rg) != list(ge):
            same = False
            k = next(i for i in range(len(ge)) if rg[i] != ge[i])
            print(f"  numpy reference's greedy differs from HF at prompt {len(pr)} step {k}", flush=True)
        n = next((i for i in range(len(ge)) if rg[i] != ge[i]), len(ge))
        rows = len(pr) + n  # rows whose inputs agree
        worst = max(worst, float((abs(lo[:rows] - rl[:rows]) / (abs(lo[:rows]).clip(1.0))).max()))
    bad = worst > 1e-4
    print(f"  {'!!!!!!!! ' if bad else ''}vs tests/ref_golden.py's {path}: max |hf - ref| / max(1, |hf|) "
          f"{worst:.2g}, greedy tokens {'equal' if same else 'DIFFER'}", flush=True)
    return f"ref:{worst:.1g}{'' if same else ',tokens-differ'}{'(BAD)' if bad else ''}"


def golden_one(args, preset, tmp, torch):
    from transformers import AutoModelForCausalLM
    try:
        from transformers import AutoModelForImageTextToText
    except ImportError:
        AutoModelForImageTextToText = None

    d = os.path.join(tmp, preset)
    h_gen, line = run_gen(args.gen, preset, d)
    print(line, flush=True)
    h = ckpt_hash(d)
    if h != h_gen:
        raise CheckError(f"directory hash: gen_ckpt says {h_gen:#018x}, python {h:#018x}")
    cfg, tensors = check_structure(d)
    vocab = cfg["vocab_size"]

    with open(os.path.join(d, "config.json")) as f:
        nested = "text_config" in json.load(f)
    if nested:  # Qwen3.5: the multimodal class, its vision tower only stubbed
        if AutoModelForImageTextToText is None:
            raise CheckError("this transformers has no AutoModelForImageTextToText for the Qwen3.5 presets")
        model, info = AutoModelForImageTextToText.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True,
            ignore_mismatched_sizes=True)
    else:
        model, info = AutoModelForCausalLM.from_pretrained(
            d, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = loading_problems(info, skip_visual=nested)
    if bad:
        raise CheckError(f"from_pretrained loading info: {'; '.join(bad)}")
    model.eval()
    print(f"  {hf_view(model)}", flush=True)
    pdiff = param_diff(model, tensors, d, cfg, torch)
    if pdiff != 0.0:
        raise CheckError(f"parameters differ from the safetensors values: max |diff| {pdiff}")
    mla_scale = mla_scale_report(model, cfg)
    if mla_scale == "UNEXPECTED":
        raise CheckError("MLA softmax scale is neither qk_head_dim^-0.5 nor that times mscale^2")

    records, summary = [], []
    with torch.no_grad():
        for n in PROMPT_LENS:
            prompt = lcg_prompt(preset, n, vocab)
            ids, margins = list(prompt), []
            for _ in range(N_GEN):
                last = model(torch.tensor([ids])).logits[0, -1]
                top = torch.topk(last, 2).values
                ids.append(int(torch.argmax(last)))
                margins.append(float(top[0] - top[1]))
            gen = ids[n:]
            logits = model(torch.tensor([ids])).logits[0].float().cpu().numpy()
            if logits.shape != (n + N_GEN, vocab):
                raise CheckError(f"logits shape {logits.shape}, expected {(n + N_GEN, vocab)}")
            full_argmax = logits[n - 1:n - 1 + N_GEN].argmax(axis=1).tolist()
            n_flip = sum(a != b for a, b in zip(full_argmax, gen))

            out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, n, dtype=torch.long),
                                 do_sample=False, max_new_tokens=N_GEN, eos_token_id=None,
                                 pad_token_id=0)
            hf_gen = out[0, n:].tolist()
            k = len(hf_gen)
            agree = hf_gen == gen[:k] and (k == N_GEN or (k > 0 and hf_gen[-1] == 2))
            if not agree:
                first = next((i for i in range(min(k, N_GEN)) if hf_gen[i] != gen[i]), k)
                print(f"  !!!!!!!! WARNING: {preset} prompt {n}: HF generate (with cache) differs from "
                      f"the no-cache greedy loop at step {first} (margin there "
                      f"{margins[first] if first < N_GEN else float('nan'):.3g})\n"
                      f"  !!!!!!!!   loop:     {gen}\n  !!!!!!!!   generate: {hf_gen}", flush=True)
            elif k < N_GEN:
                print(f"  note: generate stopped at EOS after {k} tokens; they agree", flush=True)
            if n_flip:
                print(f"  WARNING: {preset} prompt {n}: the single forward over prompt+gen has a "
                      f"different argmax than the step loop at {n_flip} position(s)", flush=True)
            m = min(margins)
            print(f"  prompt {n:>2}: min margin {m:.4f} at step {margins.index(m)}; gen {gen[:8]}...",
                  flush=True)
            records.append((prompt, gen, margins, logits))
            summary.append((n, m, agree, n_flip))

    longest = max(range(len(records)), key=lambda i: len(records[i][0]))
    pr, ge, _, lo = records[longest]
    effects = feature_effects(d, cfg, pr + ge, lo, torch)

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, preset + ".bin")
    write_golden(path, vocab, h, records)
    v2, h2, back = read_golden(path)
    if v2 != vocab or h2 != h or any(
            list(a[0]) != r[0] or list(a[1]) != r[1] or not (a[3] == r[3]).all()
            for a, r in zip(back, records)):
        raise CheckError(f"{path}: re-read does not match what was written")
    if args.keep:
        dst = os.path.join(args.keep, preset)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(d, dst)
    if mla_scale:
        effects += f" mla_scale:{mla_scale.replace(' ', '_')}"
    effects += " " + compare_ref(args, preset, h, records)
    return {"hash": h, "pdiff": pdiff, "prompts": summary, "bytes": os.path.getsize(path),
            "path": path, "effects": effects}


def golden_all(args, presets):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import numpy  # noqa: F401
        import safetensors
        import torch
        import transformers
    except ImportError as ex:
        die(f"{ex}: this mode needs torch, transformers, safetensors and numpy "
            f"(use --check-only where they are missing)")
    torch.set_num_threads(os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    transformers.logging.set_verbosity_error()
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"safetensors {safetensors.__version__}, numpy {numpy.__version__}, "
          f"{torch.get_num_threads()} threads", flush=True)

    results, ok = {}, True
    with tempfile.TemporaryDirectory(prefix="hf_golden_") as tmp:
        for p in presets:
            print(f"== {p}", flush=True)
            try:
                results[p] = golden_one(args, p, tmp, torch)
            except Exception as ex:  # report every preset, then fail
                ok = False
                results[p] = None
                print(f"hf_golden: {p}: FAIL: {type(ex).__name__}: {ex}", file=sys.stderr, flush=True)

    if any(results.values()):
        write_versions(args, presets, results, torch, transformers, safetensors, numpy)

    print(f"\n{'preset':<20} {'prompts':<9} {'min margin per prompt':<24} {'hf-generate':<11} "
          f"{'flips':>5} {'max|param diff|':>15} {'bytes':>9}  {'ckpt_hash':<18}  feature off: dlogit")
    for p in presets:
        r = results[p]
        if r is None:
            print(f"{p:<20} FAILED (see above)")
            continue
        lens = ",".join(str(s[0]) for s in r["prompts"])
        mins = " ".join(f"{s[1]:.4f}" for s in r["prompts"])
        agree = "yes" if all(s[2] for s in r["prompts"]) else "NO!"
        flips = sum(s[3] for s in r["prompts"])
        print(f"{p:<20} {lens:<9} {mins:<24} {agree:<11} {flips:>5} {r['pdiff']:>15.3g} "
              f"{r['bytes']:>9}  {r['hash']:#018x}  {r['effects']}")
        if agree != "yes":
            ok = False
    return 0 if ok else 1


def write_versions(args, presets, results, torch, transformers, safetensors, numpy):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [
        f"date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}",
        f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}",
        f"python: {platform.python_version()}",
        f"torch: {torch.__version__}",
        f"transformers: {transformers.__version__}",
        f"safetensors: {safetensors.__version__}",
        f"numpy: {numpy.__version__}",
        f"device: cpu ({cpu}), {torch.get_num_threads()} threads, float32, eager attention",
        f"host: {platform.platform()}",
    ]
    for p in presets:
        r = results.get(p)
        if r:
            lines.append(f"{p}: ckpt_hash {r['hash']:#018x}, min margins "
                         + " ".join(f"{s[1]:.4f}" for s in r["prompts"]))
    with open(os.path.join(args.out, "VERSIONS.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gen", default="build/tests/gen_ckpt", help="the gen_ckpt binary")
    ap.add_argument("--out", default="tests/data/golden", help="where <preset>.bin go")
    ap.add_argument("--presets", default=None,
                    help=f"comma-separated subset (default: {','.join(PRESETS)})")
    ap.add_argument("--keep", default=None, help="also copy the checkpoints here")
    ap.add_argument("--ref", default="tests/data/ref",
                    help="numpy stand-ins from tests/ref_golden.py to compare with (where present)")
    ap.add_argument("--check-only", action="store_true",
                    help="structure/determinism/hash checks only; needs no torch")
    args = ap.parse_args()

    if not (os.path.isfile(args.gen) and os.access(args.gen, os.X_OK)):
        die(f"{args.gen}: no gen_ckpt binary; build it first: cc -std=c11 -D_GNU_SOURCE -O2 -Isrc "
            f"-o build/tests/gen_ckpt tests/gen_ckpt.c src/base.c -lm")
    args.gen = os.path.abspath(args.gen)
    default = ALL_PRESETS if args.check_only else PRESETS
    presets = args.presets.split(",") if args.presets else default
    for p in presets:
        if p not in ALL_PRESETS:
            die(f"unknown preset {p} (known: {', '.join(ALL_PRESETS)})")
    sys.exit(check_only(args, presets) if args.check_only else golden_all(args, presets))


if __name__ == "__main__":
    main()
