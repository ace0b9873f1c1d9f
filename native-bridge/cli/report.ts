import * as path from 'node:path';
import type { DiagnosisResult } from '../diagnosis/result';
import type { KernelLocation } from '../source/cppLocator';
import {
  inheritedSummary,
  localEvidence,
  ownRatioSentence,
  runTerms,
  statementSentence,
} from '../report/formatting';

const fmt = (value: number): string =>
  value >= 1e4 || (value > 0 && value < 1e-2) ? value.toExponential(2) : value.toFixed(2);

const moduleName = (module: string): string => module || '(root)';

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, col) => cell.padEnd(widths[col]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

const KERNEL_KINDS: Record<KernelLocation['kind'], string> = {
  'cuda-kernel': 'CUDA kernel',
  function: 'no kernel launch found',
  registration: 'registration; its function was not found',
  'ort-custom-op': 'ONNX Runtime custom op',
};

/** `kernel: csrc/layernorm_kernels.cu:42 rms_norm_kernel (launched by rms_norm, line 80)`. */
function kernelLine(kernel: KernelLocation, file: (path: string) => string): string {
  const launched = kernel.launches?.[0];
  if (!launched) {
    return `kernel: ${file(kernel.file)}:${kernel.line} ${kernel.symbol} (${KERNEL_KINDS[kernel.kind]})`;
  }
  const host =
    launched.file === kernel.file ? `line ${kernel.line}` : `${file(kernel.file)}:${kernel.line}`;
  const others = kernel.launches!.length - 1;
  const more = others > 0 ? `; ${others} more kernel${others > 1 ? 's' : ''}` : '';
  return `kernel: ${file(launched.file)}:${launched.line} ${launched.symbol} (launched by ${kernel.symbol}, ${host}${more})`;
}

/**
 * The mapping report of a cross-framework diagnosis: the pairs that needed alignment (all pairs
 * with --verbose) with their transforms, and every unmatched record with its reason.
 */
export function formatMapping(
  mapping: NonNullable<DiagnosisResult['mapping']>,
  verbose: boolean,
): string[] {
  const lines: string[] = [];
  const aligned = mapping.pairs.filter((p) => p.transforms.length > 0 || p.origin !== 'same path');
  lines.push(
    `Mapping (preset ${mapping.preset}): ${mapping.pairs.length} pairs, ${aligned.length} with rules or transforms; ${mapping.unmatched.length} unmatched`,
  );
  for (const pair of verbose ? mapping.pairs : aligned) {
    lines.push(`  ${pair.key}  ←  ${pair.reference.join(' + ')}  [${pair.origin}]`);
    for (const step of pair.transforms) lines.push(`      ${step}`);
  }
  const target = mapping.unmatched.filter((u) => u.side === 'target');
  const reference = mapping.unmatched.filter((u) => u.side === 'reference');
  for (const [side, list] of [
    ['target', target],
    ['reference', reference],
  ] as const) {
    if (list.length === 0) continue;
    lines.push(`  unmatched ${side} records (${list.length}):`);
    // Identical reasons are grouped so a long run of shards or ignored modules stays readable.
    const byReason = new Map<string, string[]>();
    for (const u of list) byReason.set(u.reason, [...(byReason.get(u.reason) ?? []), u.key]);
    for (const [reason, keys] of byReason) {
      const shown = verbose ? keys : keys.slice(0, 3);
      const more = keys.length > shown.length ? ` … and ${keys.length - shown.length} more` : '';
      lines.push(`    ${shown.join(', ')}${more}: ${reason}`);
    }
  }
  return lines;
}

/** `cpu, float16, optimization: all, 4 segments`, or `cpu, bfloat16, PyTorch module hooks`. */
function describeRun(info: DiagnosisResult['runs']['target'], kept: string): string {
  const terms = runTerms(info);
  const how =
    info.framework === 'pytorch' || info.framework === 'dump'
      ? `${terms.engine} ${terms.capture}`
      : `optimization: ${terms.optimization}, ${info.capture === 'partitioned' ? `${info.segments} segments` : 'whole graph'}`;
  return `${info.executionProvider}, ${info.precision}${kept}, ${how}`;
}

/** The human-readable summary the CLI prints. */
export function formatReport(result: DiagnosisResult, cwd: string, verbose = false): string {
  const lines: string[] = [];
  const rel = (file: string) => path.relative(cwd, file) || file;
  // Source files in the result are relative to its sourceBase; printed, relative to cwd like the rest.
  const sourceFile = (file: string) =>
    result.sourceBase ? rel(path.resolve(result.sourceBase, file)) : file;
  lines.push(`Ekka diagnosis${result.config ? ` — ${rel(result.config)}` : ''}`);
  const runs: [string, DiagnosisResult['runs']['target'] | undefined][] = [
    ['target', result.runs.target],
    ['reference', result.runs.reference],
    ['reference (low precision)', result.runs.referenceLowPrecision],
  ];
  for (const [role, info] of runs) {
    if (!info) continue;
    const kept = info.keptFloat32?.length
      ? `; kept in float32: ${info.keptFloat32.join(', ')}`
      : '';
    lines.push(`  ${role.padEnd(26)}${rel(info.model)}  (${describeRun(info, kept)})`);
  }
  const noise =
    result.noise.source === 'low-precision-reference'
      ? 'measured: ‖X_R − Y_R‖ of the low-precision reference'
      : `analytic floor ${result.noise.floorFactor}·u(${result.noise.floorDType})·‖reference‖`;
  lines.push(`  ${'noise'.padEnd(26)}${noise}`);
  lines.push(
    `  ${'compared'.padEnd(26)}${result.series.length} module outputs, ${result.comparedOps} ops; ${result.unmatched.length} unmatched`,
  );
  if (result.mapping) {
    lines.push('', ...formatMapping(result.mapping, verbose), '');
  } else {
    for (const u of result.unmatched.slice(0, 5)) {
      lines.push(`    unmatched ${u.side} ${u.key} (${u.node}): ${u.reason}`);
    }
    if (result.unmatched.length > 5)
      lines.push(`    … ${result.unmatched.length - 5} more in the JSON result`);
  }
  for (const warning of result.warnings) lines.push(`  warning: ${warning}`);
  lines.push('');

  if (verbose) {
    const rows = [['#', 'module', 'op', 'ratio', 'rel. L2', 'cosine', 'input ratio']];
    for (const p of result.series) {
      rows.push([
        String(p.index),
        p.call > 1 ? `${moduleName(p.module)} (call ${p.call})` : moduleName(p.module),
        p.op,
        fmt(p.ratio),
        fmt(p.relativeL2Error),
        p.cosineSimilarity.toFixed(6),
        fmt(p.inputRatio),
      ]);
    }
    lines.push(table(rows), '');
  }

  if (!result.changePoint && result.suspects.length === 0) {
    const worst = result.series.reduce<DiagnosisResult['series'][number] | undefined>(
      (best, p) => (!best || p.ratio > best.ratio ? p : best),
      undefined,
    );
    lines.push(
      `No divergence above noise (threshold ${result.thresholds.ratio})` +
        (worst
          ? `: the largest ratio is ${fmt(worst.ratio)} at ${moduleName(worst.module)}.`
          : '.'),
    );
    if (result.spikes.length)
      lines.push(
        `Isolated spikes, not persistent: ${result.spikes.map((i) => `#${i}`).join(', ')}.`,
      );
  } else {
    const cp = result.changePoint;
    const top = result.suspects[0];
    if (!cp) {
      lines.push(
        `Local divergence at #${top!.index}: ${moduleName(top!.module)} (${localEvidence(top!, result.thresholds.ratio)}); it does not persist downstream, so there is no change point.`,
        '',
      );
    } else {
      lines.push(
        `Change point at #${cp.index}: ${moduleName(cp.module)} (ratio ${fmt(cp.ratio)})`,
        '',
      );
    }
    if (cp && top && top.index < cp.index) {
      lines.push(
        `The top suspect's output (#${top.index}) diverged earlier; the modules reading it carry its error from #${cp.index} on.`,
        '',
      );
    }
    const inherited = inheritedSummary(result);
    if (inherited) lines.push(inherited, '');
    const rows = [['rank', 'module', 'op', 'ratio', 'own jump', 'confidence', 'source']];
    for (const s of result.suspects) {
      const source = s.source
        ? `${sourceFile(s.source.file)}:${s.source.line} (${s.source.symbol})`
        : '—';
      const point = result.series[s.index];
      const nonFinite =
        point && point.target.nan + point.target.inf > 0
          ? ` (target: ${point.target.nan} NaN, ${point.target.inf} Inf)`
          : '';
      rows.push([
        String(s.rank),
        moduleName(s.module),
        `${s.op} ${s.node}`,
        `${fmt(s.ratio)}${nonFinite}`,
        `×${fmt(Math.exp(s.ownJump))}`,
        s.confidence.toFixed(2),
        source,
      ]);
    }
    // Each suspect's kernel, when it has one, on its own line under the suspect's row.
    const [header, ...suspectRows] = table(rows).split('\n');
    lines.push(header!);
    result.suspects.forEach((s, i) => {
      lines.push(suspectRows[i]!);
      if (s.kernel) lines.push(`      ${kernelLine(s.kernel, sourceFile)}`);
    });
    const own = top && ownRatioSentence(top, result, moduleName(top.module));
    if (own) lines.push('', own);
    const statement =
      top && statementSentence(top, moduleName(top.module), (f, l) => `${sourceFile(f)}:${l}`);
    if (statement) lines.push('', statement);
  }
  lines.push('', `Finished in ${(result.timings.totalMs / 1000).toFixed(2)} s.`);
  return lines.join('\n');
}
