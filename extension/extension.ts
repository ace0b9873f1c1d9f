import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Suspect } from '../native-bridge/diagnosis/result';
import type { FromWebview } from '../native-bridge/protocol';
import { AnnotationsController, type PlacedAnnotation } from './annotations/annotationsController';
import { BridgeClient } from './bridge/bridgeClient';
import { createConfig } from './commands/createConfig';
import { exportReport } from './commands/exportReport';
import { DiagnosisController, type DiagnosisRun } from './diagnosisController';
import { ConfigCodeLensProvider } from './editor/configCodeLens';
import { SuspectMarkers } from './editor/suspectMarkers';
import { DivergencePanel } from './panel/divergencePanel';
import { readSettings } from './settings';

/** The sample diagnosis shipped with the extension. */
const SAMPLE_CONFIG = path.join('samples', 'tiny-llama', 'cases', 'rope-interleaved', 'ekka.json');

const UNTRUSTED =
  'Ekka does not run the models or the code named by an ekka.json in a workspace you have not trusted. Trust the workspace (Workspaces: Manage Workspace Trust) to diagnose it.';

async function pickConfig(): Promise<vscode.Uri | undefined> {
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active && /^ekka(-[\w.-]+)?\.json$/.test(path.basename(active.fsPath))) return active;
  const found = await vscode.workspace.findFiles('**/ekka*.json', '**/node_modules/**', 200);
  if (found.length === 0) {
    const create = await vscode.window.showInformationMessage(
      'Ekka: no ekka.json in this workspace.',
      'Create one',
      'Open the sample',
    );
    if (create === 'Create one') return createConfig();
    if (create === 'Open the sample') await vscode.commands.executeCommand('ekka.openSample');
    return undefined;
  }
  if (found.length === 1) return found[0];
  const choice = await vscode.window.showQuickPick(
    found
      .map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri }))
      .sort((a, b) => a.label.localeCompare(b.label)),
    { title: 'Ekka: which diagnosis?', ignoreFocusOut: true },
  );
  return choice?.uri;
}

/** The suspect at the cursor (same file, nearest line), else one the user picks from the last run. */
async function suspectToAnnotate(run: DiagnosisRun): Promise<Suspect | undefined> {
  const suspects = run.result?.suspects ?? [];
  const editor = vscode.window.activeTextEditor;
  if (editor) {
    const here = editor.document.uri.fsPath;
    const line = editor.selection.active.line + 1;
    const inFile = suspects.filter(
      (s) => s.source && path.resolve(path.dirname(run.configPath), s.source.file) === here,
    );
    inFile.sort((a, b) => Math.abs(a.source!.line - line) - Math.abs(b.source!.line - line));
    if (inFile[0]) return inFile[0];
  }
  const picked = await vscode.window.showQuickPick(
    suspects.map((s) => ({
      label: `#${s.rank} ${s.module}`,
      description: `ratio ${s.ratio.toExponential(2)}, confidence ${s.confidence.toFixed(2)}`,
      suspect: s,
    })),
    { title: 'Ekka: annotate which suspect?' },
  );
  return picked?.suspect;
}

