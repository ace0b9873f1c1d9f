import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DiagnosisResult, SeriesPoint } from '../native-bridge/diagnosis/result';
import type { FromWebview, RunSummary } from '../native-bridge/protocol';
import { BridgeError, type BridgeClient } from './bridge/bridgeClient';
import { revealLine } from './editor/reveal';
import type { SuspectMarkers } from './editor/suspectMarkers';
import type { DivergencePanel } from './panel/divergencePanel';
import { readSettings } from './settings';

/** A diagnosis as the editor knows it: the config it ran and, once finished, its result. */
export interface DiagnosisRun {
  runId: string;
  configPath: string;
  title: string;
  result?: DiagnosisResult;
}

/** Streamed points go to the panel in small batches: one message per animation frame at most. */
const POINT_BATCH_MS = 16;

/** How long a run waits for a newly opened Divergence panel before it starts anyway. */
const PANEL_READY_TIMEOUT_MS = 10_000;

/**
 * Runs diagnoses through the bridge and shows them: progress notification (cancellable), status
 * bar, the Divergence panel filled live, the top suspect in Problems and at its source line.
 */
export class DiagnosisController implements vscode.Disposable {
  private current: { run: DiagnosisRun; cancel: vscode.CancellationTokenSource } | undefined;
  private last: DiagnosisRun | undefined;
  private readonly statusItem = vscode.window.createStatusBarItem(
    'ekka.status',
    vscode.StatusBarAlignment.Left,
    10,
  );
  private readonly finishedEmitter = new vscode.EventEmitter<DiagnosisRun>();
  readonly onDidFinish = this.finishedEmitter.event;
  private readonly subscription: vscode.Disposable;

  constructor(
    private readonly bridge: BridgeClient,
    private readonly panel: DivergencePanel,
    private readonly markers: SuspectMarkers,
    private readonly log: vscode.LogOutputChannel,
  ) {
    this.statusItem.name = 'Ekka diagnosis';
    this.statusItem.command = 'ekka.showDivergence';
    this.subscription = panel.onMessage((message) => void this.onPanelMessage(message));
  }

  get lastRun(): DiagnosisRun | undefined {
    return this.last;
  }

  get running(): boolean {
    return this.current !== undefined;
  }

