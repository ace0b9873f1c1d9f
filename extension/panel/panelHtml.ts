import { randomBytes } from 'node:crypto';

/**
 * The panel's page: a strict CSP (scripts only from the extension's files, each tagged with this
 * page's nonce; no remote anything), plotly and the panel script as local resources.
 */
export function panelHtml(options: {
  cspSource: string;
  plotlyUri: string;
  scriptUri: string;
  styleUri: string;
}): string {
  const nonce = randomBytes(16).toString('base64');
  const { cspSource, plotlyUri, scriptUri, styleUri } = options;
  // Plotly sets element styles and injects one stylesheet at run time: styles need
  // 'unsafe-inline'; scripts never do.
  const csp = [
    "default-src 'none'",
    `img-src ${cspSource} data: blob:`,
    `style-src ${cspSource} 'unsafe-inline'`,
    `font-src ${cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<link rel="stylesheet" href="${styleUri}">
<title>Ekka: Divergence</title>
</head>
<body>
<header>
  <vscode-progress-ring id="spinner" hidden></vscode-progress-ring>
  <span id="status" role="status"></span>
  <span class="actions">
    <vscode-button id="rerun" appearance="secondary">Re-run</vscode-button>
    <vscode-button id="export" appearance="secondary">Export report</vscode-button>
  </span>
</header>
<div id="divergence" class="chart" aria-label="Error ratio per module in execution order"></div>
<h3>Suspects</h3>
<vscode-data-grid id="suspects" aria-label="Suspects"></vscode-data-grid>
<div class="heatmap-header">
  <h3 id="heatmap-title">Click a point to see its error heatmap.</h3>
  <vscode-button id="annotate-selected" appearance="secondary" hidden>Annotate this module</vscode-button>
</div>
<div id="heatmap" class="chart heatmap"></div>
<h3 id="drill-title" hidden></h3>
<div id="drill" class="chart heatmap" hidden aria-label="Error ratio per op inside the top suspect"></div>
<script nonce="${nonce}" src="${plotlyUri}"></script>
<script nonce="${nonce}" src="${scriptUri}"></script>
</body>
</html>`;
}
