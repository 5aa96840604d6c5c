#!/usr/bin/env python3
"""cnn_pareto.py OUT.svg TITLE REPORT.json... — the accuracy/size figure of
`adaquant quantize MODEL.onnx` runs (bench/cnn_bench.sh): one point per
OUTDIR's report.json, x = the quantized layers' bytes (codes packed, f32
scale/zero/bias per channel, the activation pair: docs/CNN.md), y = top-1.
The Pareto front (no other run both smaller and at least as accurate) is
drawn as a line; every point is labelled with its average weight bits.
Prints the table (size, bits, top-1, agreement, on the front) to stdout.
Standard library only: the SVG is written by hand."""
import json
import math
import sys


def load(path):
    r = json.load(open(path))
    ev = r["run"]["evaluation"]
    size = sum(l["bytes"] for l in r["layers"])
    opts = sorted({l["option"] for l in r["layers"]})
    return {"path": path, "bytes": size, "bits": r["allocation"]["avg_bits"], "top1": 100 * ev["top1_quantized"],
            "fp": 100 * ev["top1_fp"], "agree": 100 * ev["agreement"], "options": ",".join(opts),
            "budget": r["allocation"].get("budget")}


def front(points):
    """Indices on the Pareto front: sorted by size, each strictly more accurate
    than every smaller point."""
    best, out = -math.inf, []
    for i in sorted(range(len(points)), key=lambda k: (points[k]["bytes"], -points[k]["top1"])):
        if points[i]["top1"] > best:
            out.append(i)
            best = points[i]["top1"]
    return out


def nice_step(span, n):
    raw = span / max(n, 1)
    k = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= raw:
            return m * k
    return 10 * k


def axis(lo, hi, n):
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    s = nice_step(hi - lo, n)
    a, b = math.floor(lo / s) * s, math.ceil(hi / s) * s
    return a, b, [a + i * s for i in range(int(round((b - a) / s)) + 1)]


def svg(points, on, title, fp):
    W, H, L, R, T, B = 720, 440, 70, 20, 40, 50
    xs, ys = [p["bytes"] / 1000 for p in points], [p["top1"] for p in points] + [fp]
    x0, x1, xt = axis(min(xs), max(xs), 6)
    y0, y1, yt = axis(min(ys), max(ys), 6)
    X = lambda v: L + (v - x0) / (x1 - x0) * (W - L - R)  # noqa: E731
    Y = lambda v: H - B - (v - y0) / (y1 - y0) * (H - T - B)  # noqa: E731
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
         f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="black"/>']
    for v in xt:
        o.append(f'<line x1="{X(v):.1f}" y1="{H - B}" x2="{X(v):.1f}" y2="{T}" stroke="#ddd"/>')
        o.append(f'<text x="{X(v):.1f}" y="{H - B + 16}" text-anchor="middle">{v:g}</text>')
    for v in yt:
        o.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">quantized layers, kB</text>')
    o.append(f'<text x="16" y="{(T + H - B) / 2}" text-anchor="middle" '
             f'transform="rotate(-90 16 {(T + H - B) / 2})">top-1, %</text>')
    o.append(f'<line x1="{L}" y1="{Y(fp):.1f}" x2="{W - R}" y2="{Y(fp):.1f}" stroke="#888" stroke-dasharray="5,4"/>')
    o.append(f'<text x="{W - R - 4}" y="{Y(fp) - 4:.1f}" text-anchor="end" fill="#555">FP {fp:.2f}</text>')
    path = " ".join(f"{X(points[i]['bytes'] / 1000):.1f},{Y(points[i]['top1']):.1f}" for i in on)
    o.append(f'<polyline points="{path}" fill="none" stroke="#c33" stroke-width="2"/>')
    for i, p in enumerate(points):
        c = "#c33" if i in on else "#36c"
        o.append(f'<circle cx="{X(p["bytes"] / 1000):.1f}" cy="{Y(p["top1"]):.1f}" r="4" fill="{c}"/>')
        o.append(f'<text x="{X(p["bytes"] / 1000) + 6:.1f}" y="{Y(p["top1"]) + 14:.1f}" fill="{c}" '
                 f'font-size="10">{p["bits"]:.2f} b</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main():
    out, title, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    points = [load(p) for p in paths]
    on = front(points)
    open(out, "w").write(svg(points, on, title, points[0]["fp"]))
    print(f"{title}: {out}")
    print(f"| avg weight bits | kB | top-1 | agreement | options chosen | front |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i in sorted(range(len(points)), key=lambda k: points[k]["bytes"]):
        p = points[i]
        print(f"| {p['bits']:.3f} | {p['bytes'] / 1000:.2f} | {p['top1']:.2f} | {p['agree']:.2f} | {p['options']} "
              f"| {'yes' if i in on else ''} |")


if __name__ == "__main__":
    main()
