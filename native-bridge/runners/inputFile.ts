import { EkkaError } from '../errors';
import { readJsonFile } from '../jsonFile';

/** One model input as written in an inputs file: `{ "dtype", "shape", "data" }` (flat, row-major). */
export interface InputTensor {
  name: string;
  dtype: InputDType;
  shape: number[];
  data: number[];
}

export const INPUT_DTYPES = ['float32', 'float64', 'int64', 'int32', 'bool'] as const;
export type InputDType = (typeof INPUT_DTYPES)[number];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates the parsed content of an inputs file; every message names the input and the field. */
export function parseInputs(content: unknown, file: string): InputTensor[] {
  if (!isRecord(content)) {
    throw new EkkaError(
      'input',
      'expected an object mapping input names to { dtype, shape, data }',
      file,
    );
  }
  const inputs: InputTensor[] = [];
  for (const [name, entry] of Object.entries(content)) {
    const where = `input "${name}"`;
    if (!isRecord(entry))
      throw new EkkaError('input', `${where}: expected { dtype, shape, data }`, file);
    const { dtype, shape, data } = entry;
    if (typeof dtype !== 'string' || !(INPUT_DTYPES as readonly string[]).includes(dtype)) {
      throw new EkkaError(
        'input',
        `${where}: dtype must be one of ${INPUT_DTYPES.join(', ')} (got ${JSON.stringify(dtype)})`,
        file,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new EkkaError('input', `${where}: shape must be a list of non-negative integers`, file);
    }
    if (
      !Array.isArray(data) ||
      !data.every((v) => typeof v === 'number' || typeof v === 'boolean')
    ) {
      throw new EkkaError('input', `${where}: data must be a flat list of numbers`, file);
    }
    const elements = (shape as number[]).reduce((a, b) => a * b, 1);
    if (elements !== data.length) {
      throw new EkkaError(
        'input',
        `${where}: shape [${shape.join(', ')}] holds ${elements} elements but data has ${data.length}`,
        file,
      );
    }
    if (dtype === 'int64' || dtype === 'int32') {
      // JSON numbers are doubles: int64 is exact up to 2^53; int32 must fit its own range.
      const [min, max] =
        dtype === 'int32'
          ? [-(2 ** 31), 2 ** 31 - 1]
          : [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER];
      const bad = data.findIndex((v) => !Number.isInteger(v) || Number(v) < min || Number(v) > max);
      if (bad >= 0) {
        throw new EkkaError(
          'input',
          `${where}: element ${bad} (${String(data[bad])}) is not an ${dtype} in [${min}, ${max}]`,
          file,
        );
      }
    }
    inputs.push({
      name,
      dtype: dtype as InputDType,
      shape: shape as number[],
      data: data.map(Number),
    });
  }
  if (inputs.length === 0) throw new EkkaError('input', 'no inputs given', file);
  return inputs;
}

export async function readInputFile(file: string): Promise<InputTensor[]> {
  const content = await readJsonFile(file, 'input');
  return parseInputs(content, file);
}
