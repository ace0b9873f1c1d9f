import { execFile } from 'node:child_process';
import * as path from 'node:path';
import * as vscode from 'vscode';

/** The fields of the CLI's JSON result this command reads. */
interface HeadlessResult {
  suspects: { module: string; ratio: number; source: { file: string; line: number } | null }[];
}

/**
 * Runs the headless diagnosis (`dist/cli.js`) on an ekka.json in a child process, shows its report
 * in the Ekka output channel and opens the top suspect's source line.
 */
async function runHeadless(
  context: vscode.ExtensionContext,
  output: vscode.OutputChannel,
  uri: vscode.Uri | undefined,
): Promise<void> {
  const config = uri ?? (await pickConfig());
  if (!config) return;
  const cli = context.asAbsolutePath(path.join('dist', 'cli.js'));
  const jsonOut = vscode.Uri.joinPath(context.globalStorageUri, 'last-diagnosis.json');
  await vscode.workspace.fs.createDirectory(context.globalStorageUri);
  output.show(true);
  output.appendLine(`$ ekka diagnose ${config.fsPath}`);
  await vscode.window.withProgress(
    {
      location: vscode.ProgressLocation.Notification,
      title: 'Ekka: diagnosing',
      cancellable: true,
    },
    (_progress, token) =>
      new Promise<void>((resolve) => {
        const child = execFile(
          process.execPath,
          [cli, 'diagnose', config.fsPath, '--json', jsonOut.fsPath],
          { cwd: path.dirname(config.fsPath), env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' } },
          (error, stdout, stderr) => {
            output.append(stdout);
            if (stderr) output.append(stderr);
            if (error && !token.isCancellationRequested) {
              void vscode.window.showErrorMessage(`Ekka: ${stderr.trim() || error.message}`);
              resolve();
              return;
            }
            void revealTopSuspect(jsonOut, config).finally(resolve);
          },
        );
        token.onCancellationRequested(() => child.kill());
      }),
  );
}

async function pickConfig(): Promise<vscode.Uri | undefined> {
  const active = vscode.window.activeTextEditor?.document.uri;
  if (active && path.basename(active.fsPath) === 'ekka.json') return active;
  const found = await vscode.workspace.findFiles('**/ekka.json', '**/node_modules/**', 50);
  if (found.length <= 1) return found[0];
  const choice = await vscode.window.showQuickPick(
    found.map((uri) => ({ label: vscode.workspace.asRelativePath(uri), uri })),
    { placeHolder: 'Which diagnosis?' },
  );
  return choice?.uri;
}

async function revealTopSuspect(jsonOut: vscode.Uri, config: vscode.Uri): Promise<void> {
  const bytes = await vscode.workspace.fs.readFile(jsonOut);
  const result = JSON.parse(new TextDecoder().decode(bytes)) as HeadlessResult;
  const top = result.suspects[0];
  if (!top) {
    void vscode.window.showInformationMessage('Ekka: no divergence above noise.');
    return;
  }
  if (!top.source) return;
  const file = vscode.Uri.file(path.resolve(path.dirname(config.fsPath), top.source.file));
  const line = Math.max(top.source.line - 1, 0);
  await vscode.window.showTextDocument(file, { selection: new vscode.Range(line, 0, line, 0) });
}

export function activate(context: vscode.ExtensionContext): void {
  const output = vscode.window.createOutputChannel('Ekka');
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand('ekka.runDiagnosis', (uri?: vscode.Uri) =>
      runHeadless(context, output, uri),
    ),
  );
}

export function deactivate(): void {}
