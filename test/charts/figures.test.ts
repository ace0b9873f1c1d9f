import * as assert from 'node:assert/strict';
import {
  DIVERGENCE_TRACES,
  RATIO_DISPLAY_MIN,
  divergenceExtension,
  divergenceFigure,
  divergenceViewModel,
  type DivergenceViewModel,
  type PlotlyFigure,
} from '../../webview/charts/divergenceFigure';
import { heatmapFigure } from '../../webview/charts/heatmapFigure';
import { HOSTILE, hostileResult } from '../report/reportFixture';
import { THEME } from '../support/chartTheme';
import { assertClose } from '../support/numbers';

/** The fields of the builders' plain-JSON traces and layout that these tests read. */
interface Scatter {
  x: number[];
  y: number[];
  customdata: number[];
  hovertext: string[];
  text?: string[];
  line?: { color: string };
  marker: { color: string[]; symbol: string[]; opacity: number[] };
}
interface Shape {
  type: string;
  x0?: number;
  x1?: number;
  y0?: number;
  y1?: number;
  xref?: string;
}
interface Heatmap {
  type: string;
  z: (number | null)[][];
  text: string[][];
  hovertemplate: string;
  colorscale: [number, string][];
  colorbar: { tickvals?: number[]; ticktext?: string[] };
}
interface Layout {
  yaxis: { type?: string; autorange?: string };
  title: { text: string };
  shapes: Shape[];
  annotations: { text: string }[];
  uirevision?: string;
}

const trace = <T>(figure: PlotlyFigure, index: number): T => figure.data[index] as unknown as T;
const layout = (figure: PlotlyFigure): Layout => figure.layout as unknown as Layout;
const series = (figure: PlotlyFigure): Scatter => trace<Scatter>(figure, DIVERGENCE_TRACES.series);

function model(): DivergenceViewModel {
  return divergenceViewModel(hostileResult(), 'analytic floor');
}

