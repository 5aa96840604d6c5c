#!/usr/bin/python3
"""synth_model.py — random Hugging Face checkpoints of the Llama-family
variants adaquant reads (config.json + safetensors, one file or shards with
model.safetensors.index.json), for the architecture tests (tests/test_arch.c
against tests/scripts/hf_ref.py) and for scale benchmarks (real shapes by flags).

  synth_model.py ARCH OUTDIR [--dtype bf16|f16|f32] [--shards N] [--seed S]
                 [--dim D] [--layers L] [--vocab V] [--heads H] [--kv-heads K]
                 [--hidden F] [--head-dim HD] [--max-pos P]
                 [--attention-bias] [--mlp-bias] [--set KEY=JSON]... [--bad-qnorm]
  --attention-bias / --mlp-bias turn those config fields on (llama, qwen3),
  with the bias tensors;
  --set overrides a config.json field (bad-input tests: --set model_type='"gemma"');
  --bad-qnorm writes layer 0's q_norm two elements short (a shape mismatch).

ARCH (each a config.json as transformers writes it for such a model):
  llama          Llama 1/2 / TinyLlama: GQA, rope_theta 10000
  tinyllama      the same block, TinyLlama-style head counts
  llama3.1       rope_scaling {rope_type llama3} (original context 64, so that
                 the short test sequences meet all three frequency bands)
  llama-linear   rope_scaling {"type": "linear"} (the legacy key)
  llama-dynamic  rope_scaling {rope_type dynamic}
  llama-bias     attention_bias + mlp_bias, head_dim != dim / heads
  smollm         tie_word_embeddings true
  mistral        model_type mistral, sliding_window 64
  qwen2          q/k/v biases, rope_theta 1e6, use_sliding_window false
  qwen3          per-head q/k RMSNorm, head_dim != dim / heads, tied embeddings

The weights are random normal (seeded): linears with std 1/sqrt(d_in), norm
gains 1 + 0.2 N, biases 0.3 N, so that every part of the block visibly moves
the logits. Written with numpy only (the BF16 rounding of
tests/fixtures/st_numpy.py), drawn and encoded 4M values at a time, so real
shapes (e.g. --dim 4096 --layers 32 --hidden 14336 --heads 32 --kv-heads 8
--vocab 128256 --dtype bf16 --shards 4 for a Llama-3.1-8B shape) need memory
for one chunk, not the model."""
import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from st_numpy import f32_to_bf16_rne  # noqa: E402

ARCHS = ["llama", "tinyllama", "llama3.1", "llama-linear", "llama-dynamic", "llama-bias", "smollm",
         "mistral", "qwen2", "qwen3"]


