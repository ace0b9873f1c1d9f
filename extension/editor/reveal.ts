import * as vscode from 'vscode';

/** Opens `file` with the cursor at the start of 1-based `line`, centred. */
export async function revealLine(
  file: vscode.Uri,
  line: number,
  options: { preview?: boolean; viewColumn?: vscode.ViewColumn; preserveFocus?: boolean } = {},
): Promise<vscode.TextEditor> {
  const document = await vscode.workspace.openTextDocument(file);
  const zeroBased = Math.min(Math.max(line - 1, 0), Math.max(document.lineCount - 1, 0));
  const position = new vscode.Position(
    zeroBased,
    document.lineAt(zeroBased).firstNonWhitespaceCharacterIndex,
  );
  const editor = await vscode.window.showTextDocument(document, {
    selection: new vscode.Range(position, position),
    preview: options.preview ?? false,
    viewColumn: options.viewColumn ?? vscode.ViewColumn.One,
    preserveFocus: options.preserveFocus ?? false,
  });
  editor.revealRange(new vscode.Range(position, position), vscode.TextEditorRevealType.InCenter);
  return editor;
}
