/**
 * The Divergence panel: the error-ratio chart filled live as the bridge compares modules, the
 * suspects table, and the error heatmap of the selected module. It talks to the extension only
 * through the protocol's messages; everything it shows comes from them.
 */
import {
  provideVSCodeDesignSystem,
  vsCodeButton,
  vsCodeDataGrid,
  vsCodeDataGridCell,
  vsCodeDataGridRow,
  vsCodeProgressRing,
} from '@vscode/webview-ui-toolkit';
import type { Annotation } from '../../native-bridge/annotations/annotation';
import {
  PROTOCOL_VERSION,
  type DiagnosisResult,
  type ErrorMap,
  type FromWebview,
  type RunSummary,
  type SeriesPoint,
  type ToWebview,
} from '../../native-bridge/protocol';
import {
  divergenceExtension,
  divergenceFigure,
  formatNumber,
  xAxisTicks,
  type ChartTheme,
  type PlotlyFigure,
} from '../charts/divergenceFigure';
import { drillFigure } from '../charts/drillFigure';
import { heatmapFigure } from '../charts/heatmapFigure';
import { breakablePieces, elideCommonPrefix, suspectColumns } from './suspectColumns';

provideVSCodeDesignSystem().register(
  vsCodeButton(),
  vsCodeDataGrid(),
  vsCodeDataGridRow(),
  vsCodeDataGridCell(),
  vsCodeProgressRing(),
);

interface PlotlyElement extends HTMLElement {
  on(event: 'plotly_click', handler: (event: { points: { customdata: number }[] }) => void): void;
}
interface PlotlyApi {
  react(element: HTMLElement, data: unknown[], layout: unknown, config: unknown): Promise<unknown>;
  extendTraces(element: HTMLElement, update: unknown, indices: number[]): Promise<unknown>;
  relayout(element: HTMLElement, update: Record<string, unknown>): Promise<unknown>;
  toImage(
    element: HTMLElement,
    options: { format: 'png'; width: number; height: number },
  ): Promise<string>;
  purge(element: HTMLElement): void;
}
declare const Plotly: PlotlyApi;
declare function acquireVsCodeApi(): {
  postMessage(message: FromWebview): void;
  getState(): PanelState | undefined;
  setState(state: PanelState): void;
};

/** Everything needed to draw the panel again after it was hidden (webview state). */
interface PanelState {
  run?: RunSummary;
  points: SeriesPoint[];
  result?: DiagnosisResult;
  failure?: string;
  selected?: number;
  annotations: Annotation[];
}

const vscode = acquireVsCodeApi();
const state: PanelState = vscode.getState() ?? { points: [], annotations: [] };
const chart = document.getElementById('divergence') as PlotlyElement;
const heatmap = document.getElementById('heatmap')!;
const drill = document.getElementById('drill')!;
const drillTitle = document.getElementById('drill-title')!;
const heatmapTitle = document.getElementById('heatmap-title')!;
const status = document.getElementById('status')!;
const spinner = document.getElementById('spinner')!;
const suspectsGrid = document.getElementById('suspects')!;
const annotateSelected = document.getElementById('annotate-selected')!;
let chartDrawn = false;
/** The x axis ticks drawn, so a streamed batch relayouts only when a new layer starts. */
let drawnTicks = '';
let delayTotal = 0;
let saveTimer: number | undefined;

function post(message: FromWebview): void {
  vscode.postMessage(message);
}

function saveState(): void {
  // Points stream in quickly; the state is written at most every 200 ms.
  if (saveTimer !== undefined) return;
  saveTimer = window.setTimeout(() => {
    saveTimer = undefined;
    vscode.setState(state);
  }, 200);
}

function cssVar(name: string, fallback: string): string {
  const value = getComputedStyle(document.body).getPropertyValue(name).trim();
  return value || fallback;
}

/** Chart colours from the editor's theme, read again when the theme changes. */
function theme(): ChartTheme {
  return {
    foreground: cssVar('--vscode-editor-foreground', '#333'),
    background: cssVar('--vscode-editor-background', '#fff'),
    gridColor: cssVar('--vscode-editorWidget-border', '#8884'),
    accent: cssVar('--vscode-charts-blue', '#3794ff'),
    warning: cssVar('--vscode-charts-orange', '#d18616'),
    error: cssVar('--vscode-charts-red', '#f14c4c'),
    fontFamily: cssVar('--vscode-font-family', 'sans-serif'),
    fontSize: Number.parseFloat(cssVar('--vscode-font-size', '13')) || 13,
  };
}

