import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { writePerfModel, type PerfModelShape } from '../../native-bridge/bench/perfModel';

/** Big enough that a diagnosis takes seconds on 2 cores, so it can be cancelled or killed mid-run. */
const SLOW_SHAPE: PerfModelShape = {
  hidden: 512,
  intermediate: 1408,
  heads: 8,
  layers: 8,
  vocab: 1024,
  sequence: 384,
};

/** Writes (once per process) a target/reference pair and ekka.json files for both capture modes. */
export async function slowDiagnosis(): Promise<{ partitioned: string; wholeGraph: string }> {
  const dir = path.join(os.tmpdir(), 'ekka-slow-model-v1');
  await fs.mkdir(dir, { recursive: true });
  await writePerfModel(path.join(dir, 'reference.onnx'), SLOW_SHAPE);
  await writePerfModel(path.join(dir, 'target.onnx'), SLOW_SHAPE, 4);
  const ids = Array.from({ length: SLOW_SHAPE.sequence }, (_, i) => (i * 7919) % SLOW_SHAPE.vocab);
  await fs.writeFile(
    path.join(dir, 'input.json'),
    JSON.stringify({ input_ids: { dtype: 'int64', shape: [1, SLOW_SHAPE.sequence], data: ids } }),
  );
  const write = async (capture: string) => {
    const file = path.join(dir, `${capture}.json`);
    await fs.writeFile(
      file,
      JSON.stringify({
        target: { model: 'target.onnx', optimization: 'disabled' },
        reference: { model: 'reference.onnx', optimization: 'disabled' },
        input: 'input.json',
        capture,
      }),
    );
    return file;
  };
  return { partitioned: await write('partitioned'), wholeGraph: await write('whole-graph') };
}
