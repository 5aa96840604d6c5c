// onnx_ort_run.mjs NPM_DIR OPT_LEVEL OUT.bin IN.bin N BATCH MODEL...  — run each MODEL in
// onnxruntime-node (graph optimisation OPT_LEVEL: 'disabled' or 'basic') on the
// float32 NCHW images of IN.bin ([N, 1, 28, 28]) in batches of BATCH, and
// append every model's logits (float32, [N, classes]) to OUT.bin in order.
// One node start for all models (node + ORT start-up is the slow part).
import { createRequire } from 'module';
import fs from 'fs';
import path from 'path';

const [npmDir, level, outPath, inPath, nStr, batchStr, ...models] = process.argv.slice(2);
const require = createRequire(path.join(path.resolve(npmDir), 'node_modules', 'x.js'));
const ort = require('onnxruntime-node');
const n = Number(nStr), batch = Number(batchStr), px = 28 * 28;
const buf = fs.readFileSync(inPath);
const images = new Float32Array(buf.buffer, buf.byteOffset, n * px);
const out = fs.openSync(outPath, 'w');
for (const m of models) {
  const session = await ort.InferenceSession.create(m, { graphOptimizationLevel: level, intraOpNumThreads: 1 });
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const x = new ort.Tensor('float32', images.slice(i * px, (i + b) * px), [b, 1, 28, 28]);
    const r = await session.run({ [session.inputNames[0]]: x });
    const y = r[session.outputNames[0]].data;
    fs.writeSync(out, Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  }
}
fs.closeSync(out);
