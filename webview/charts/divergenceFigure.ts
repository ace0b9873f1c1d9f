import type { DiagnosisResult, SeriesPoint, Suspect } from '../../native-bridge/diagnosis/result';
import { inheritsError } from '../../native-bridge/localize/suspects';
import { layerOf, layerTicks, MODULE_KINDS, moduleKind } from './layerAxis';

/**
 * Colours and font of the surface a chart is drawn on: the light report page, or the editor's
 * theme in the webview panel (read from its `--vscode-*` CSS variables).
 */
export interface ChartTheme {
  foreground: string;
  background: string;
  gridColor: string;
  /** Ordinary points and lines. */
  accent: string;
  /** Points above the threshold, suspects. */
  warning: string;
  /** The change point, non-finite values. */
  error: string;
  fontFamily: string;
  fontSize: number;
}

/** One plotly trace or layout, as plain JSON: these builders never need plotly itself. */
export type PlotlyObject = Record<string, unknown>;

/** What `Plotly.newPlot` / `Plotly.react(element, data, layout, config)` take. */
export interface PlotlyFigure {
  data: PlotlyObject[];
  layout: PlotlyObject;
  config: PlotlyObject;
}

/** What the Divergence chart shows; `series` may be partial while a diagnosis streams. */
export interface DivergenceViewModel {
  series: readonly SeriesPoint[];
  changePoint: DiagnosisResult['changePoint'];
  suspects: readonly Suspect[];
  /** Ratios at or below this are explained by numerical noise. */
  thresholdRatio: number;
  /** How the noise was measured, in words (shown on hover over the noise band). */
  noise: string;
}

/** Trace positions in `divergenceFigure(...).data`, for `Plotly.extendTraces` and click handlers. */
export const DIVERGENCE_TRACES = { series: 0, suspects: 1, changePoint: 2 } as const;

/**
 * A log axis cannot show 0 (an exact match) or tiny ratios usefully: they are drawn at this value
 * and the hover text gives the true one.
 */
export const RATIO_DISPLAY_MIN = 1e-3;
/** Ratios are capped at 1e12 by the comparison (non-finite mismatches); never draw beyond. */
export const RATIO_DISPLAY_MAX = 1e12;

/** The value drawn on the log axis for a ratio. */
export function displayRatio(ratio: number): number {
  if (Number.isNaN(ratio)) return RATIO_DISPLAY_MAX;
  return Math.min(RATIO_DISPLAY_MAX, Math.max(RATIO_DISPLAY_MIN, ratio));
}

/** Compact number for hover text and labels: fixed for ordinary magnitudes, else exponent. */
export function formatNumber(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e4 || magnitude < 1e-2) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

/**
 * Plotly draws hover text through its own small HTML subset (`<b>`, `<br>`, `<a href>`), and
 * decodes entities. Module names and ops come from user models, so they are entity-escaped.
 */