function noiseText(result: DiagnosisResult | undefined): string {
  if (!result) return 'noise: pending';
  return result.noise.source === 'low-precision-reference'
    ? 'noise measured by a low-precision reference run'
    : `analytic noise floor (${result.noise.floorFactor}·u of ${result.noise.floorDType})`;
}

function figure(): PlotlyFigure {
  const result = state.result;
  return divergenceFigure(
    {
      series: result?.series ?? state.points,
      changePoint: result?.changePoint ?? null,
      suspects: result?.suspects ?? [],
      thresholdRatio: result?.thresholds.ratio ?? state.run?.thresholdRatio ?? 10,
      noise: noiseText(result),
    },
    theme(),
  );
}

async function drawChart(): Promise<void> {
  const { data, layout, config } = figure();
  drawnTicks = JSON.stringify(xAxisTicks(state.result?.series ?? state.points));
  await Plotly.react(chart, data, layout, config);
  if (!chartDrawn) {
    chart.on('plotly_click', (event) => {
      const index = event.points[0]?.customdata;
      if (typeof index === 'number' && state.run) select(index, true);
    });
    chartDrawn = true;
  }
  chart.dataset.points = String((state.result?.series ?? state.points).length);
  chart.dataset.changePoint = String(state.result?.changePoint?.index ?? '');
}

function select(index: number, reveal: boolean): void {
  if (!state.run) return;
  state.selected = index;
  saveState();
  if (reveal) post({ type: 'reveal', runId: state.run.runId, index });
  post({ type: 'selectPoint', runId: state.run.runId, index });
  const point = (state.result?.series ?? state.points)[index];
  heatmapTitle.textContent = point
    ? `#${index} ${point.module} (${point.op}) [${point.shape.join('×')}]: |target − reference|`
    : `#${index}`;
  annotateSelected.hidden = false;
}

function setStatus(text: string, busy: boolean): void {
  status.textContent = text;
  spinner.hidden = !busy;
}

function cell(text: string, column: number): HTMLElement {
  const element = document.createElement('vscode-data-grid-cell');
  element.setAttribute('grid-column', String(column));
  element.textContent = text;
  return element;
}

/** A cell whose text wraps only after separators (a <wbr> after each). */
function breakableCell(text: string, column: number): HTMLElement {
  const element = cell('', column);
  element.classList.add('breakable');
  breakablePieces(text).forEach((piece, k) => {
    if (k > 0) element.appendChild(document.createElement('wbr'));
    element.appendChild(document.createTextNode(piece));
  });
  return element;
}

function headerCell(text: string, column: number): HTMLElement {
  const element = cell(text, column);
  element.setAttribute('cell-type', 'columnheader');
  return element;
}

/** The table again, at the panel's width (its columns depend on it). */
function renderSuspects(): void {
  suspectsGrid.replaceChildren();
  const columns = suspectColumns(suspectsGrid.clientWidth || window.innerWidth);
  suspectsGrid.setAttribute('grid-template-columns', columns.map((c) => c.width).join(' '));
  const header = document.createElement('vscode-data-grid-row');
  header.setAttribute('row-type', 'header');
  columns.forEach((column, i) => header.appendChild(headerCell(column.header, i + 1)));
  suspectsGrid.appendChild(header);
  const result = state.result;
  if (!result || !state.run) return;
  const annotated = new Set(state.annotations.map((a) => a.module));
  const names = elideCommonPrefix(result.suspects.map((s) => s.module));
  for (const suspect of result.suspects) {
    const row = document.createElement('vscode-data-grid-row');
    row.dataset.module = suspect.module;
    row.dataset.index = String(suspect.index);
    columns.slice(0, -1).forEach((column, i) => {
      const note = column.header === 'module' && annotated.has(suspect.module) ? ' ✎' : '';
      const text = column.text(suspect, names) + note;
      const element = column.breakable ? breakableCell(text, i + 1) : cell(text, i + 1);
      if (column.title) element.title = column.title(suspect);
      row.appendChild(element);
    });
    const actions = cell('', columns.length);
    const annotate = document.createElement('vscode-button');
    annotate.setAttribute('appearance', 'secondary');
    annotate.textContent = '✎';
    annotate.title = 'Annotate the suspected root cause';
    annotate.setAttribute('aria-label', 'Annotate');
    annotate.className = 'annotate';
    annotate.addEventListener('click', (event) => {
      event.stopPropagation();
      post({ type: 'annotate', runId: state.run!.runId, index: suspect.index });
    });
    actions.appendChild(annotate);
    row.appendChild(actions);
    row.addEventListener('click', () => select(suspect.index, true));
    suspectsGrid.appendChild(row);
  }
}

