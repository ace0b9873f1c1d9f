import * as path from 'node:path';
import * as vscode from 'vscode';
import { resolveConfig } from '../../native-bridge/diagnosis/config';
import { writeFileAtomic } from '../../native-bridge/atomicWrite';
import { configContent, isClassName, type ConfigChoices } from './configTemplate';

const BROWSE = '$(folder-opened) Browse…';

async function pickFile(
  title: string,
  glob: string,
  filters: Record<string, string[]>,
  exclude: string[] = [],
): Promise<string | undefined> {
  const found = (await vscode.workspace.findFiles(glob, '**/node_modules/**', 500))
    .map((uri) => uri.fsPath)
    .filter((file) => !exclude.includes(file));
  const picked = await vscode.window.showQuickPick(
    [
      ...found.map((file) => ({ label: vscode.workspace.asRelativePath(file), file })),
      { label: BROWSE, file: '' },
    ],
    { title, ignoreFocusOut: true, matchOnDescription: true },
  );
  if (!picked) return undefined;
  if (picked.file) return picked.file;
  const chosen = await vscode.window.showOpenDialog({ title, canSelectMany: false, filters });
  return chosen?.[0]?.fsPath;
}

/**
 * Builds an ekka.json step by step (target, reference, input, optional model source), checks it
 * against the schema, and saves it without ever replacing an existing file.
 */
export async function createConfig(): Promise<vscode.Uri | undefined> {
  const step = (n: number, what: string) => `Ekka: new diagnosis (${n}/5): ${what}`;
  const target = await pickFile(step(1, 'target model (the engine under suspicion)'), '**/*.onnx', {
    'ONNX models': ['onnx'],
  });
  if (!target) return undefined;
  const reference = await pickFile(
    step(2, 'reference model (known correct)'),
    '**/*.onnx',
    { 'ONNX models': ['onnx'] },
    [target],
  );
  if (!reference) return undefined;
  const input = await pickFile(step(3, 'input tensors (JSON)'), '**/*.json', { JSON: ['json'] });
  if (!input) return undefined;
  const optimization = await vscode.window.showQuickPick(
    [
      { label: 'all', description: 'the optimized session, as served' },
      { label: 'extended' },
      { label: 'basic' },
      { label: 'disabled', description: 'no graph optimization' },
    ],
    { title: step(4, 'target graph optimization'), ignoreFocusOut: true },
  );
  if (!optimization) return undefined;
  const choices: ConfigChoices = {
    name: `${path.basename(target)} vs ${path.basename(reference)}`,
    target,
    reference,
    input,
    targetOptimization: optimization.label as ConfigChoices['targetOptimization'],
  };
  const sourceFile = await pickFile(
    step(5, "the target's model code (Escape to skip source lines)"),
    '**/*.py',
    { Python: ['py'] },
  );
  if (sourceFile) {
    const className = await vscode.window.showInputBox({
      title: 'Ekka: root nn.Module class in that file',
      placeHolder: 'LlamaForCausalLM',
      ignoreFocusOut: true,
      validateInput: (text) => (isClassName(text) ? undefined : 'A Python class name'),
    });
    if (className) choices.sourceEntry = { file: sourceFile, className };
  }

  const folder = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(target))?.uri.fsPath;
  let file = path.join(path.dirname(target), 'ekka.json');
  const exists = await vscode.workspace.fs.stat(vscode.Uri.file(file)).then(
    () => true,
    () => false,
  );
  if (exists) {
    const saveAs = await vscode.window.showSaveDialog({
      title: `${vscode.workspace.asRelativePath(file)} exists: save the new diagnosis as`,
      defaultUri: vscode.Uri.file(path.join(path.dirname(target), 'ekka-2.json')),
      filters: { JSON: ['json'] },
    });
    if (!saveAs) return undefined;
    file = saveAs.fsPath;
  }
  const content = configContent(choices, path.dirname(file));
  try {
    await resolveConfig(content, path.dirname(file), file);
  } catch (cause) {
    void vscode.window.showErrorMessage(`Ekka: ${(cause as Error).message}`);
    return undefined;
  }
  await writeFileAtomic(file, `${JSON.stringify(content, null, 2)}\n`);
  const uri = vscode.Uri.file(file);
  await vscode.window.showTextDocument(uri);
  if (folder === undefined) {
    void vscode.window.showInformationMessage(
      'Ekka: the diagnosis is saved outside the workspace.',
    );
  }
  return uri;
}
