"""test_svg.py — reads the plots that test_svg writes (solver/svg.c) as XML
and checks what a reader sees, from the drawn geometry alone:

  every file   parses (xml.etree); the legend box lies outside the plot
               frame and overlaps no data mark (circle, bar, cell, polyline
               vertex)
  pareto.svg   the tick labels of both axes are equally spaced round values
               (step 1, 2, 2.5 or 5 x 10^k) and the first and last sit on the
               frame; every point lies inside the frame
  bits_1000    1,000 heat-map cells (143 blocks x 7 types minus one) on a
               143 x 7 grid: each cell's position is the block and type its
               title names, no two share a place, the missing one is absent,
               the row labels name the types in model order, one colour per
               weight-bit count
  bits_small   35 labelled bars (stories260K's shape)
Usage: test_svg.py TEST_SVG_BINARY DIR.
"""
import math
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

NS = "{http://www.w3.org/2000/svg}"
TYPES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
         "mlp.up_proj", "mlp.down_proj"]
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def rect_of(e):
    return tuple(float(e.get(k)) for k in ("x", "y", "width", "height"))


def overlap(a, b):
    """Two (x, y, w, h) boxes share interior area."""
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def find_id(root, ident):
    return next((e for e in root.iter() if e.get("id") == ident), None)


def data_boxes(root):
    """Bounding boxes of every data mark (inside <g id="data">)."""
    g = find_id(root, "data")
    boxes = []
    for e in g.iter():
        if e.tag == NS + "circle":
            cx, cy, r = (float(e.get(k)) for k in ("cx", "cy", "r"))
            boxes.append((cx - r, cy - r, 2 * r, 2 * r))
        elif e.tag == NS + "rect":
            boxes.append(rect_of(e))
        elif e.tag == NS + "polyline":
            for pt in e.get("points").split():
                x, y = map(float, pt.split(","))
                boxes.append((x - 1, y - 1, 2, 2))
    return boxes


def legend_clear(root, name):
    legend, plot = find_id(root, "legend-box"), find_id(root, "plot-area")
    check(legend is not None and plot is not None, f"{name}: has a legend box and a plot frame")
    if legend is None or plot is None:
        return None
    lb, pb = rect_of(legend), rect_of(plot)
    check(not overlap(lb, pb), f"{name}: legend box {lb} is outside the plot frame {pb}")
    hits = [b for b in data_boxes(root) if overlap(lb, b)]
    check(not hits, f"{name}: the legend covers no data mark ({len(hits)} do, e.g. {hits[:2]})")
    return pb


def is_round_step(s):
    k = math.floor(math.log10(s))
    m = s / 10 ** k
    return any(abs(m - c) < 1e-9 for c in (1, 2, 2.5, 5, 10))


def check_ticks(values, positions, lo_px, hi_px, what):
    """Labels equally spaced by a round step; the end ticks on the frame."""
    check(len(values) >= 2, f"{what}: {len(values)} tick labels")
    if len(values) < 2:
        return
    steps = [b - a for a, b in zip(values, values[1:])]
    step = steps[0]
    # labels carry all the digits of the step: differences exact to print precision
    check(all(abs(d - step) <= 1e-9 * max(1, abs(step)) for d in steps) and step > 0 and is_round_step(step),
          f"{what}: ticks {values} step by a round value")
    check(all(abs(v / step - round(v / step)) < 1e-6 for v in values), f"{what}: every tick is a multiple of the step")
    check(abs(min(positions) - lo_px) < 0.6 and abs(max(positions) - hi_px) < 0.6,
          f"{what}: first and last tick on the frame ({min(positions)}, {max(positions)} vs {lo_px}, {hi_px})")


