// The script of the static HTML report (native-bridge/report/htmlReport.ts): draws the Divergence
// chart from the embedded result. plotly.js is inlined before it as the global `Plotly`.
import type { ReportPageData } from '../../native-bridge/report/htmlReport';
import { divergenceFigure, divergenceViewModel, type ChartTheme } from '../charts/divergenceFigure';

/** Element ids written by htmlReport.ts. */
const DATA_ID = 'ekka-report-data';
const CHART_ID = 'divergence-chart';

/** A printable page: dark text on white, colours that survive greyscale as different shades. */
const LIGHT_THEME: ChartTheme = {
  foreground: '#1f2328',
  background: '#ffffff',
  gridColor: '#d8dee4',
  accent: '#0969da',
  warning: '#bf8700',
  error: '#cf222e',
  fontFamily: 'system-ui, -apple-system, "Segoe UI", sans-serif',
  fontSize: 12,
};

interface PlotlyGlobal {
  newPlot(
    element: HTMLElement,
    data: unknown[],
    layout: unknown,
    config: unknown,
  ): Promise<unknown>;
}

function showProblem(element: HTMLElement, message: string): void {
  const paragraph = document.createElement('p');
  paragraph.textContent = message;
  element.replaceChildren(paragraph);
  element.style.height = 'auto';
}

async function drawReport(): Promise<void> {
  const chart = document.getElementById(CHART_ID);
  const embedded = document.getElementById(DATA_ID);
  if (!chart || !embedded?.textContent) return;
  const plotly = (globalThis as { Plotly?: PlotlyGlobal }).Plotly;
  if (!plotly) {
    showProblem(chart, 'The chart could not be drawn: plotly.js did not load.');
    return;
  }
  const data = JSON.parse(embedded.textContent) as ReportPageData;
  const figure = divergenceFigure(divergenceViewModel(data.result, data.noise), LIGHT_THEME);
  await plotly.newPlot(chart, figure.data, figure.layout, figure.config);
  chart.dataset.rendered = 'true';
}

drawReport().catch((error: unknown) => {
  const chart = document.getElementById(CHART_ID);
  if (chart) showProblem(chart, `The chart could not be drawn: ${String(error)}`);
  console.error(error);
});
