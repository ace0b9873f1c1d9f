import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { EkkaError } from '../errors';
import { isCaptured, type AnyDiagnosisConfig, type CapturedRunConfig } from './capturedConfig';

/** Every file and folder a resolved diagnosis reads, by the ekka.json key that names it. */
function pathsOf(config: AnyDiagnosisConfig): [string, string][] {
  const found: [string, string][] = [];
  if (isCaptured(config)) {
    const runs: [string, CapturedRunConfig | undefined][] = [
      ['target', config.target],
      ['reference', config.reference],
      ['referenceLowPrecision', config.referenceLowPrecision],
    ];
    for (const [key, run] of runs) {
      if (!run) continue;
      if (run.kind === 'dump') found.push([`${key}.dump`, run.dump]);
      else if (run.kind === 'onnx')
        found.push([`${key}.model`, run.options.model], ['input', run.input]);
      else if (run.hfModel) found.push([`${key}.hfModel`, run.hfModel.directory]);
      else found.push([`${key}.factory`, run.factoryFile]);
    }
    return found;
  }
  found.push(['target.model', config.target.model], ['reference.model', config.reference.model]);
  if (config.referenceLowPrecision) {
    found.push(['referenceLowPrecision.model', config.referenceLowPrecision.model]);
  }
  found.push(['input', config.input]);
  if (config.source?.entryFile) found.push(['source.entry', config.source.entryFile]);
  for (const folder of config.source?.searchPaths ?? []) found.push(['source.searchPaths', folder]);
  return found;
}

/**
 * Refuses a diagnosis that reads anything outside `root` (the workspace folder), links resolved:
 * an ekka.json from elsewhere must not point the engine at the user's other files.
 */
export async function confineToFolder(config: AnyDiagnosisConfig, root: string): Promise<void> {
  const realRoot = await fs.realpath(root);
  for (const [key, file] of pathsOf(config)) {
    const real = await fs.realpath(file).catch(() => path.resolve(file));
    const relative = path.relative(realRoot, real);
    if (relative === '..' || relative.startsWith(`..${path.sep}`) || path.isAbsolute(relative)) {
      throw new EkkaError(
        'config',
        `${key}: ${file} is outside the workspace folder ${root}; Ekka reads only files inside it`,
        config.file,
      );
    }
  }
}
