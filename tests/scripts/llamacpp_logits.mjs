// llamacpp_logits.mjs — llama.cpp's (node-llama-cpp's) view of a GGUF, for
// tests/test_export_gguf.py:
//   node llamacpp_logits.mjs NPM_DIR MODEL.gguf[,MODEL2.gguf...] IDS_JSON [TEXT_FILE...]
// IDS_JSON: a JSON array of token ids, evaluated as one sequence from
// position 0 through node-llama-cpp's controlledEvaluate (the tokenizer is
// bypassed). Prints one JSON object: {"logprobs": [[...vocab] per position],
// "tokens": llama.cpp's tokenization of each TEXT_FILE (model.tokenize: no
// BOS), "bos", "eos": its special ids}. The probabilities are the full softmax (temperature 1,
// top-k/top-p/min-p off), so log(p) = log_softmax(logits) in float32.
// CPU only, 1 thread.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const [npmDir, modelPath, idsJson, ...textFiles] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(npmDir), "node_modules", "x.js"));
const { getLlama, LlamaLogLevel } = await import(require.resolve("node-llama-cpp"));

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const ids = JSON.parse(idsJson);

async function evaluate(modelPath) {
  const model = await llama.loadModel({ modelPath });
  // KV cache in F32 (llama.cpp's default F16 would round K and V to 11 bits),
  // no flash attention: the plain float32 graph.
  const context = await model.createContext({
    contextSize: 256, threads: 1, batchSize: 256, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
  });
  const seq = context.getSequence();
  const opts = { temperature: 1, topK: 0, topP: 1, minP: 0 };
  const input = ids.map((t) => [t, { generateNext: { probabilities: true, options: opts } }]);
  const res = await seq.controlledEvaluate(input);
  const nv = model.tokens.vocabSize ?? model.fileInsights?.tokens?.vocabSize;
  const logprobs = res.map((r, i) => {
    if (!r || !r.next || !r.next.probabilities) throw new Error(`no probabilities at position ${i}`);
    const row = new Array(nv).fill(null);
    for (const [tok, p] of r.next.probabilities) row[tok] = Math.log(p);
    return row;
  });
  const out = { logprobs };
  out.tokens = textFiles.map((f) => model.tokenize(readFileSync(f, "utf8")).map(Number));
  out.bos = model.tokens.bos;
  out.eos = model.tokens.eos;
  await context.dispose();
  await model.dispose();
  return out;
}

// MODEL may list several files separated by commas (one node start for all):
// then a JSON array of the objects above, in order.
const paths = modelPath.split(",");
const outs = [];
for (const p of paths) outs.push(await evaluate(p));
process.stdout.write(JSON.stringify(paths.length > 1 ? outs : outs[0]));
await llama.dispose();
