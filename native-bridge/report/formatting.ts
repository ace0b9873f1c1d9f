import type { DiagnosisResult, Suspect } from '../diagnosis/result';
import { inheritsError } from '../localize/suspects';
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
  if (suspect.under === 'graft') {
    return `${ratio}; run on the reference's inputs it still reads ${formatRatio(Math.exp(suspect.ownJump))}: the error is its own`;
  }
  if (suspect.ratio >= threshold) return ratio;
  const under = suspect.under === 'threshold' ? 'the threshold' : 'the analytic floor';
  return `${ratio}, under ${under} but ×${formatRatio(Math.exp(suspect.ownJump))} the error it reads`;
}

/**
 * The module outputs above the threshold whose error came in with their inputs, in one sentence
 * (undefined when there are none): the reports name them as inherited so no one reads them as
 * suspects.
 */
export function inheritedSummary(
  result: Pick<DiagnosisResult, 'series' | 'thresholds'>,
): string | undefined {
  const threshold = result.thresholds.ratio;
  const inherited = result.series.filter((p) => inheritsError(p, threshold));
  if (inherited.length === 0) return undefined;
  const first = inherited[0]!;
  const last = inherited[inherited.length - 1]!;
  const span = inherited.length === 1 ? `#${first.index}` : `#${first.index}–#${last.index}`;
  return `${inherited.length} module output${inherited.length === 1 ? '' : 's'} above the threshold (${span}) only carry the error they read (each multiplies it by less than ×${formatRatio(threshold)}): inherited, not suspects.`;
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

/**
 * What running the top suspect on the reference's inputs showed (its `ownRatio`: a partitioned
 * ONNX run's segment, a PyTorch leaf module's graft), `name` as the report writes module names.
 * A segment still diverges at the threshold; a leaf module at `localRatio`, the bar its own ratio
 * is ranked by.
 */
export function ownRatioSentence(
  top: Pick<Suspect, 'ownRatio'>,
  result: Pick<DiagnosisResult, 'thresholds' | 'runs'>,
  name: string,
): string | undefined {
  if (top.ownRatio === undefined) return undefined;
  const segments = result.runs.target.segments > 1;
  const bar = segments
    ? result.thresholds.ratio
    : (result.thresholds.localRatio ?? result.thresholds.ratio);
  const starts = top.ownRatio >= bar;
  const where = segments ? 'its segment' : 'its own code';
  return (
    `Run on the reference's inputs, ${name} ${starts ? 'still diverges' : 'agrees'} (ratio ${formatRatio(top.ownRatio)}): ` +
    (starts ? `the error starts in ${where}.` : 'its error came in with its inputs.')
  );
}

/**
 * Where the drill-down (PyTorch runs) found the top suspect's own error to start: its first op
 * that diverges while what it read agrees, and what the reference computes just before it that
 * the target leaves out. `location` renders a file and line (each report quotes its own way);
 * `name` is the module as the report writes it.
 */
export function statementSentence(
  top: Pick<Suspect, 'drillDown' | 'statement'>,
  name: string,
  location: (file: string, line: number) => string,
  text: (plain: string) => string = (plain) => plain,
): string | undefined {
  const drill = top.drillDown;
  if (!drill || drill.first === undefined || !top.statement) return undefined;
  const op = drill.ops[drill.first]!;
  const where = `${text(op.op)} at ${location(top.statement.file, top.statement.line)} (ratio ${formatRatio(top.statement.ratio)})`;
  const ran = text(drill.module === '' ? 'the root module' : drill.module);
  const sentence = drill.inputsAgree
    ? `Op by op on the reference's arguments (${ran} run again), ${name}'s error starts at ${where}: what it read agrees.`
    : `Op by op on the reference's arguments (${ran} run again), the first op of ${name} that diverges is ${where}; what it read diverges too.`;
  const missing = (drill.missing ?? [])
    .map((m) =>
      m.statement ? `${text(m.op)} (${location(m.statement.file, m.statement.line)})` : text(m.op),
    )
    .slice(0, 3);
  return missing.length > 0
    ? `${sentence} Just before it the reference computes ${missing.join(', ')}, which the target has no counterpart for.`
    : sentence;
}
