import type { ChartTheme } from '../../webview/charts/divergenceFigure';

/** A fixed theme for the chart builders' tests (the panel reads its own from VS Code's CSS). */
export const THEME: ChartTheme = {
  foreground: '#111',
  background: '#fff',
  gridColor: '#ddd',
  accent: 'blue',
  warning: 'orange',
  error: 'red',
  fontFamily: 'sans-serif',
  fontSize: 12,
};
