#!/usr/bin/python3
"""gguf_table.py — the tables and target checks of bench/gguf.sh from its
results file (tab-separated: tool, variant, format, bytes, seconds,
perplexity, mean KL, BLIS kernel; "-" where not measured).

Targets (issue 16, "The comparison"): at each llama.cpp format's size our KL
(llama.cpp's --kl-divergence) is lower than llama.cpp's better variant (with
or without importance matrix); at the Q4_0 and Q5_0 sizes at least 30% lower;
our file within the size (0.5% allowed over).

usage: gguf_table.py RESULTS.tsv
"""
import sys

STRONG = {"Q4_0", "Q5_0"}  # the sizes where our KL must be >= 30% lower


def num(s):
    return None if s in ("-", "") else float(s)


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def load(path):
    rows = []
    for line in open(path):
        p = line.rstrip("\n").split("\t")
        if len(p) < 8:
            continue
        rows.append(dict(tool=p[0], variant=p[1], format=p[2], bytes=num(p[3]), seconds=num(p[4]),
                         ppl=num(p[5]), kld=num(p[6]), kernel=p[7]))
    return rows


def pick(rows, tool, variant, f):
    return next((r for r in rows if r["tool"] == tool and r["variant"] == variant and r["format"] == f), None)


def gguf_table(rows, formats):
    print("\nGGUF, scored by llama.cpp (llama-perplexity --kl-divergence, 256-token chunks, 1 thread)")
    base = pick(rows, "llama.cpp", "F32", "F32")
    if base:
        print(f"F32 base: {base['bytes']:,.0f} bytes, PPL {fmt(base['ppl'], '.4f')}")
    ofp = pick(rows, "adaquant", "F32", "F32")
    if ofp:
        print(f"our F32 export on the same tokens: PPL {fmt(ofp['ppl'], '.4f')}, KL {fmt(ofp['kld'], '.6f')} "
              "(must be ~0: the two sides run one model)")
    imx = pick(rows, "llama.cpp", "imatrix", "-")
    if imx:
        print(f"llama-imatrix: {fmt(imx['seconds'], '.1f')} s")
    print("| size of | llama.cpp bytes (plain / imatrix) | PPL plain / imatrix | KL plain / imatrix | quantize s "
          "plain / imatrix | ours bytes | ours PPL | ours KL | ours s | kernel | KL ratio ours / best | target |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts = []
    for f in formats:
        p, i, o = pick(rows, "llama.cpp", "plain", f), pick(rows, "llama.cpp", "imatrix", f), \
            pick(rows, "adaquant", "gguf", f)
        if not p:
            continue
        best = min((r["kld"] for r in (p, i) if r and r["kld"] is not None), default=None)
        size = min(r["bytes"] for r in (p, i) if r)
        ratio = o["kld"] / best if o and o["kld"] is not None and best else None
        need = 0.7 if f in STRONG else 1.0
        if o is None or ratio is None:
            verdict = "not measured"
        elif o["bytes"] > size * 1.005:
            verdict = f"✗ file {100 * (o['bytes'] / size - 1):+.1f}% over the size"
        else:
            verdict = ("✓" if ratio < need else "✗") + (f" (needs < {need})" if need < 1 else " (needs < 1)")
        verdicts.append((f, verdict))
        two = lambda key, spec: f"{fmt(p[key], spec)} / {fmt(i[key] if i else None, spec)}"  # noqa: E731
        print(f"| {f} | {p['bytes']:,.0f} / {fmt(i['bytes'] if i else None, ',.0f')} | {two('ppl', '.4f')} | "
              f"{two('kld', '.5f')} | {two('seconds', '.2f')} | {fmt(o['bytes'] if o else None, ',.0f')} | "
              f"{fmt(o['ppl'] if o else None, '.4f')} | {fmt(o['kld'] if o else None, '.5f')} | "
              f"{fmt(o['seconds'] if o else None, '.1f')} | {o['kernel'] if o else '—'} | "
              f"{fmt(ratio, '.3f')} | {verdict} |")
    return verdicts


def eval_table(rows, formats):
    ev = [r for r in rows if r["tool"] == "adaquant-eval"]
    if not ev:
        return
    print("\nThe same sizes through `adaquant eval` (our protocol: BOS + document, <= 512 tokens, 2150 documents)")
    print("| size of | llama.cpp PPL plain / imatrix (dequantized) | ours: safetensors bytes | ours PPL | ours KL |")
    print("| --- | --- | --- | --- | --- |")
    for f in formats:
        p, i, o = pick(ev, "adaquant-eval", "plain", f), pick(ev, "adaquant-eval", "imatrix", f), \
            pick(ev, "adaquant-eval", "safetensors", f)
        print(f"| {f} | {fmt(p['ppl'] if p else None, '.4f')} / {fmt(i['ppl'] if i else None, '.4f')} | "
              f"{fmt(o['bytes'] if o else None, ',.0f')} | {fmt(o['ppl'] if o else None, '.4f')} | "
              f"{fmt(o['kld'] if o else None, '.6f')} |")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    rows = load(sys.argv[1])
    formats = []
    for r in rows:
        if r["tool"] == "llama.cpp" and r["variant"] == "plain" and r["format"] not in formats:
            formats.append(r["format"])
    verdicts = gguf_table(rows, formats)
    eval_table(rows, formats)
    print("\ntargets: " + "; ".join(f"{f} {v}" for f, v in verdicts))


if __name__ == "__main__":
    main()
