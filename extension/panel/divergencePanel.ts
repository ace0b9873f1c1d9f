import * as vscode from 'vscode';
import { parseWebviewMessage } from '../../native-bridge/protocolGuards';
import type { FromWebview, ToWebview } from '../../native-bridge/protocol';
import { panelHtml } from './panelHtml';

export const DIVERGENCE_VIEW_TYPE = 'ekka.divergence';

/**
 * The Divergence webview panel, one per window. Messages sent before the page says `ready` wait in
 * a queue; every message from the page is validated before anyone sees it.
 */
export class DivergencePanel implements vscode.Disposable {
  private panel: vscode.WebviewPanel | undefined;
  private ready = false;
  private pending: ToWebview[] = [];
  /** Called once the page says it listens (or the panel closes first). */
  private readyWaiters: (() => void)[] = [];
  private readonly disposables: vscode.Disposable[] = [];
  private readonly imageRequests = new Map<string, (dataUrl: string | undefined) => void>();
  private readonly onMessageEmitter = new vscode.EventEmitter<FromWebview>();
  readonly onMessage = this.onMessageEmitter.event;

  constructor(
    private readonly extensionUri: vscode.Uri,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.disposables.push(
      vscode.window.registerWebviewPanelSerializer(DIVERGENCE_VIEW_TYPE, {
        deserializeWebviewPanel: (panel) => {
          this.adopt(panel);
          return Promise.resolve();
        },
      }),
    );
  }

  get exists(): boolean {
    return this.panel !== undefined;
  }

  get visible(): boolean {
    return this.panel?.visible ?? false;
  }

  /**
   * The column for source files, one that does not cover the panel: where a text editor is already
   * visible beside it, else a new group beside.
   */
  get sourceColumn(): vscode.ViewColumn {
    const panelColumn = this.panelColumn();
    const beside = vscode.window.visibleTextEditors.find(
      (editor) => editor.viewColumn !== undefined && editor.viewColumn !== panelColumn,
    );
    if (beside?.viewColumn) return beside.viewColumn;
    if (panelColumn === undefined) return vscode.ViewColumn.One;
    return panelColumn === vscode.ViewColumn.One ? vscode.ViewColumn.Two : vscode.ViewColumn.One;
  }

  /**
   * The group holding the panel, read from the tab groups: `WebviewPanel.viewColumn` keeps the
   * column asked for at creation (Two) when VS Code placed it in the only, empty group.
   */
  private panelColumn(): vscode.ViewColumn | undefined {
    if (!this.panel) return undefined;
    for (const group of vscode.window.tabGroups.all) {
      const holds = group.tabs.some(
        (tab) =>
          tab.input instanceof vscode.TabInputWebview &&
          tab.input.viewType.endsWith(DIVERGENCE_VIEW_TYPE),
      );
      if (holds) return group.viewColumn;
    }
    return this.panel.viewColumn;
  }

  show(preserveFocus = true): void {
    if (this.panel) {
      this.panel.reveal(undefined, preserveFocus);
      return;
    }
    const panel = vscode.window.createWebviewPanel(
      DIVERGENCE_VIEW_TYPE,
      'Ekka: Divergence',
      // Code on the left (column one, where sources open), the chart on the right.
      { viewColumn: vscode.ViewColumn.Two, preserveFocus },
      {
        enableScripts: true,
        localResourceRoots: this.resourceRoots(),
        // Points keep streaming into the chart while another tab covers it.
        retainContextWhenHidden: true,
      },
    );
    this.adopt(panel);
  }

  /**
   * Resolves true once the page has loaded plotly and its script and listens, false after
   * `timeoutMs` or when the panel is closed first: a run started after it draws its first
   * points at once instead of queueing them behind the page's load.
   */
  whenReady(timeoutMs: number): Promise<boolean> {
    if (!this.panel) return Promise.resolve(false);
    if (this.ready) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.ready), timeoutMs);
      this.readyWaiters.push(() => {
        clearTimeout(timer);
        resolve(this.ready);
      });
    });
  }

  post(message: ToWebview): void {
    if (!this.panel) this.show();
    if (this.ready) void this.panel!.webview.postMessage(message);
    else this.pending.push(message);
  }

  /** The chart as a PNG data URL, or undefined when the panel cannot draw one in time. */
  chartImage(timeoutMs = 10_000): Promise<string | undefined> {
    if (!this.panel) return Promise.resolve(undefined);
    const requestId = Math.random().toString(36).slice(2);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.imageRequests.delete(requestId);
        resolve(undefined);
      }, timeoutMs);
      this.imageRequests.set(requestId, (dataUrl) => {
        clearTimeout(timer);
        resolve(dataUrl);
      });
      this.post({ type: 'requestChartImage', requestId });
    });
  }

  dispose(): void {
    this.panel?.dispose();
    this.onMessageEmitter.dispose();
    for (const disposable of this.disposables) disposable.dispose();
  }

  private resourceRoots(): vscode.Uri[] {
    return [
      vscode.Uri.joinPath(this.extensionUri, 'dist', 'webview'),
      vscode.Uri.joinPath(this.extensionUri, 'node_modules', 'plotly.js-cartesian-dist-min'),
    ];
  }

  private adopt(panel: vscode.WebviewPanel): void {
    this.panel = panel;
    this.ready = false;
    const webview = panel.webview;
    webview.options = { enableScripts: true, localResourceRoots: this.resourceRoots() };
    const asUri = (...segments: string[]) =>
      webview.asWebviewUri(vscode.Uri.joinPath(this.extensionUri, ...segments)).toString();
    webview.html = panelHtml({
      cspSource: webview.cspSource,
      plotlyUri: asUri('node_modules', 'plotly.js-cartesian-dist-min', 'plotly-cartesian.min.js'),
      scriptUri: asUri('dist', 'webview', 'panel.js'),
      styleUri: asUri('dist', 'webview', 'panel.css'),
    });
    const subscriptions = [
      webview.onDidReceiveMessage((raw: unknown) => {
        const message = parseWebviewMessage(raw);
        if (!message) {
          this.log.warn(`dropped a malformed message from the Divergence panel`);
          return;
        }
        if (message.type === 'ready') {
          this.ready = true;
          void webview.postMessage({ type: 'hello', protocolVersion: message.protocolVersion });
          for (const queued of this.pending.splice(0)) void webview.postMessage(queued);
          for (const wake of this.readyWaiters.splice(0)) wake();
        } else if (message.type === 'chartImage') {
          this.imageRequests.get(message.requestId)?.(message.dataUrl);
          this.imageRequests.delete(message.requestId);
        }
        this.onMessageEmitter.fire(message);
      }),
      panel.onDidDispose(() => {
        this.panel = undefined;
        this.ready = false;
        this.pending = [];
        for (const wake of this.readyWaiters.splice(0)) wake();
        for (const subscription of subscriptions) subscription.dispose();
      }),
    ];
  }
}