// The table's columns follow the panel's width: drawn again when it crosses the narrow bound.
let layoutDrawn: string | undefined;
new ResizeObserver(() => {
  const width = suspectsGrid.clientWidth || window.innerWidth;
  const layout = suspectColumns(width)
    .map((c) => c.header)
    .join();
  if (layout !== layoutDrawn) {
    layoutDrawn = layout;
    renderSuspects();
  }
}).observe(suspectsGrid);

function summary(result: DiagnosisResult): string {
  const cp = result.changePoint;
  const top = result.suspects[0];
  const head = cp
    ? `Divergence from #${cp.index} ${cp.module} (ratio ${formatNumber(cp.ratio)})`
    : top
      ? `Local divergence at #${top.index} ${top.module} (ratio ${formatNumber(top.ratio)}), not persistent`
      : 'No divergence above noise';
  const suspect = top ? ` · top suspect ${top.module} (${top.confidence.toFixed(2)})` : '';
  return `${head}${suspect} · ${result.series.length} modules compared in ${(
    result.timings.totalMs / 1000
  ).toFixed(1)} s`;
}

/** The top drilled suspect's ops (PyTorch runs), or nothing when no suspect was drilled. */
function drawDrill(result: DiagnosisResult | undefined): void {
  const suspect = result?.suspects.find((s) => s.drillDown);
  drill.hidden = !suspect;
  drillTitle.hidden = !suspect;
  if (!suspect || !result) {
    Plotly.purge(drill);
    return;
  }
  drillTitle.textContent = `Inside ${suspect.module || '(root)'}: op by op`;
  const bar = result.thresholds.localRatio ?? result.thresholds.ratio;
  const { data, layout, config } = drillFigure(suspect.drillDown!, theme(), bar);
  void Plotly.react(drill, data, layout, config);
}

function drawErrorMap(index: number, map: ErrorMap | null, message?: string): void {
  if (!map) {
    Plotly.purge(heatmap);
    heatmap.textContent = message ?? 'No error map kept for this module.';
    return;
  }
  heatmap.textContent = '';
  const values = new Float32Array(
    map.values.buffer.slice(map.values.byteOffset, map.values.byteOffset + map.values.byteLength),
  );
  const binned = (n: number, unit: string) => (n > 1 ? `${unit} (${n} per cell)` : unit);
  const { data, layout, config } = heatmapFigure(
    {
      rows: map.rows,
      cols: map.cols,
      values,
      rowLabel: binned(map.rowsPerCell, 'token'),
      colLabel: binned(map.colsPerCell, 'channel'),
      title: `#${index}: largest |target − reference| per cell`,
      logScale: true,
    },
    theme(),
  );
  void Plotly.react(heatmap, data, layout, config);
}

