import type { Suspect } from '../diagnosis/result';
import type { OnnxRunInfo } from '../runners/onnxRunner';

/** Numbers and names as every report writes them (text, HTML, Markdown). */

/** Fixed for ordinary magnitudes, exponent for large and tiny ones. */
export function formatRatio(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  return magnitude >= 1e4 || magnitude < 1e-2 ? value.toExponential(2) : value.toFixed(2);
}

/** The root module has the empty path. */
export function moduleName(module: string): string {
  return module || '(root)';
}

/**
 * A local divergence's evidence as the verdict states it: its ratio and, when that stays under
 * the threshold (a faint local divergence, or one the analytic floor hides), how much it
 * multiplies what it reads.
 */
export function localEvidence(
  suspect: Pick<Suspect, 'ratio' | 'ownJump' | 'under'>,
  threshold: number,
): string {
  const ratio = `ratio ${formatRatio(suspect.ratio)}`;
  if (suspect.ratio >= threshold) return ratio;
  const under = suspect.under === 'threshold' ? 'the threshold' : 'the analytic floor';
  return `${ratio}, under ${under} but ×${formatRatio(Math.exp(suspect.ownJump))} the error it reads`;
}

/**
 * How a run executed, in its own engine's terms: ONNX Runtime's graph optimization and capture
 * mode, or a PyTorch capture's module hooks, or a dump read from disk.
 */
export function runTerms(info: OnnxRunInfo): {
  engine: string;
  optimization: string;
  capture: string;
} {
  if (info.framework === 'pytorch') {
    return { engine: 'PyTorch', optimization: 'eager', capture: 'module hooks' };
  }
  if (info.framework === 'dump') return { engine: 'dump', optimization: '—', capture: 'dump file' };
  return {
    engine: 'ONNX Runtime',
    optimization: info.optimization,
    capture:
      info.capture === 'partitioned' ? `partitioned, ${info.segments} segments` : 'whole graph',
  };
}
