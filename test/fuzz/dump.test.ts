import * as fc from 'fast-check';
import {
  manifestProperty,
  openDumpProperty,
  prepareDumpFixture,
  safetensorsHeaderProperty,
  type DumpFixture,
} from './dump.fuzz';
import { budgetTimeout, fuzzParameters, fuzzRuns, logSlowestCase } from './fuzzing';

describe('fuzz: dump reader', () => {
  afterEach(logSlowestCase);
  it('parseSafetensorsHeader throws only EkkaErrors and accepts only consistent headers', function () {
    this.timeout(budgetTimeout(fuzzRuns(400), 5));
    fc.assert(safetensorsHeaderProperty(), fuzzParameters(400));
  });

  it('parseManifest throws only EkkaErrors and accepts no duplicate names', function () {
    this.timeout(budgetTimeout(fuzzRuns(300), 5));
    fc.assert(manifestProperty(), fuzzParameters(300));
  });

  describe('openDump on a damaged copy of a valid dump', () => {
    let fixture: DumpFixture;
    before(async () => {
      fixture = await prepareDumpFixture();
    });
    after(() => fixture?.cleanup());

    it('throws only EkkaErrors, and reads what it opens', async function () {
      this.timeout(budgetTimeout(fuzzRuns(200), 20));
      await fc.assert(openDumpProperty(fixture), fuzzParameters(200));
    });
  });
});