def check_pareto(path):
    root = ET.parse(path).getroot()
    pb = legend_clear(root, "pareto.svg")
    if pb is None:
        return
    x, y, w, h = pb
    xs, xp, ys, yp = [], [], [], []
    for t in root.iter(NS + "text"):
        tx, ty = float(t.get("x")), float(t.get("y"))
        if t.get("text-anchor") == "middle" and abs(ty - (y + h + 16)) < 0.6:
            xs.append(float(t.text)), xp.append(tx)
        elif t.get("text-anchor") == "end" and abs(tx - (x - 6)) < 0.6:
            ys.append(float(t.text)), yp.append(ty - 4)
    check_ticks(xs, xp, x, x + w, "pareto.svg x axis")
    check_ticks(ys, [-p for p in yp], -(y + h), -y, "pareto.svg y axis")
    inside = all(x <= b[0] + b[2] / 2 <= x + w and y <= b[1] + b[3] / 2 <= y + h for b in data_boxes(root))
    check(inside, "pareto.svg: every point inside the frame")


def check_heatmap(path):
    root = ET.parse(path).getroot()
    pb = legend_clear(root, "bits_1000.svg")
    if pb is None:
        return
    x0, y0, w, h = pb
    cells = [e for e in root.iter(NS + "rect") if e.get("class") == "cell"]
    check(len(cells) == 1000, f"bits_1000.svg: {len(cells)} cells for 1000 layers")
    cw, rh = w / 143, h / 7
    seen, colour_of_w, bad = set(), {}, []
    for c in cells:
        title = c.find(NS + "title").text
        m = re.match(r"model\.layers\.(\d+)\.(\S+): w(\d+)a(\d+), ", title)
        if not m:
            bad.append(title)
            continue
        b, k, wb = int(m.group(1)), TYPES.index(m.group(2)), int(m.group(3))
        cx, cy, ww, hh = rect_of(c)
        # positions are printed with 2 decimals: within 0.01 px
        if abs(cx - (x0 + b * cw)) > 0.01 or abs(cy - (y0 + k * rh)) > 0.01 or abs(ww - cw) > 0.01:
            bad.append(title)
        seen.add((b, k))
        colour_of_w.setdefault(wb, set()).add(c.get("fill"))
    check(not bad, f"bits_1000.svg: every cell sits at the block and type its title names ({bad[:2]})")
    check(len(seen) == 1000 and (142, 6) not in seen, "bits_1000.svg: 1000 distinct places, block 142 down_proj empty")
    fills = [next(iter(v)) for v in colour_of_w.values()]
    check(all(len(v) == 1 for v in colour_of_w.values()) and len(set(fills)) == len(fills),
          f"bits_1000.svg: one colour per weight-bit count ({colour_of_w})")
    labels = [(float(t.get("y")), t.text) for t in root.iter(NS + "text")
              if t.get("text-anchor") == "end" and abs(float(t.get("x")) - (x0 - 6)) < 0.6]
    check([s for _, s in sorted(labels)] == TYPES, f"bits_1000.svg: row labels in model order: {labels}")


def check_bars(path, n):
    root = ET.parse(path).getroot()
    legend_clear(root, os.path.basename(path))
    bars = [e for e in root.iter(NS + "rect") if e.get("class") == "bar"]
    check(len(bars) == n, f"{os.path.basename(path)}: {len(bars)} bars for {n} layers")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: test_svg.py TEST_SVG_BINARY DIR")
    binary, top = sys.argv[1], sys.argv[2]
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    p = subprocess.run([binary, top], capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, "test_svg writes the plots: " + p.stderr[-300:])
    for name in ("pareto.svg", "bits_small.svg", "bits_1000.svg", "bits_flat.svg"):
        try:
            ET.parse(os.path.join(top, name))
            check(True, f"{name} parses as XML")
        except (ET.ParseError, OSError) as e:
            check(False, f"{name} parses as XML: {e}")
            return 1
    check_pareto(os.path.join(top, "pareto.svg"))
    check_heatmap(os.path.join(top, "bits_1000.svg"))
    check_bars(os.path.join(top, "bits_small.svg"), 35)
    check_bars(os.path.join(top, "bits_flat.svg"), 100)
    if failures:
        print(f"{len(failures)} check(s) failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
