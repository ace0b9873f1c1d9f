import * as path from 'node:path';
import * as vscode from 'vscode';

/** "Run diagnosis" above every ekka.json. */
export class ConfigCodeLensProvider implements vscode.CodeLensProvider {
  provideCodeLenses(document: vscode.TextDocument): vscode.CodeLens[] {
    if (!/^ekka(-[\w.-]+)?\.json$/.test(path.basename(document.uri.fsPath))) return [];
    const top = new vscode.Range(0, 0, 0, 0);
    return [
      new vscode.CodeLens(top, {
        title: '$(play) Run diagnosis',
        command: 'ekka.runDiagnosis',
        arguments: [document.uri],
      }),
    ];
  }
}