let activeBridge: BridgeClient | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('Ekka', { log: true });
  const settings = readSettings();
  const bridge = new BridgeClient({
    modulePath: context.asAbsolutePath(path.join('dist', 'bridge.js')),
    // VS Code's own runtime runs the bridge as plain Node.
    env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
    idleMs: settings.idleTimeoutSeconds * 1000,
    log: (line) => log.info(`[bridge] ${line}`),
    onUnexpectedExit: (message) => {
      log.error(message);
      void vscode.window.showErrorMessage(`Ekka: ${message}`);
    },
  });
  activeBridge = bridge;
  const panel = new DivergencePanel(context.extensionUri, log);
  const markers = new SuspectMarkers();
  const diagnoses = new DiagnosisController(bridge, panel, markers, log);
  const annotations = new AnnotationsController(log, context.globalStorageUri);
  const tree = vscode.window.createTreeView('ekka.annotations', {
    treeDataProvider: annotations,
    showCollapseAll: false,
  });

  const requireTrust = (): boolean => {
    if (vscode.workspace.isTrusted) return true;
    log.warn('refused to run a diagnosis: the workspace is not trusted');
    void vscode.window.showWarningMessage(UNTRUSTED);
    return false;
  };
  const annotateRun = async (run: DiagnosisRun | undefined, index?: number) => {
    if (!run?.result) {
      void vscode.window.showInformationMessage(
        'Ekka: run a diagnosis first, then annotate a suspect.',
      );
      return;
    }
    const point = index !== undefined ? run.result.series[index] : undefined;
    let suspect: Pick<Suspect, 'module' | 'op' | 'ratio' | 'source'> | undefined =
      index !== undefined
        ? run.result.suspects.find((s) => s.index === index)
        : await suspectToAnnotate(run);
    if (!suspect && point) {
      // Any module of the chart: its source comes from the locator (an absolute path).
      const location = await bridge.locateModule(run.configPath, point.module).catch(() => null);
      suspect = {
        module: point.module,
        op: point.op,
        ratio: point.ratio,
        source: location,
      };
    }
    if (suspect) await annotations.annotate(run, suspect);
  };
  const pushAnnotations = () =>
    panel.post({ type: 'annotations', annotations: annotations.all.map((a) => a.annotation) });

  context.subscriptions.push(
    log,
    panel,
    markers,
    diagnoses,
    annotations,
    tree,
    vscode.commands.registerCommand('ekka.runDiagnosis', async (uri?: vscode.Uri) => {
      if (!requireTrust()) return;
      const config = uri instanceof vscode.Uri ? uri : await pickConfig();
      if (config) await diagnoses.run(config);
    }),
    vscode.commands.registerCommand('ekka.openSample', () =>
      diagnoses.run(vscode.Uri.file(context.asAbsolutePath(SAMPLE_CONFIG)), 'bundled sample'),
    ),
    vscode.commands.registerCommand('ekka.createConfig', async () => {
      const created = await createConfig();
      if (created && vscode.workspace.isTrusted) {
        const run = await vscode.window.showInformationMessage(
          `Ekka: saved ${vscode.workspace.asRelativePath(created)}.`,
          'Run diagnosis',
        );
        if (run) await diagnoses.run(created);
      }
    }),
    vscode.commands.registerCommand('ekka.showDivergence', () => panel.show(false)),
    vscode.commands.registerCommand('ekka.rerun', () =>
      requireTrust() ? diagnoses.rerun() : undefined,
    ),
    vscode.commands.registerCommand('ekka.cancel', () => diagnoses.cancel()),
    vscode.commands.registerCommand('ekka.annotateSuspect', () => annotateRun(diagnoses.lastRun)),
    vscode.commands.registerCommand('ekka.exportReport', () =>
      exportReport(diagnoses.lastRun, annotations, panel),
    ),
    vscode.commands.registerCommand('ekka.revealAnnotation', (item: PlacedAnnotation) =>
      annotations.reveal(item),
    ),
    vscode.commands.registerCommand('ekka.deleteAnnotation', async (item?: PlacedAnnotation) => {
      const target = item ?? tree.selection[0];
      if (!target) return;
      const confirm = await vscode.window.showWarningMessage(
        `Delete the annotation ${target.annotation.cause} on ${target.annotation.module}?`,
        { modal: true },
        'Delete',
      );
      if (confirm === 'Delete') await annotations.remove(target);
    }),
    vscode.languages.registerCodeLensProvider(
      { language: 'json', pattern: '**/ekka*.json' },
      new ConfigCodeLensProvider(),
    ),
    panel.onMessage((message: FromWebview) => {
      if (message.type === 'annotate' && diagnoses.lastRun?.runId === message.runId) {
        void annotateRun(diagnoses.lastRun, message.index);
      } else if (message.type === 'exportReport') {
        void exportReport(diagnoses.lastRun, annotations, panel);
      } else if (message.type === 'ready') {
        pushAnnotations();
      }
    }),
    annotations.onDidChange(pushAnnotations),
    diagnoses.onDidFinish(
      () => void vscode.commands.executeCommand('setContext', 'ekka.hasResult', true),
    ),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('ekka'))
        log.info('settings changed: they apply to the next run');
    }),
  );
  void annotations.refresh();
  log.info(`Ekka activated (workspace ${vscode.workspace.isTrusted ? 'trusted' : 'not trusted'})`);
  void vscode.commands.executeCommand('setContext', 'ekka.activated', true);
}

/** Stops the bridge process (politely, then by signal) before the extension host goes. */
export async function deactivate(): Promise<void> {
  await activeBridge?.dispose();
  activeBridge = undefined;
}
