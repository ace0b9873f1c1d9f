/**
 * Fuzz properties of the ekka.json validator: random JSON values and mutations of the sample
 * configs go through validateDiagnosisContent, resolveConfig, resolveCapturedConfig and (as file
 * text) loadDiagnosis. Anything may be refused, but only with an EkkaError of kind 'config'.
 */
import * as assert from 'node:assert/strict';
import * as fc from 'fast-check';
import { promises as fs, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadDiagnosis, resolveCapturedConfig } from '../../native-bridge/diagnosis/capturedConfig';
import { resolveConfig, validateDiagnosisContent } from '../../native-bridge/diagnosis/config';
import { EkkaError } from '../../native-bridge/errors';
import {
  applyByteMutations,
  applyJsonMutations,
  byteMutations,
  jsonMutations,
  typedOutcome,
  typedOutcomeAsync,
  type Outcome,
} from './fuzzing';

/** A valid config and the folder its paths are relative to. */
export interface SampleConfig {
  name: string;
  baseDir: string;
  content: Record<string, unknown>;
}

/** Every sample ekka.json (ONNX and PyTorch runs), and a dump run with mapping rules. */
export function sampleConfigs(): SampleConfig[] {
  const samples: SampleConfig[] = [];
  for (const root of ['samples/tiny-llama/cases', 'samples/serving-llama/cases']) {
    for (const folder of readdirSync(root).sort()) {
      const baseDir = path.resolve(root, folder);
      for (const file of readdirSync(baseDir)
        .filter((f) => /^ekka.*\.json$/.test(f))
        .sort()) {
        const content = JSON.parse(readFileSync(path.join(baseDir, file), 'utf8')) as Record<
          string,
          unknown
        >;
        samples.push({ name: `${root}/${folder}/${file}`, baseDir, content });
      }
    }
  }
  samples.push({
    name: 'dump with rules',
    baseDir: path.resolve('samples/serving-llama/cases/control-tp1'),
    content: {
      target: { kind: 'dump', dump: '.' },
      reference: { kind: 'pytorch', factory: '../../reference.py:build', device: 'cpu' },
      mapping: {
        preset: 'qwen2',
        rules: [
          {
            target: 'model.layers.{N}.self_attn.qkv_proj',
            reference: ['model.layers.{N}.self_attn.q_proj', 'k_proj|v_proj'],
            referenceCombine: 'concat',
            referencePermute: [0, 2, 1],
          },
        ],
        ignore: ['model.rotary_emb'],
        targetCallTokens: [
          [0, 16],
          [16, 17],
        ],
      },
      thresholds: { ratio: 3, minRun: 2, maxSuspects: 10 },
    },
  });
  return samples;
}

/** The paths a resolved run names (model, factory, dump folder), whatever its kind. */
function runPaths(run: object): string[] {
  const fields = run as Record<string, unknown>;
  const nested = (fields.options ?? {}) as Record<string, unknown>;
  return [fields.model, fields.factoryFile, fields.dump, nested.model].filter(
    (value): value is string => typeof value === 'string',
  );
}

function checkConfigError(outcome: Outcome<unknown>): void {
  if (!outcome.ok) assert.equal((outcome.error as EkkaError).kind, 'config', outcome.error.message);
}

/** A sample, mutated; or, one time in five, any JSON value. */
function configContents(samples: readonly SampleConfig[]) {
  return fc.oneof(
    {
      weight: 4,
      arbitrary: fc
        .tuple(fc.nat(samples.length - 1), jsonMutations())
        .map(([index, mutations]) => ({
          sample: samples[index]!,
          content: applyJsonMutations(samples[index]!.content, mutations),
        })),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(fc.nat(samples.length - 1), fc.jsonValue())
        .map(([index, content]) => ({ sample: samples[index]!, content: content as unknown })),
    },
  );
}

/**
 * validateDiagnosisContent, then both resolvers, on the same content: each either accepts it or
 * throws an EkkaError of kind 'config'. What they accept has absolute paths.
 */
export function configProperty(samples: readonly SampleConfig[]) {
  return fc.asyncProperty(configContents(samples), async ({ sample, content }) => {
    const before = JSON.stringify(content);
    checkConfigError(typedOutcome(() => validateDiagnosisContent(content, 'ekka.json')));

    const onnx = await typedOutcomeAsync(() => resolveConfig(content, sample.baseDir, 'ekka.json'));
    checkConfigError(onnx);
    if (onnx.ok) {
      assert.ok(path.isAbsolute(onnx.value.target.model));
      assert.ok(path.isAbsolute(onnx.value.input));
    }

    const captured = await typedOutcomeAsync(() =>
      resolveCapturedConfig(content, sample.baseDir, 'ekka.json'),
    );
    checkConfigError(captured);
    if (captured.ok) {
      for (const run of [captured.value.target, captured.value.reference]) {
        for (const file of runPaths(run)) assert.ok(path.isAbsolute(file), file);
      }
    }
    // Validation fills defaults into a copy, never into the caller's object.
    assert.equal(JSON.stringify(content), before, 'the content was changed');
  });
}

/**
 * loadDiagnosis on the bytes of a sample (paths made absolute) after byte mutations: an EkkaError
 * of kind 'config' naming the file, or a config.
 */
export function loadDiagnosisProperty(samples: readonly SampleConfig[], scratch: string) {
  const texts = samples.map((sample) => {
    const content = structuredClone(sample.content);
    for (const key of ['target', 'reference', 'referenceLowPrecision'] as const) {
      const run = content[key] as Record<string, string> | undefined;
      for (const field of ['model', 'dump'] as const) {
        if (run?.[field]) run[field] = path.resolve(sample.baseDir, run[field]);
      }
      if (run?.factory) {
        const [file, fn] = run.factory.split(':');
        run.factory = `${path.resolve(sample.baseDir, file!)}:${fn}`;
      }
    }
    if (typeof content.input === 'string')
      content.input = path.resolve(sample.baseDir, content.input);
    delete content.source;
    return new TextEncoder().encode(JSON.stringify(content, null, 2));
  });
  const longest = Math.max(...texts.map((t) => t.length));
  let counter = 0;
  return fc.asyncProperty(
    fc.nat(texts.length - 1),
    byteMutations(longest),
    async (index, mutations) => {
      const file = path.join(scratch, `ekka-${counter++}.json`);
      await fs.writeFile(file, applyByteMutations(texts[index]!, mutations));
      try {
        const outcome = await typedOutcomeAsync(() => loadDiagnosis(file));
        checkConfigError(outcome);
        if (!outcome.ok) assert.equal((outcome.error as EkkaError).file, file);
      } finally {
        await fs.rm(file, { force: true });
      }
    },
  );
}

export function scratchFolder(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'ekka-fuzz-config-'));
}
