import type { DrillDown } from '../../native-bridge/diagnosis/result';
import {
  escapePlotlyText,
  formatNumber,
  type ChartTheme,
  type PlotlyFigure,
  type PlotlyObject,
} from './divergenceFigure';

/**
 * The drill-down of a suspect: each op of the module run again on the reference's arguments, its
 * error ratio against the reference's op (log scale), the first own divergence marked. Ops without
 * a counterpart (a fused op's group) have no point. Hover names the op, its shape and its line.
 */
export function drillFigure(drill: DrillDown, theme: ChartTheme, bar: number): PlotlyFigure {
  const paired = drill.ops
    .map((op, index) => ({ op, index }))
    .filter(({ op }) => op.ratio !== undefined);
  const where = (index: number) => {
    const s = drill.ops[index]!.statement;
    return s ? `${s.file}:${s.line}` : 'no line of model code';
  };
  const hover = paired.map(
    ({ op, index }) =>
      `${escapePlotlyText(`${op.op} ${JSON.stringify(op.shape)} · ratio ${formatNumber(op.ratio!)} · inputs ${formatNumber(op.inputRatio)}`)}<br>${escapePlotlyText(where(index))}`,
  );
  const ops: PlotlyObject = {
    type: 'scatter',
    mode: 'lines+markers',
    name: 'op ratio',
    x: paired.map(({ index }) => index),
    y: paired.map(({ op }) => Math.max(op.ratio!, 1e-3)),
    text: hover,
    customdata: paired.map(({ index }) => index),
    hovertemplate: '#%{x} %{text}<extra></extra>',
    line: { color: theme.accent, width: 1 },
    marker: {
      size: 6,
      color: paired.map(({ op }) => (op.ratio! >= bar ? theme.warning : theme.accent)),
    },
  };
  const data: PlotlyObject[] = [ops];
  if (drill.first !== undefined && drill.ops[drill.first]!.ratio !== undefined) {
    const first = drill.ops[drill.first]!;
    data.push({
      type: 'scatter',
      mode: 'markers',
      name: drill.inputsAgree ? 'own error starts' : 'first divergence',
      x: [drill.first],
      y: [first.ratio],
      text: [escapePlotlyText(`${first.op} at ${where(drill.first)}`)],
      hovertemplate: '%{text}<extra></extra>',
      marker: {
        size: 14,
        symbol: 'circle-open',
        color: theme.error,
        line: { width: 2, color: theme.error },
      },
    });
  }
  const axis = { gridcolor: theme.gridColor, linecolor: theme.gridColor, color: theme.foreground };
  const module = drill.module === '' ? '(root)' : drill.module;
  const layout: PlotlyObject = {
    title: {
      text: escapePlotlyText(`Ops of ${module}, run again on the reference's arguments`),
      font: { color: theme.foreground },
    },
    paper_bgcolor: theme.background,
    plot_bgcolor: theme.background,
    font: { family: theme.fontFamily, size: theme.fontSize, color: theme.foreground },
    margin: { l: 64, r: 16, t: 48, b: 48 },
    showlegend: true,
    legend: { orientation: 'h', y: -0.25 },
    xaxis: { ...axis, title: { text: 'op, in call order' } },
    yaxis: { ...axis, type: 'log', title: { text: 'error ratio' } },
    shapes: [
      {
        type: 'line',
        xref: 'paper',
        x0: 0,
        x1: 1,
        y0: bar,
        y1: bar,
        line: { color: theme.warning, dash: 'dot', width: 1 },
      },
    ],
  };
  return { data, layout, config: { displaylogo: false, responsive: true } };
}
