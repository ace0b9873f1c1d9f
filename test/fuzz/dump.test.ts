import {
  manifestProperty,
  openDumpProperty,
  prepareDumpFixture,
  safetensorsHeaderProperty,
  type DumpFixture,
} from './dump.fuzz';
import { checkProperty, logSlowestCase } from './fuzzing';

describe('fuzz: dump reader', () => {
  afterEach(logSlowestCase);
  it(
    'parseSafetensorsHeader throws only EkkaErrors and accepts only consistent headers',
    checkProperty(400, 5, safetensorsHeaderProperty),
  );

  it(
    'parseManifest throws only EkkaErrors and accepts no duplicate names',
    checkProperty(300, 5, manifestProperty),
  );

  describe('openDump on a damaged copy of a valid dump', () => {
    let fixture: DumpFixture;
    before(async () => {
      fixture = await prepareDumpFixture();
    });
    after(() => fixture?.cleanup());

    it(
      'throws only EkkaErrors, and reads what it opens',
      checkProperty(200, 20, () => openDumpProperty(fixture)),
    );
  });
});
