import * as fc from 'fast-check';
import { promises as fs } from 'node:fs';
import { budgetTimeout, fuzzParameters, fuzzRuns, logSlowestCase } from './fuzzing';
import {
  externalDataProperty,
  onnxRewriteProperty,
  sampleModelSeed,
  scratchFolder,
  tinyModelSeeds,
} from './onnx.fuzz';

describe('fuzz: ONNX read and rewrite', () => {
  afterEach(logSlowestCase);
  let scratch: string;
  before(async () => {
    scratch = await scratchFolder();
  });
  after(() => fs.rm(scratch, { recursive: true, force: true }));

  it('tiny models: readOnnxModel + exposeIntermediates throw only EkkaErrors', async function () {
    this.timeout(budgetTimeout(fuzzRuns(400), 10));
    await fc.assert(onnxRewriteProperty(tinyModelSeeds(), scratch), fuzzParameters(400));
  });

  it('the 1 MB sample model: readOnnxModel + exposeIntermediates throw only EkkaErrors', async function () {
    // About 20 ms a case: fewer runs in the short budget.
    this.timeout(budgetTimeout(fuzzRuns(100), 60));
    await fc.assert(onnxRewriteProperty([sampleModelSeed()], scratch), fuzzParameters(100));
  });

  it('external data entries from the edges: read, load, inline and rewrite throw only EkkaErrors', async function () {
    this.timeout(budgetTimeout(fuzzRuns(200), 10));
    await fc.assert(externalDataProperty(scratch), fuzzParameters(200));
  });
});