  /** Runs the ekka.json at `configUri`; `trusted` says whether its models and code may run. */
  async run(configUri: vscode.Uri, title?: string): Promise<DiagnosisRun | undefined> {
    if (this.current) {
      void vscode.window.showWarningMessage(
        'Ekka: a diagnosis is already running. Cancel it first (Ekka: Cancel Diagnosis).',
      );
      return undefined;
    }
    const configPath = configUri.fsPath;
    const run: DiagnosisRun = {
      runId: `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`,
      configPath,
      title: title ?? vscode.workspace.asRelativePath(configUri),
    };
    const cancel = new vscode.CancellationTokenSource();
    this.current = { run, cancel };
    void vscode.commands.executeCommand('setContext', 'ekka.running', true);
    const settings = readSettings();
    const workspaceFolder = vscode.workspace.getWorkspaceFolder(configUri);
    const summary: RunSummary = {
      runId: run.runId,
      title: run.title,
      configPath,
      thresholdRatio: settings.ratioThreshold ?? 2,
    };
    this.markers.clear();
    if (!this.panel.exists && vscode.window.visibleTextEditors.length === 0) {
      // Code on the left, chart on the right: with no editor open, the panel would take the
      // only group and the first source opened would cover it.
      await vscode.window.showTextDocument(configUri, {
        viewColumn: vscode.ViewColumn.One,
        preview: true,
      });
    }
    this.panel.show();
    this.panel.post({ type: 'runStarted', run: summary });
    // The chart is open before the first comparison: its points are drawn as they come, not
    // queued behind plotly's load (bounded, so a page that never loads does not stall the run).
    await this.panel.whenReady(PANEL_READY_TIMEOUT_MS);
    this.log.info(`diagnosing ${configPath} (run ${run.runId})`);

    let compared = 0;
    let batch: SeriesPoint[] = [];
    let comparedAt: number[] = [];
    let flushTimer: NodeJS.Timeout | undefined;
    const flush = () => {
      flushTimer = undefined;
      if (batch.length === 0) return;
      this.panel.post({ type: 'points', runId: run.runId, points: batch, comparedAt });
      batch = [];
      comparedAt = [];
    };
    this.setStatus(`$(sync~spin) Ekka: diagnosing ${run.title}`);
    try {
      const result = await vscode.window.withProgress(
        {
          location: vscode.ProgressLocation.Notification,
          title: `Ekka: diagnosing ${run.title}`,
          cancellable: true,
        },
        (progress, token) => {
          token.onCancellationRequested(() => cancel.cancel());
          return this.bridge.runDiagnosis(
            {
              runId: run.runId,
              configPath,
              // A workspace's ekka.json may read only the workspace's files (the bundled sample
              // lives in the extension's own folder).
              ...(workspaceFolder ? { workspaceFolder: workspaceFolder.uri.fsPath } : {}),
              overrides: {
                ...(settings.ratioThreshold !== undefined
                  ? { ratioThreshold: settings.ratioThreshold }
                  : {}),
                executionProvider: settings.executionProvider,
                ...(settings.pythonInterpreter ? { python: settings.pythonInterpreter } : {}),
              },
            },
            {
              onPoint: (params) => {
                batch.push(params.point);
                comparedAt.push(params.comparedAt);
                flushTimer ??= setTimeout(flush, POINT_BATCH_MS);
                compared++;
                progress.report({ message: `${compared} modules compared` });
                this.setStatus(`$(sync~spin) Ekka: ${compared} modules compared`);
              },
              onProgress: (message) => this.log.info(message),
            },
            cancel.token,
          );
        },
      );
      clearTimeout(flushTimer);
      flush();
      run.result = result;
      this.last = run;
      this.panel.post({ type: 'runFinished', runId: run.runId, result });
      this.log.info(
        `finished: ${result.series.length} modules, change point ${result.changePoint?.index ?? 'none'}, top suspect ${result.suspects[0]?.module ?? 'none'}`,
      );
      for (const warning of result.warnings) this.log.warn(warning);
      await this.showTopSuspect(run);
      this.finishedEmitter.fire(run);
      return run;
    } catch (cause) {
      clearTimeout(flushTimer);
      flush();
      const message = cause instanceof Error ? cause.message : String(cause);
      this.panel.post({ type: 'runFailed', runId: run.runId, message });
      if (cause instanceof BridgeError && cause.kind === 'cancelled') {
        this.log.info(`run ${run.runId} cancelled`);
        void vscode.window.showInformationMessage('Ekka: diagnosis cancelled.');
      } else {
        this.log.error(`run ${run.runId} failed: ${message}`);
        // A bridge crash was already reported once by the bridge's exit handler.
        if (!(cause instanceof BridgeError && cause.kind === 'bridge')) {
          void vscode.window.showErrorMessage(`Ekka: ${message}`);
        }
      }
      this.last = run;
      return undefined;
    } finally {
      this.current = undefined;
      cancel.dispose();
      this.statusItem.hide();
      void vscode.commands.executeCommand('setContext', 'ekka.running', false);
    }
  }

  cancel(): void {
    if (!this.current) {
      void vscode.window.showInformationMessage('Ekka: no diagnosis is running.');
      return;
    }
    this.current.cancel.cancel();
  }

  async rerun(): Promise<void> {
    const last = this.current?.run ?? this.last;
    if (!last) {
      void vscode.window.showInformationMessage(
        'Ekka: nothing to re-run yet. Run a diagnosis first.',
      );
      return;
    }
    await this.run(vscode.Uri.file(last.configPath), last.title);
  }