async function handle(message: ToWebview): Promise<void> {
  switch (message.type) {
    case 'hello':
      if (message.protocolVersion !== PROTOCOL_VERSION) {
        setStatus(
          `This panel speaks protocol ${PROTOCOL_VERSION}, the extension ${message.protocolVersion}.`,
          false,
        );
      }
      return;
    case 'runStarted':
      Object.assign(state, { run: message.run, points: [], result: undefined, failure: undefined });
      state.selected = undefined;
      delayTotal = 0;
      delete chart.dataset.maxDelayMs;
      delete chart.dataset.batches;
      delete chart.dataset.firstPointAt;
      delete chart.dataset.firstDelayMs;
      delete chart.dataset.finishedAt;
      setStatus(`Diagnosing ${message.run.title}…`, true);
      renderSuspects();
      Plotly.purge(heatmap);
      heatmapTitle.textContent = 'Click a point to see its error heatmap.';
      drawDrill(undefined);
      annotateSelected.hidden = true;
      await drawChart();
      break;
    case 'points': {
      if (message.runId !== state.run?.runId) return;
      state.points.push(...message.points);
      const { update, indices } = divergenceExtension(
        message.points,
        state.run.thresholdRatio,
        theme(),
      );
      await Plotly.extendTraces(chart, update, indices);
      const ticks = xAxisTicks(state.points);
      if (JSON.stringify(ticks) !== drawnTicks) {
        drawnTicks = JSON.stringify(ticks);
        const update: Record<string, unknown> = {};
        for (const [key, value] of Object.entries(ticks)) update[`xaxis.${key}`] = value;
        await Plotly.relayout(chart, update);
      }
      chart.dataset.points = String(state.points.length);
      // From the bridge's comparison to the point drawn: the live chart's latency.
      const drawnAt = Date.now();
      const delays = message.comparedAt.map((at) => drawnAt - at);
      chart.dataset.maxDelayMs = String(Math.max(Number(chart.dataset.maxDelayMs ?? 0), ...delays));
      delayTotal += delays.reduce((a, b) => a + b, 0);
      chart.dataset.meanDelayMs = (delayTotal / state.points.length).toFixed(1);
      chart.dataset.batches = String(Number(chart.dataset.batches ?? 0) + 1);
      chart.dataset.firstPointAt ??= String(drawnAt);
      // The first point's own delay: what a user waits for the chart to start.
      chart.dataset.firstDelayMs ??= String(delays[0] ?? 0);
      setStatus(`Diagnosing ${state.run.title}: ${state.points.length} modules compared…`, true);
      break;
    }
    case 'runFinished':
      if (message.runId !== state.run?.runId) return;
      state.result = message.result;
      chart.dataset.finishedAt = String(Date.now());
      setStatus(summary(message.result), false);
      await drawChart();
      renderSuspects();
      drawDrill(message.result);
      break;
    case 'runFailed':
      if (message.runId !== state.run?.runId) return;
      state.failure = message.message;
      setStatus(`Failed: ${message.message}`, false);
      break;
    case 'errorMap':
      if (message.runId === state.run?.runId && message.index === state.selected) {
        drawErrorMap(message.index, message.map, message.message);
      }
      return;
    case 'annotations':
      state.annotations = message.annotations;
      renderSuspects();
      break;
    case 'requestChartImage': {
      const dataUrl = await Plotly.toImage(chart, { format: 'png', width: 1200, height: 500 });
      post({ type: 'chartImage', requestId: message.requestId, dataUrl });
      return;
    }
  }
  saveState();
}

// Messages are handled one at a time, in order: each may wait for plotly.
let queue: Promise<void> = Promise.resolve();
window.addEventListener('message', (event: MessageEvent<ToWebview>) => {
  queue = queue
    .then(() => handle(event.data))
    .catch((error: unknown) => {
      setStatus(`Display error: ${error instanceof Error ? error.message : String(error)}`, false);
    });
});

document.getElementById('rerun')!.addEventListener('click', () => post({ type: 'rerun' }));
annotateSelected.addEventListener('click', () => {
  if (state.run && state.selected !== undefined) {
    post({ type: 'annotate', runId: state.run.runId, index: state.selected });
  }
});
document.getElementById('export')!.addEventListener('click', () => post({ type: 'exportReport' }));
// Theme changes swap the body's classes: redraw in the new colours.
new MutationObserver(() => void drawChart()).observe(document.body, {
  attributes: true,
  attributeFilter: ['class'],
});

// Restore what was shown before the panel was hidden, then tell the extension we listen.
void (async () => {
  if (state.result) setStatus(summary(state.result), false);
  else if (state.failure) setStatus(`Failed: ${state.failure}`, false);
  else if (state.run) setStatus(`Diagnosing ${state.run.title}…`, true);
  else setStatus('Run a diagnosis (Ekka: Run Diagnosis) to fill this chart.', false);
  await drawChart();
  renderSuspects();
  post({ type: 'ready', protocolVersion: PROTOCOL_VERSION });
})();
