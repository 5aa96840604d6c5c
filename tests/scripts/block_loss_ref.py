#!/usr/bin/python3
"""block_loss_ref.py — float64 NumPy reference of the one-block allocation
losses (src/model/block_loss.h), built on hf_ref.py's block and head.

  block_loss_ref.py MODELDIR WEIGHT.f32 BLOCK PROJ LENS TOKEN...
    WEIGHT.f32  the quantized layer's weight [d_out, d_in] (float32, as the C
                side installed it), replacing model.layers.BLOCK.PROJ.weight
    PROJ        e.g. self_attn.q_proj, mlp.down_proj
    LENS        comma-separated window lengths; the tokens are the windows packed
prints "MSE FISHER":
  MSE    = sum over windows, positions t < len-1 of ||y_q[t] - y[t]||^2 / predicted
  FISHER = sum over the same of sum_i F[t,i] (y_q - y)[t,i]^2 / 2 / predicted,
           F[t,i] = (dCE/dy[t,i])^2, CE = the window's next-token cross-entropy
           through blocks > BLOCK and the head; the derivative by central finite
           differences (step 1e-5: truncation ~1e-10, rounding ~1e-11 relative)
y = the FP block's output on the FP block input, y_q the same block with the
weight replaced."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_ref  # noqa: E402


def ce_from(c, w, x, b, toks, cos, sin):
    for l in range(b + 1, c["num_hidden_layers"]):
        x = hf_ref.block(c, w, x, l, cos, sin)
    z = hf_ref.head(c, w, x)[:-1]
    z = z - z.max(axis=1, keepdims=True)
    lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -lp[np.arange(len(toks) - 1), np.array(toks[1:])].sum()


def fisher(c, w, y, b, toks, cos, sin):
    F, eps = np.zeros_like(y), 1e-5
    for t in range(len(toks) - 1):
        for i in range(y.shape[1]):
            yp, ym = y.copy(), y.copy()
            yp[t, i] += eps
            ym[t, i] -= eps
            g = (ce_from(c, w, yp, b, toks, cos, sin) - ce_from(c, w, ym, b, toks, cos, sin)) / (2 * eps)
            F[t, i] = g * g
    return F


def main(argv):
    d, wfile, b, proj, lens = argv[0], argv[1], int(argv[2]), argv[3], [int(v) for v in argv[4].split(",")]
    toks = [int(v) for v in argv[5:]]
    import json
    c = json.load(open(os.path.join(d, "config.json")))
    w = hf_ref.read_weights(d)
    name = f"model.layers.{b}.{proj}.weight"
    wq = dict(w)
    wq[name] = np.fromfile(wfile, "<f4").astype(np.float64).reshape(w[name].shape)
    mse = fis = 0.0
    at, pred = 0, 0
    for n in lens:
        tk = toks[at:at + n]
        at += n
        pred += n - 1
        cos, sin = hf_ref.rope_tables(c, n)
        x = w["model.embed_tokens.weight"][np.array(tk)]
        for l in range(b):
            x = hf_ref.block(c, w, x, l, cos, sin)
        y = hf_ref.block(c, w, x, b, cos, sin)
        dlt = (hf_ref.block(c, wq, x, b, cos, sin) - y)[:-1]
        mse += (dlt * dlt).sum()
        fis += 0.5 * (fisher(c, w, y, b, tk, cos, sin)[:-1] * dlt * dlt).sum()
    print(f"{mse / pred:.17g} {fis / pred:.17g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