export function escapePlotlyText(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

const moduleLabel = (module: string): string => escapePlotlyText(module || '(root)');

/** The hover text of one series point: every metric the comparison measured for it. */
export function pointHoverText(point: SeriesPoint, thresholdRatio?: number): string {
  const clamped =
    displayRatio(point.ratio) !== point.ratio
      ? ` (drawn at ${formatNumber(displayRatio(point.ratio))})`
      : '';
  const counts = (c: SeriesPoint['target']) => `${c.nan} NaN, ${c.inf} Inf`;
  const layer = layerOf(point.module);
  const where = `${MODULE_KINDS[moduleKind(point.module)].label}${layer === undefined ? '' : ` · layer ${layer}`}`;
  const inherited =
    thresholdRatio !== undefined && inheritsError(point, thresholdRatio)
      ? [
          `<i>inherited</i>: reads ratio ${formatNumber(point.inputRatio)}${point.inputIndex === undefined ? '' : ` (#${point.inputIndex})`}, own factor ×${formatNumber(Math.max(point.ratio, 1) / point.inputRatio)}: not a suspect`,
        ]
      : [];
  return [
    `<b>#${point.index} ${moduleLabel(point.module)}</b>${point.call > 1 ? ` · call ${point.call}` : ''} · ${where}`,
    ...inherited,
    `${escapePlotlyText(point.op)} ${escapePlotlyText(point.node)}`,
    `shape [${point.shape.join(', ')}] ${escapePlotlyText(point.dtype)}`,
    `ratio ${formatNumber(point.ratio)}${clamped} · input ratio ${formatNumber(point.inputRatio)}`,
    `rel. L2 ${formatNumber(point.relativeL2Error)} · cosine ${point.cosineSimilarity.toFixed(6)}`,
    `max |Δ| ${formatNumber(point.maxAbsError)} at [${point.maxAbsErrorIndex.join(', ')}]`,
    `target ${counts(point.target)} · reference ${counts(point.reference)}`,
  ].join('<br>');
}

function pointColor(
  point: SeriesPoint,
  thresholdRatio: number,
  changePointIndex: number | undefined,
  theme: ChartTheme,
): string {
  const nonFinite =
    point.target.nan + point.target.inf + point.nonFiniteMismatches > 0 ||
    point.index === changePointIndex;
  if (nonFinite) return theme.error;
  return point.ratio > thresholdRatio ? theme.warning : theme.accent;
}

/** Column arrays for the series trace, in the order `Plotly.extendTraces` takes them. */
export interface DivergencePointColumns {
  x: number[];
  y: number[];
  customdata: number[];
  hovertext: string[];
  'marker.color': string[];
  'marker.symbol': string[];
  'marker.opacity': number[];
}

function pointColumns(
  points: readonly SeriesPoint[],
  thresholdRatio: number,
  changePointIndex: number | undefined,
  theme: ChartTheme,
): DivergencePointColumns {
  return {
    x: points.map((p) => p.index),
    y: points.map((p) => displayRatio(p.ratio)),
    customdata: points.map((p) => p.index),
    hovertext: points.map((p) => pointHoverText(p, thresholdRatio)),
    'marker.color': points.map((p) => pointColor(p, thresholdRatio, changePointIndex, theme)),
    'marker.symbol': points.map((p) => MODULE_KINDS[moduleKind(p.module)].symbol),
    // Error that came in with the inputs is drawn faded: it is where the error went, not where
    // it started.
    'marker.opacity': points.map((p) => (inheritsError(p, thresholdRatio) ? 0.4 : 1)),
  };
}

/** Arguments for `Plotly.extendTraces(element, update, indices)`. */
export interface DivergenceExtension {
  update: { [K in keyof DivergencePointColumns]: [DivergencePointColumns[K]] };
  indices: [number];
}

/**
 * Adds streamed points to a chart drawn by `divergenceFigure` without rebuilding it:
 * `const { update, indices } = divergenceExtension(points, 2, theme);
 *  Plotly.extendTraces(element, update, indices);`
 * The change point and suspects only exist once the runs end; redraw then with `Plotly.react`.
 */
export function divergenceExtension(
  points: readonly SeriesPoint[],
  thresholdRatio: number,
  theme: ChartTheme,
): DivergenceExtension {
  const columns = pointColumns(points, thresholdRatio, undefined, theme);
  return {
    update: {
      x: [columns.x],
      y: [columns.y],
      customdata: [columns.customdata],
      hovertext: [columns.hovertext],
      'marker.color': [columns['marker.color']],
      'marker.symbol': [columns['marker.symbol']],
      'marker.opacity': [columns['marker.opacity']],
    },
    indices: [DIVERGENCE_TRACES.series],
  };
}

function suspectHoverText(
  suspect: Suspect,
  point: SeriesPoint | undefined,
  thresholdRatio: number,
): string {
  const own =
    suspect.ownRatio !== undefined ? ` · own ratio ${formatNumber(suspect.ownRatio)}` : '';
  const head = `<b>Suspect #${suspect.rank}</b> · confidence ${suspect.confidence.toFixed(2)}${own}`;
  const source = suspect.source
    ? `<br>${escapePlotlyText(suspect.source.file)}:${suspect.source.line}`
    : '';
  const body = point
    ? pointHoverText(point, thresholdRatio)
    : `<b>#${suspect.index} ${moduleLabel(suspect.module)}</b><br>ratio ${formatNumber(suspect.ratio)}`;
  return `${head}${source}<br>${body}`;
}

/**
 * The Divergence chart: error ratio (log axis) against execution order, the noise band up to the
 * threshold, suspects ringed with their rank, the change point marked. Every point's `customdata`
 * is its series index, so a `plotly_click` handler finds the module with `points[0].customdata`.
 */
export function divergenceFigure(model: DivergenceViewModel, theme: ChartTheme): PlotlyFigure {
  const cp = model.changePoint;
  const byIndex = new Map(model.series.map((p) => [p.index, p]));
  const columns = pointColumns(model.series, model.thresholdRatio, cp?.index, theme);

  const series: PlotlyObject = {
    type: 'scatter',
    mode: 'lines+markers',
    name: 'module outputs',
    uid: 'series',
    x: columns.x,
    y: columns.y,
    customdata: columns.customdata,
    hovertext: columns.hovertext,
    hovertemplate: '%{hovertext}<extra></extra>',
    line: { color: theme.accent, width: 1 },
    marker: {
      color: columns['marker.color'],
      symbol: columns['marker.symbol'],
      opacity: columns['marker.opacity'],
      size: 6,
    },
  };
  const suspects: PlotlyObject = {
    type: 'scatter',
    mode: 'markers+text',
    name: 'suspects',
    uid: 'suspects',
    x: model.suspects.map((s) => s.index),
    y: model.suspects.map((s) => displayRatio(byIndex.get(s.index)?.ratio ?? s.ratio)),
    customdata: model.suspects.map((s) => s.index),
    text: model.suspects.map((s) => `#${s.rank}`),
    textposition: 'top center',
    textfont: { color: theme.warning, family: theme.fontFamily, size: theme.fontSize },
    hovertext: model.suspects.map((s) =>
      suspectHoverText(s, byIndex.get(s.index), model.thresholdRatio),
    ),
    hovertemplate: '%{hovertext}<extra></extra>',
    marker: {
      symbol: 'circle-open',
      size: 16,
      color: theme.warning,
      line: { width: 2, color: theme.warning },
    },
  };
  const changePoint: PlotlyObject = {
    type: 'scatter',
    mode: 'markers',
    name: 'change point',
    uid: 'change-point',
    x: cp ? [cp.index] : [],
    y: cp ? [displayRatio(cp.ratio)] : [],
    customdata: cp ? [cp.index] : [],
    hovertext: cp
      ? [
          `<b>Change point</b><br>${(() => {
            const point = byIndex.get(cp.index);
            return point
              ? pointHoverText(point, model.thresholdRatio)
              : `#${cp.index} ${moduleLabel(cp.module)} · ratio ${formatNumber(cp.ratio)}`;
          })()}`,
        ]
      : [],
    hovertemplate: '%{hovertext}<extra></extra>',
    marker: {
      symbol: 'diamond-open',
      size: 18,
      color: theme.error,
      line: { width: 2.5, color: theme.error },
    },
  };

  const shapes: PlotlyObject[] = [
    {
      // The band spans the plot whatever the x range, so streamed points need no layout change.
      type: 'rect',
      layer: 'below',
      xref: 'paper',
      x0: 0,
      x1: 1,
      yref: 'y',
      y0: RATIO_DISPLAY_MIN,
      y1: displayRatio(model.thresholdRatio),
      fillcolor: theme.accent,
      opacity: 0.12,
      line: { width: 0 },
    },
  ];
  const annotations: PlotlyObject[] = [
    {
      xref: 'paper',
      x: 1,
      xanchor: 'right',
      yref: 'y',
      // Annotations on a log axis are placed by the exponent.
      y: Math.log10(displayRatio(model.thresholdRatio)),
      yanchor: 'top',
      showarrow: false,
      text: `noise band (ratio ≤ ${formatNumber(model.thresholdRatio)})`,
      hovertext: escapePlotlyText(model.noise),
      font: { color: theme.foreground, size: Math.max(8, theme.fontSize - 2) },
      opacity: 0.8,
    },
  ];
  if (cp) {
    shapes.push({
      type: 'line',
      xref: 'x',
      x0: cp.index,
      x1: cp.index,
      yref: 'paper',
      y0: 0,
      y1: 1,
      line: { color: theme.error, width: 1.5, dash: 'dash' },
    });
    annotations.push({
      xref: 'x',
      x: cp.index,
      yref: 'paper',
      y: 1,
      yanchor: 'bottom',
      showarrow: false,
      text: `change point #${cp.index}: ${moduleLabel(cp.module)}`,
      font: { color: theme.error, size: theme.fontSize },
    });
  }

  const axis = {
    gridcolor: theme.gridColor,
    linecolor: theme.gridColor,
    zeroline: false,
    color: theme.foreground,
  };
  const layout: PlotlyObject = {
    paper_bgcolor: theme.background,
    plot_bgcolor: theme.background,
    font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    margin: { l: 64, r: 16, t: 48, b: 84 },
    hovermode: 'closest',
    hoverlabel: {
      align: 'left',
      bgcolor: theme.background,
      bordercolor: theme.foreground,
      font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    },
    showlegend: true,
    // At the figure's bottom edge, under the x axis title, whatever the panel's height.
    legend: { orientation: 'h', x: 0, xanchor: 'left', yref: 'container', y: 0, yanchor: 'bottom' },
    xaxis: { ...axis, ...xAxisTicks(model.series), rangemode: 'tozero' },
    yaxis: { ...axis, type: 'log', title: { text: 'error ratio' }, exponentformat: 'power' },
    shapes,
    annotations,
    // Keeps the user's zoom when a live panel redraws with Plotly.react.
    uirevision: 'divergence',
  };
  const config: PlotlyObject = {
    displaylogo: false,
    responsive: true,
    modeBarButtonsToRemove: ['select2d', 'lasso2d'],
  };
  return { data: [series, suspects, changePoint], layout, config };
}

/** Ticks where each layer starts, when module paths name layers; else plain execution order. */
export function xAxisTicks(series: readonly SeriesPoint[]): PlotlyObject {
  const { tickvals, ticktext } = layerTicks(series);
  if (tickvals.length === 0) return { title: { text: 'execution order' } };
  return {
    title: { text: 'layer' },
    tickmode: 'array',
    tickvals,
    ticktext,
  };
}

/** The chart's view model from a finished (or partial) result. */
export function divergenceViewModel(result: DiagnosisResult, noise: string): DivergenceViewModel {
  return {
    series: result.series,
    changePoint: result.changePoint,
    suspects: result.suspects,
    thresholdRatio: result.thresholds.ratio,
    noise,
  };
}
