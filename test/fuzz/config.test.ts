import * as fc from 'fast-check';
import { promises as fs } from 'node:fs';
import { configProperty, loadDiagnosisProperty, sampleConfigs, scratchFolder } from './config.fuzz';
import { budgetTimeout, fuzzParameters, fuzzRuns, logSlowestCase } from './fuzzing';

describe('fuzz: ekka.json validation', () => {
  afterEach(logSlowestCase);
  const samples = sampleConfigs();
  let scratch: string;
  before(async () => {
    scratch = await scratchFolder();
  });
  after(() => fs.rm(scratch, { recursive: true, force: true }));

  it('validateDiagnosisContent and both resolvers throw only config EkkaErrors', async function () {
    this.timeout(budgetTimeout(fuzzRuns(300), 10));
    await fc.assert(configProperty(samples), fuzzParameters(300));
  });

  it('loadDiagnosis on damaged file text throws only config EkkaErrors naming the file', async function () {
    this.timeout(budgetTimeout(fuzzRuns(200), 10));
    await fc.assert(loadDiagnosisProperty(samples, scratch), fuzzParameters(200));
  });
});
