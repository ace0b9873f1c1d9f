import type { FloatArray } from '../tensors/dtypes';

/**
 * A module's error map: |target − reference| reduced to at most rows × cols cells (tokens ×
 * channels, each cell the largest error in its bin). `values` are float32 little-endian bytes.
 */
export interface ErrorMap {
  rows: number;
  cols: number;
  /** Tokens (all leading dimensions) and channels (last dimension) per cell. */
  rowsPerCell: number;
  colsPerCell: number;
  shape: number[];
  values: Uint8Array;
}

/** Cells per side at most: enough to see a token or channel pattern, small enough to send. */
export const ERROR_MAP_MAX_CELLS = 256;

/**
 * Reduces |target − reference| of one activation to a tokens × channels map: the last dimension is
 * channels, all leading dimensions are flattened into tokens, and each side is binned to at most
 * `maxCells` cells holding the largest error in the bin. A NaN or Inf mismatch counts as Infinity,
 * so it shows instead of vanishing.
 */
export function buildErrorMap(
  shape: readonly number[],
  target: FloatArray,
  reference: FloatArray,
  maxCells = ERROR_MAP_MAX_CELLS,
): ErrorMap {
  const channels = shape.length > 0 ? (shape[shape.length - 1] ?? 1) : 1;
  const tokens = channels > 0 ? Math.floor(target.length / channels) : 0;
  const colsPerCell = Math.max(1, Math.ceil(channels / maxCells));
  const rowsPerCell = Math.max(1, Math.ceil(tokens / maxCells));
  const cols = Math.ceil(channels / colsPerCell);
  const rows = Math.ceil(tokens / rowsPerCell);
  const values = new Float32Array(rows * cols);
  for (let token = 0; token < tokens; token++) {
    const rowBase = Math.floor(token / rowsPerCell) * cols;
    const base = token * channels;
    for (let channel = 0; channel < channels; channel++) {
      const t = target[base + channel]!;
      const r = reference[base + channel]!;
      let error = Math.abs(t - r);
      // Inf − Inf and NaN give NaN: equal non-finite values agree, anything else is the worst.
      if (Number.isNaN(error))
        error = t === r || (Number.isNaN(t) && Number.isNaN(r)) ? 0 : Infinity;
      const cell = rowBase + Math.floor(channel / colsPerCell);
      if (error > values[cell]!) values[cell] = error;
    }
  }
  return {
    rows,
    cols,
    rowsPerCell,
    colsPerCell,
    shape: [...shape],
    values: new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
  };
}
