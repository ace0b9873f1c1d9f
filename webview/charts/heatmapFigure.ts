import {
  escapePlotlyText,
  formatNumber,
  type ChartTheme,
  type PlotlyFigure,
  type PlotlyObject,
} from './divergenceFigure';

/** A row-major matrix of errors: per token × channel, or per token (one column). */
export interface HeatmapInput {
  rows: number;
  cols: number;
  /** `rows * cols` values, row-major. */
  values: Float32Array;
  rowLabel: string;
  colLabel: string;
  title: string;
  /**
   * Colour by log10 |value|: errors span orders of magnitude, and on a linear scale one outlier
   * makes every other cell the same colour. The hover text always shows the true value.
   */
  logScale?: boolean;
}

/** Smallest magnitude a log scale resolves; exact zeros are drawn there. */
const LOG_FLOOR = 1e-12;

/**
 * A plotly heatmap of `input`, rows from the top (token 0 first). Non-finite values are left as
 * gaps and named in the hover text.
 */
export function heatmapFigure(input: HeatmapInput, theme: ChartTheme): PlotlyFigure {
  const { rows, cols, values } = input;
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows < 0 || cols < 0) {
    throw new RangeError(`heatmap: rows and cols must be non-negative integers (${rows}×${cols})`);
  }
  if (values.length !== rows * cols) {
    throw new RangeError(`heatmap: ${values.length} values for ${rows}×${cols} cells`);
  }
  let floor = Infinity;
  if (input.logScale) {
    for (const v of values) if (Number.isFinite(v) && v !== 0) floor = Math.min(floor, Math.abs(v));
    floor = Math.max(LOG_FLOOR, Number.isFinite(floor) ? floor : LOG_FLOOR);
  }
  const colour = (v: number): number | null => {
    if (!Number.isFinite(v)) return null;
    return input.logScale ? Math.log10(Math.max(floor, Math.abs(v))) : v;
  };

  const z: (number | null)[][] = [];
  const text: string[][] = [];
  let low = Infinity;
  let high = -Infinity;
  for (let r = 0; r < rows; r++) {
    const zRow: (number | null)[] = [];
    const textRow: string[] = [];
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c]!;
      const drawn = colour(v);
      if (drawn !== null) {
        low = Math.min(low, drawn);
        high = Math.max(high, drawn);
      }
      zRow.push(drawn);
      textRow.push(formatNumber(v));
    }
    z.push(zRow);
    text.push(textRow);
  }

  const colorbar: PlotlyObject = {
    outlinewidth: 0,
    tickfont: { color: theme.foreground, family: theme.fontFamily, size: theme.fontSize },
  };
  if (input.logScale && low <= high) {
    // Label the exponents as the values they stand for.
    const tickvals: number[] = [];
    for (let k = Math.ceil(low); k <= Math.floor(high); k++) tickvals.push(k);
    if (tickvals.length === 0) tickvals.push(low);
    colorbar.tickvals = tickvals;
    colorbar.ticktext = tickvals.map((k) => formatNumber(10 ** k));
  }

  const rowLabel = escapePlotlyText(input.rowLabel);
  const colLabel = escapePlotlyText(input.colLabel);
  const heatmap: PlotlyObject = {
    type: 'heatmap',
    z,
    text,
    hovertemplate: `${rowLabel} %{y}<br>${colLabel} %{x}<br>error %{text}<extra></extra>`,
    hoverongaps: true,
    colorscale: [
      [0, theme.background],
      [0.5, theme.warning],
      [1, theme.error],
    ],
    colorbar,
    xgap: cols <= 64 ? 1 : 0,
    ygap: rows <= 64 ? 1 : 0,
  };
  const axis = {
    gridcolor: theme.gridColor,
    linecolor: theme.gridColor,
    color: theme.foreground,
    zeroline: false,
    showgrid: false,
  };
  const layout: PlotlyObject = {
    title: { text: escapePlotlyText(input.title), font: { color: theme.foreground } },
    paper_bgcolor: theme.background,
    plot_bgcolor: theme.background,
    font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    margin: { l: 64, r: 16, t: 48, b: 48 },
    xaxis: { ...axis, title: { text: colLabel } },
    // Token 0 at the top, as a sequence reads.
    yaxis: { ...axis, title: { text: rowLabel }, autorange: 'reversed' },
    hoverlabel: {
      bgcolor: theme.background,
      bordercolor: theme.foreground,
      font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    },
  };
  return { data: [heatmap], layout, config: { displaylogo: false, responsive: true } };
}
