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
  /** Long names wrap, at their separators only (`.`, `/`, `:`), never inside a word. */
  breakable?: boolean;
  /** The cell's tooltip: the whole value where the cell may cut it. */
  title?(suspect: Suspect): string;
}

/** Below this width (CSS pixels) the op column goes; its value moves into the module's tooltip. */
export const NARROW_PANEL_PX = 640;
/** Below this width the source column goes too; the module's tooltip holds it. */
export const VERY_NARROW_PANEL_PX = 440;

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
  const veryNarrow = width < VERY_NARROW_PANEL_PX;
  const moduleTitle = (s: Suspect) =>
    [s.module || '(root)', ...(narrow ? [s.op] : []), ...(veryNarrow ? [sourceText(s)] : [])].join(
      '\n',
    );
  const columns: (SuspectColumn | false)[] = [
    { header: '#', width: '2.5em', text: (s) => String(s.rank) },
    {
      header: 'module',
      width: 'minmax(6em, 3fr)',
      breakable: true,
      text: (s, names) => names.get(s.module) ?? s.module,
      title: moduleTitle,
    },
    !narrow && { header: 'op', width: 'minmax(4em, 2fr)', text: (s) => s.op, title: (s) => s.op },
    { header: 'ratio', width: '6em', text: (s) => formatNumber(s.ratio) },
    { header: 'conf.', width: '4.5em', text: (s) => s.confidence.toFixed(2) },
    !veryNarrow && {
      header: 'source',
      width: 'minmax(6em, 2fr)',
      breakable: true,
      text: sourceText,
      title: sourceText,
    },
    { header: '', width: '3.5em', text: () => '' },
  ];
  return columns.filter((c): c is SuspectColumn => c !== false);
}

/** `text` in pieces that may wrap after each separator (`.`, `/`, `:`), not inside a name. */
export function breakablePieces(text: string): string[] {
  return text.split(/(?<=[./:])/);
}