  /** Opens the source of series point `index` of the last run: its kernel when it has one. */
  async revealPoint(index: number): Promise<void> {
    const run = this.last;
    const point = run?.result?.series[index];
    if (!run || !point) return;
    const suspect = run.result!.suspects.find((s) => s.index === index);
    const baseDir = path.dirname(run.configPath);
    // A module computed by a custom kernel in the workspace: the kernel is where to look.
    const kernel = suspect?.kernel && (suspect.kernel.launches?.[0] ?? suspect.kernel);
    if (kernel) {
      const file = path.resolve(baseDir, kernel.file);
      this.log.info(`#${index} ${point.module}: kernel ${kernel.symbol} at ${file}:${kernel.line}`);
      await revealLine(vscode.Uri.file(file), kernel.line, { viewColumn: this.panel.sourceColumn });
      return;
    }
    if (suspect?.source) {
      await revealLine(
        vscode.Uri.file(path.resolve(baseDir, suspect.source.file)),
        suspect.source.line,
        { viewColumn: this.panel.sourceColumn },
      );
      return;
    }
    if (point.source) {
      // Captured runs name each module's class as they run.
      await revealLine(
        vscode.Uri.file(path.resolve(baseDir, point.source.file)),
        point.source.line,
        {
          viewColumn: this.panel.sourceColumn,
        },
      );
      return;
    }
    try {
      const location = await this.bridge.locateModule(run.configPath, point.module);
      if (!location) {
        void vscode.window.showInformationMessage(
          `Ekka: no source found for ${point.module} (is there a "source" section in the ekka.json?).`,
        );
        return;
      }
      await revealLine(vscode.Uri.file(location.file), location.line, {
        viewColumn: this.panel.sourceColumn,
      });
    } catch (cause) {
      void vscode.window.showErrorMessage(`Ekka: ${(cause as Error).message}`);
    }
  }

  dispose(): void {
    this.current?.cancel.cancel();
    this.subscription.dispose();
    this.statusItem.dispose();
    this.finishedEmitter.dispose();
  }

  private async showTopSuspect(run: DiagnosisRun): Promise<void> {
    const top = run.result?.suspects[0];
    if (!top) {
      void vscode.window.showInformationMessage(
        `Ekka: no divergence above noise in ${run.title} (${run.result?.series.length ?? 0} modules compared).`,
      );
      return;
    }
    if (!top.source) return;
    const file = vscode.Uri.file(path.resolve(path.dirname(run.configPath), top.source.file));
    const kernel = top.kernel && (top.kernel.launches?.[0] ?? top.kernel);
    this.markers.show(
      top,
      file,
      run.result?.changePoint?.index,
      kernel && {
        file: vscode.Uri.file(path.resolve(path.dirname(run.configPath), kernel.file)),
        line: kernel.line,
        symbol: kernel.symbol,
      },
    );
    try {
      await revealLine(file, top.source.line, { viewColumn: this.panel.sourceColumn });
    } catch (cause) {
      this.log.warn(`cannot open ${file.fsPath}: ${(cause as Error).message}`);
    }
  }

  private async onPanelMessage(message: FromWebview): Promise<void> {
    const run = this.last;
    switch (message.type) {
      case 'reveal':
        if (run?.runId === message.runId) await this.revealPoint(message.index);
        return;
      case 'selectPoint': {
        if (run?.runId !== message.runId) return;
        try {
          const map = await this.bridge.getErrorMap(message.runId, message.index);
          this.panel.post({ type: 'errorMap', runId: message.runId, index: message.index, map });
        } catch (cause) {
          this.panel.post({
            type: 'errorMap',
            runId: message.runId,
            index: message.index,
            map: null,
            message: (cause as Error).message,
          });
        }
        return;
      }
      case 'rerun':
        await this.rerun();
        return;
      default:
        return;
    }
  }

  private setStatus(text: string): void {
    this.statusItem.text = text;
    this.statusItem.tooltip = 'Show the Divergence view';
    this.statusItem.show();
  }
}