def make_config(arch, a):
    heads = a.heads or 4
    kv = a.kv_heads or (1 if arch == "tinyllama" else 2)
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
         "hidden_size": a.dim, "intermediate_size": a.hidden or a.dim * 3 // 2,
         "num_hidden_layers": a.layers, "num_attention_heads": heads, "num_key_value_heads": kv,
         "vocab_size": a.vocab, "max_position_embeddings": a.max_pos, "rms_norm_eps": 1e-5,
         "rope_theta": 10000.0, "tie_word_embeddings": False,
         "torch_dtype": {"bf16": "bfloat16", "f16": "float16", "f32": "float32"}[a.dtype],
         "bos_token_id": 1, "eos_token_id": 2}
    if a.head_dim:
        c["head_dim"] = a.head_dim
    if arch == "llama3.1":
        c["rope_theta"] = 500000.0
        c["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    elif arch == "llama-linear":
        c["rope_scaling"] = {"type": "linear", "factor": 4.0}
    elif arch == "llama-dynamic":
        c["rope_scaling"] = {"rope_type": "dynamic", "factor": 2.0}
    elif arch == "llama-bias":
        c["attention_bias"] = True
        c["mlp_bias"] = True
        c.setdefault("head_dim", a.dim // heads + 8)
    elif arch == "smollm":
        c["tie_word_embeddings"] = True
    elif arch == "mistral":
        c.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=64,
                 head_dim=a.head_dim or None)
    elif arch == "qwen2":
        c.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2", rope_theta=1000000.0,
                 use_sliding_window=False, sliding_window=32, max_window_layers=1)
    elif arch == "qwen3":
        c.update(architectures=["Qwen3ForCausalLM"], model_type="qwen3", tie_word_embeddings=True,
                 attention_bias=False, use_sliding_window=False, sliding_window=None,
                 max_window_layers=a.layers, rope_theta=1000000.0)
        c.setdefault("head_dim", a.dim // heads + 8)
    return c


def make_specs(c):
    """name -> (shape, mean, std) in checkpoint order: what each tensor is
    drawn from (normal), without drawing it (real shapes stream to disk)."""
    d, f, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    hs = c.get("head_dim") or d // H
    mt = c["model_type"]
    qkv_bias = mt == "qwen2" or c.get("attention_bias", False)
    o_bias = mt != "qwen2" and c.get("attention_bias", False)
    mlp_bias = c.get("mlp_bias", False)
    t = {"model.embed_tokens.weight": ((V, d), 0.0, 1.0)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = ((d,), 1.0, 0.2)
        shapes = {"self_attn.q_proj": (H * hs, d), "self_attn.k_proj": (KV * hs, d),
                  "self_attn.v_proj": (KV * hs, d), "self_attn.o_proj": (d, H * hs),
                  "mlp.gate_proj": (f, d), "mlp.up_proj": (f, d), "mlp.down_proj": (d, f)}
        for name, (o, i) in shapes.items():
            t[p + name + ".weight"] = ((o, i), 0.0, 1.0 / np.sqrt(i))
            has = (mlp_bias if name.startswith("mlp") else
                   o_bias if name.endswith("o_proj") else qkv_bias)
            if has:
                t[p + name + ".bias"] = ((o,), 0.0, 0.3)
        if mt == "qwen3":
            t[p + "self_attn.q_norm.weight"] = ((hs,), 1.0, 0.2)
            t[p + "self_attn.k_norm.weight"] = ((hs,), 1.0, 0.2)
        t[p + "post_attention_layernorm.weight"] = ((d,), 1.0, 0.2)
    t["model.norm.weight"] = ((d,), 1.0, 0.2)
    if not c["tie_word_embeddings"]:
        t["lm_head.weight"] = ((V, d), 0.0, 1.0 / np.sqrt(d))
    return t


CHUNK = 1 << 22  # elements drawn and encoded at a time (bounded memory for real shapes)
DTYPES = {"bf16": ("BF16", 2), "f16": ("F16", 2), "f32": ("F32", 4)}


def encode(a, dtype):
    a = np.asarray(a, dtype=np.float32)
    if dtype == "bf16":
        return f32_to_bf16_rne(a).astype("<u2").tobytes()
    if dtype == "f16":
        return a.astype("<f2").tobytes()
    return a.astype("<f4").tobytes()


def write_st(path, specs, dtype, rng):
    """One safetensors file: the header from the shapes, then each tensor drawn
    and encoded CHUNK elements at a time, in header order."""
    name_dt, size = DTYPES[dtype]
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, (shape, _, _) in specs.items():
        n = int(np.prod(shape)) * size
        header[name] = {"dtype": name_dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, (shape, mean, std) in specs.items():
            total = int(np.prod(shape))
            for k in range(0, total, CHUNK):
                x = rng.standard_normal(min(CHUNK, total - k), dtype=np.float32)
                f.write(encode(mean + std * x, dtype))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("arch", choices=ARCHS)
    p.add_argument("outdir")
    p.add_argument("--dtype", choices=["bf16", "f16", "f32"], default="f32")
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=96)
    p.add_argument("--heads", type=int, default=0)
    p.add_argument("--kv-heads", type=int, default=0)
    p.add_argument("--hidden", type=int, default=0)
    p.add_argument("--head-dim", type=int, default=0)
    p.add_argument("--max-pos", type=int, default=256)
    p.add_argument("--attention-bias", action="store_true")
    p.add_argument("--mlp-bias", action="store_true")
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--bad-qnorm", action="store_true")
    a = p.parse_args()
    c = make_config(a.arch, a)
    if a.attention_bias:
        c["attention_bias"] = True
    if a.mlp_bias:
        c["mlp_bias"] = True
    specs = make_specs(c)
    for kv in a.set:  # after the tensors are planned: they stay those of the real config
        k, v = kv.split("=", 1)
        c[k] = json.loads(v)
    if a.bad_qnorm:
        shape, mean, std = specs["model.layers.0.self_attn.q_norm.weight"]
        specs["model.layers.0.self_attn.q_norm.weight"] = ((shape[0] - 2,), mean, std)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.outdir, exist_ok=True)
    with open(os.path.join(a.outdir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    names = list(specs)
    if a.shards <= 1:
        write_st(os.path.join(a.outdir, "model.safetensors"), specs, a.dtype, rng)
        return
    wmap = {}
    per = -(-len(names) // a.shards)
    for s in range(a.shards):
        fn = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
        part = {n: specs[n] for n in names[s * per:(s + 1) * per]}
        write_st(os.path.join(a.outdir, fn), part, a.dtype, rng)
        wmap.update({n: fn for n in part})
    with open(os.path.join(a.outdir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f, indent=2)


if __name__ == "__main__":
    main()