describe('Divergence figure', () => {
  it('plots every point by execution order on a log axis, true values in the hover', () => {
    const view = model();
    const figure = divergenceFigure(view, THEME);
    const points = series(figure);
    assert.deepEqual(
      points.x,
      view.series.map((p) => p.index),
    );
    assert.deepEqual(points.customdata, points.x);
    assert.deepEqual(points.y, [RATIO_DISPLAY_MIN, 0.5, 1.2, 250, 300, 280]);
    assert.equal(layout(figure).yaxis.type, 'log');
    const hover = points.hovertext;
    assert.equal(hover.length, view.series.length);
    assert.match(hover[0]!, /ratio 0 \(drawn at 1\.00e-3\)/);
    for (const label of ['MatMul', 'shape [1, 4, 8] float32', 'rel. L2', 'cosine', 'max |Δ|']) {
      assert.ok(hover[2]!.includes(label), label);
    }
    assert.match(hover[2]!, /at \[0, 1, 2\]/);
    assert.match(hover[2]!, /target 0 NaN, 0 Inf · reference 0 NaN, 0 Inf/);
    // Plotly reads hover text as a small HTML subset: the hostile name stays text.
    assert.ok(!hover[3]!.includes('<img'));
    assert.ok(hover[3]!.includes('&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(!JSON.stringify(figure).includes(HOSTILE));
  });

  it('rings the suspects with their rank and marks the change point', () => {
    const view = model();
    const figure = divergenceFigure(view, THEME);
    const suspects = trace<Scatter>(figure, DIVERGENCE_TRACES.suspects);
    assert.deepEqual(suspects.text, ['#1', '#2', '#3']);
    assert.deepEqual(suspects.customdata, [3, 4, 5]);
    assert.match(suspects.hovertext[0]!, /Suspect #1<\/b> · confidence 0\.97 · own ratio 240/);
    const changePoint = trace<Scatter>(figure, DIVERGENCE_TRACES.changePoint);
    assert.deepEqual(changePoint.x, [3]);
    assert.deepEqual(changePoint.customdata, [3]);
    const shapes = layout(figure).shapes;
    const line = shapes.find((s) => s.type === 'line');
    assert.deepEqual([line?.x0, line?.x1], [3, 3]);
    const band = shapes.find((s) => s.type === 'rect');
    assert.deepEqual([band?.y0, band?.y1, band?.xref], [RATIO_DISPLAY_MIN, 2, 'paper']);
    const notes = layout(figure).annotations.map((a) => a.text);
    assert.ok(notes.some((text) => text.startsWith('change point #3: &lt;/script&gt;')));
    // The change point's own point is drawn in the error colour.
    assert.equal(series(figure).marker.color[3], 'red');
    assert.equal(series(figure).marker.color[1], 'blue');
    assert.equal(series(figure).marker.color[4], 'orange');
  });

  it('draws a partial series without change point or suspects', () => {
    const view: DivergenceViewModel = {
      ...model(),
      series: model().series.slice(0, 2),
      changePoint: null,
      suspects: [],
    };
    const figure = divergenceFigure(view, THEME);
    assert.deepEqual(
      figure.data.map((t) => t.uid),
      ['series', 'suspects', 'change-point'],
      'trace positions stay fixed',
    );
    assert.deepEqual(trace<Scatter>(figure, DIVERGENCE_TRACES.changePoint).x, []);
    assert.ok(!layout(figure).shapes.some((s) => s.type === 'line'));
    assert.equal(layout(figure).uirevision, 'divergence');
  });

  it('extends the series trace with exactly the columns a full redraw would have', () => {
    const full = model();
    const partial: DivergenceViewModel = { ...full, changePoint: null, suspects: [] };
    const whole = series(divergenceFigure(partial, THEME));
    const first = series(divergenceFigure({ ...partial, series: full.series.slice(0, 4) }, THEME));
    const { update, indices } = divergenceExtension(full.series.slice(4), 2, THEME);
    assert.deepEqual(indices, [DIVERGENCE_TRACES.series]);
    assert.deepEqual([...first.x, ...update.x[0]], whole.x);
    assert.deepEqual([...first.y, ...update.y[0]], whole.y);
    assert.deepEqual([...first.customdata, ...update.customdata[0]], whole.customdata);
    assert.deepEqual([...first.hovertext, ...update.hovertext[0]], whole.hovertext);
    assert.deepEqual([...first.marker.color, ...update['marker.color'][0]], whole.marker.color);
    assert.deepEqual([...first.marker.symbol, ...update['marker.symbol'][0]], whole.marker.symbol);
    assert.deepEqual(
      [...first.marker.opacity, ...update['marker.opacity'][0]],
      whole.marker.opacity,
    );
  });

  it('ticks the x axis where each layer starts and marks module kinds by symbol', () => {
    const view = model();
    const layered = ['model.embed_tokens', 'model.layers.0.self_attn.q_proj', 'model.layers.0.mlp']
      .concat(['model.layers.1.input_layernorm', 'model.layers.1', 'lm_head'])
      .map((module, k) => ({ ...view.series[k]!, module }));
    const figure = divergenceFigure({ ...view, series: layered }, THEME);
    const xaxis = figure.layout.xaxis as { tickvals: number[]; ticktext: string[] };
    assert.deepEqual(xaxis.tickvals, [0, 1, 3, 5]);
    assert.deepEqual(xaxis.ticktext, ['in', 'L0', 'L1', 'out']);
    assert.deepEqual(series(figure).marker.symbol, [
      'square',
      'diamond',
      'triangle-up',
      'circle',
      'hexagon',
      'star',
    ]);
    assert.match(series(figure).hovertext[1]!, /q_proj<\/b> · attention · layer 0/);
  });

  it('draws a point that only passes on what it reads as inherited, faded, never a suspect', () => {
    const view = model();
    // #4 reads #3 at 250 and outputs 300: ×1.2 of its own, under the threshold of 2.
    const inherited = view.series.map((p) =>
      p.index === 4 ? { ...p, inputRatio: 250, inputIndex: 3 } : p,
    );
    const figure = divergenceFigure({ ...view, series: inherited }, THEME);
    const points = series(figure);
    assert.equal(points.marker.opacity[4], 0.4);
    assert.equal(points.marker.opacity[3], 1);
    assert.match(points.hovertext[4]!, /inherited<\/i>: reads ratio 250 \(#3\), own factor ×1\.2/);
    assert.ok(!points.hovertext[3]!.includes('inherited'));
  });

  it('takes its colours and font from the theme', () => {
    const figure = divergenceFigure(model(), THEME);
    assert.equal(figure.layout.paper_bgcolor, '#fff');
    assert.deepEqual(figure.layout.font, { family: 'sans-serif', size: 12, color: '#111' });
    assert.equal(series(figure).line?.color, 'blue');
  });
});

describe('Heatmap figure', () => {
  const values = Float32Array.from([0, 1e-6, 1e-3, 1, Number.NaN, 0.5]);

  it('lays rows out top-down with the true values in the hover text', () => {
    const figure = heatmapFigure(
      { rows: 2, cols: 3, values, rowLabel: 'token', colLabel: 'channel', title: 'layer <0>' },
      THEME,
    );
    const heat = trace<Heatmap>(figure, 0);
    assert.equal(heat.type, 'heatmap');
    assert.equal(heat.z.length, 2);
    assert.equal(heat.z[0]!.length, 3);
    assertClose(heat.z[0]![1]!, 1e-6, { rtol: 1e-6 });
    assert.equal(heat.z[1]![1], null, 'NaN is a gap');
    assert.equal(heat.text[1]![1], 'NaN');
    assert.equal(heat.text[0]![2], '1.00e-3');
    assert.match(heat.hovertemplate, /^token %\{y\}<br>channel %\{x\}<br>error %\{text\}/);
    assert.equal(layout(figure).yaxis.autorange, 'reversed');
    assert.equal(layout(figure).title.text, 'layer &lt;0&gt;');
    assert.deepEqual(
      heat.colorscale.map((stop) => stop[1]),
      ['#fff', 'orange', 'red'],
    );
  });

  it('colours by log10 |value| on request, with zeros at the smallest magnitude', () => {
    const figure = heatmapFigure(
      {
        rows: 3,
        cols: 2,
        values,
        rowLabel: 'token',
        colLabel: 'channel',
        title: 't',
        logScale: true,
      },
      THEME,
    );
    const heat = trace<Heatmap>(figure, 0);
    assertClose(heat.z[0]![0]!, -6, { atol: 1e-6 });
    assertClose(heat.z[0]![1]!, -6, { atol: 1e-6 });
    assertClose(heat.z[1]![0]!, -3, { atol: 1e-6 });
    assertClose(heat.z[1]![1]!, 0, { atol: 1e-6 });
    assert.equal(heat.z[2]![0], null);
    assert.deepEqual(heat.colorbar.tickvals, [-6, -5, -4, -3, -2, -1, 0]);
    assert.equal(heat.colorbar.ticktext?.[0], '1.00e-6');
  });

  it('refuses values that do not fill the grid', () => {
    assert.throws(
      () =>
        heatmapFigure(
          { rows: 4, cols: 2, values, rowLabel: 'r', colLabel: 'c', title: 't' },
          THEME,
        ),
      /6 values for 4×2 cells/,
    );
  });
});
