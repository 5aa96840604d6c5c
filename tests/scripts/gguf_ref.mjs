// gguf_ref.mjs — the independent GGUF reader for tests/test_gguf_ref.c: parses a
// file with @huggingface/gguf (npm; installed into NPM_PREFIX by npm_refs.sh)
// and prints what it read as JSON on stdout:
//
//   node gguf_ref.mjs NPM_PREFIX FILE.gguf
//
//   {"tensorDataOffset": "N", "metadata": {key: {"type": t, "subType": s, "value": v}},
//    "tensors": [{"name", "n_dims", "shape": ["N", ...], "dtype", "offset": "N"}],
//    "ggmlTypes": {name: id}, "bitsPerWeight": {id: bits}}
//
// ggmlTypes is the package's GGMLQuantizationType enum and bitsPerWeight its
// GGML_QUANT_SIZES table (from the internal chunk that exports it; null if a
// later version moves it): the test checks our type ids and block sizes
// against them.
//
// 64-bit integers (JS BigInt) are printed as decimal strings so that no value
// is rounded through a double; other numbers are JSON numbers (a double prints
// its shortest round-trip form, so float32/float64 values compare exactly).
import { readdirSync, readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [prefix, file] = process.argv.slice(2);
if (!prefix || !file) {
  console.error("usage: node gguf_ref.mjs NPM_PREFIX FILE.gguf");
  process.exit(2);
}
const dist = join(prefix, "node_modules", "@huggingface", "gguf", "dist");
const { gguf, GGMLQuantizationType } = await import(pathToFileURL(join(dist, "index.mjs")).href);
let bitsPerWeight = null;
for (const f of readdirSync(dist)) {
  // only the library chunks: dist/cli.mjs would run the command line tool
  if (!f.startsWith("chunk-") || !f.endsWith(".mjs")) continue;
  if (!readFileSync(join(dist, f), "utf8").includes("GGML_QUANT_SIZES,")) continue;
  const m = await import(pathToFileURL(join(dist, f)).href);
  if (m.GGML_QUANT_SIZES) bitsPerWeight = m.GGML_QUANT_SIZES;
}
const r = await gguf(file, { allowLocalFile: true, typedMetadata: true });
const out = {
  tensorDataOffset: r.tensorDataOffset,
  metadata: r.typedMetadata,
  tensors: r.tensorInfos,
  ggmlTypes: Object.fromEntries(Object.entries(GGMLQuantizationType).filter(([, v]) => typeof v === "number")),
  bitsPerWeight,
};
process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v)));
