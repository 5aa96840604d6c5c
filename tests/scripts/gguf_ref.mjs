// gguf_ref.mjs — the independent GGUF reader for tests/test_gguf_ref.c: parses a
// file with @huggingface/gguf (npm; installed into NPM_PREFIX by npm_refs.sh)
// and prints what it read as JSON on stdout:
//
//   node gguf_ref.mjs NPM_PREFIX FILE.gguf
//
//   {"tensorDataOffset": "N", "metadata": {key: {"type": t, "subType": s, "value": v}},
//    "tensors": [{"name", "n_dims", "shape": ["N", ...], "dtype", "offset": "N"}]}
//
// 64-bit integers (JS BigInt) are printed as decimal strings so that no value
// is rounded through a double; other numbers are JSON numbers (a double prints
// its shortest round-trip form, so float32/float64 values compare exactly).
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [prefix, file] = process.argv.slice(2);
if (!prefix || !file) {
  console.error("usage: node gguf_ref.mjs NPM_PREFIX FILE.gguf");
  process.exit(2);
}
const pkg = join(prefix, "node_modules", "@huggingface", "gguf", "dist", "index.mjs");
const { gguf } = await import(pathToFileURL(pkg).href);
const r = await gguf(file, { allowLocalFile: true, typedMetadata: true });
const out = {
  tensorDataOffset: r.tensorDataOffset,
  metadata: r.typedMetadata,
  tensors: r.tensorInfos,
};
process.stdout.write(JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v)));
