import type { Suspect } from '../diagnosis/result';

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
