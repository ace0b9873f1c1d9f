/**
 * The suspects table's columns at the panel's width: module names with their common prefix
 * elided (the full name on hover), and fewer columns where the panel is narrow.
 */
import type { Suspect } from '../../native-bridge/diagnosis/result';
import { formatNumber } from '../charts/divergenceFigure';

/**
 * Each name without the dotted prefix all of them share (`model.layers.` of
 * `model.layers.2.self_attn` and `model.layers.3.mlp` gives `…2.self_attn`, `…3.mlp`). A single
 * name, or names that share nothing, stay whole; a name equal to the prefix keeps its last part.
 */
export function elideCommonPrefix(names: readonly string[]): Map<string, string> {
  const shown = new Map(names.map((name) => [name, name || '(root)']));
  const distinct = [...new Set(names)];
  if (distinct.length < 2) return shown;
  const split = distinct.map((name) => name.split('.'));
  let common = 0;
  while (split.every((parts) => common < parts.length - 1 && parts[common] === split[0]![common])) {
    common++;
  }
  if (common === 0) return shown;
  for (const name of distinct) shown.set(name, `…${name.split('.').slice(common).join('.')}`);
  return shown;
}

export interface SuspectColumn {
  header: string;
  /** A CSS grid track. */
  width: string;
  text(suspect: Suspect, names: ReadonlyMap<string, string>): string;
  /** The cell's tooltip: the whole value where the cell may cut it. */
  title?(suspect: Suspect): string;
}

/** Below this width (CSS pixels) the op column goes; its value moves into the module's tooltip. */
export const NARROW_PANEL_PX = 640;

function sourceText(suspect: Suspect): string {
  const kernel = suspect.kernel && (suspect.kernel.launches?.[0] ?? suspect.kernel);
  return (
    (suspect.source ? `${suspect.source.file}:${suspect.source.line}` : '—') +
    (kernel ? ` · kernel ${kernel.symbol} ${kernel.file}:${kernel.line}` : '')
  );
}

/** The columns for a table `width` pixels wide; the last one holds the row's buttons. */
export function suspectColumns(width: number): SuspectColumn[] {
  const narrow = width < NARROW_PANEL_PX;
  const moduleTitle = (s: Suspect) => (narrow ? `${s.module || '(root)'}\n${s.op}` : s.module);
  const columns: (SuspectColumn | false)[] = [
    { header: '#', width: '2.5em', text: (s) => String(s.rank) },
    {
      header: 'module',
      width: 'minmax(6em, 3fr)',
      text: (s, names) => names.get(s.module) ?? s.module,
      title: moduleTitle,
    },
    !narrow && { header: 'op', width: 'minmax(4em, 2fr)', text: (s) => s.op, title: (s) => s.op },
    { header: 'ratio', width: '5em', text: (s) => formatNumber(s.ratio) },
    { header: 'conf.', width: '4.5em', text: (s) => s.confidence.toFixed(2) },
    {
      header: 'source',
      width: 'minmax(5em, 2fr)',
      text: sourceText,
      title: sourceText,
    },
    { header: '', width: '7em', text: () => '' },
  ];
  return columns.filter((c): c is SuspectColumn => c !== false);
}
