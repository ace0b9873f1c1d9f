import * as vscode from 'vscode';
import type { Suspect } from '../../native-bridge/diagnosis/result';

interface Marker {
  uri: vscode.Uri;
  line: number;
  text: string;
  hover: vscode.MarkdownString;
}

function formatRatio(ratio: number): string {
  return ratio >= 1e4 || ratio < 1e-2 ? ratio.toExponential(2) : ratio.toFixed(2);
}

/**
 * The top suspect in the Problems panel at its source line, and an inline decoration there showing
 * its error ratio; both cleared when a new diagnosis starts.
 */
export class SuspectMarkers implements vscode.Disposable {
  private readonly diagnostics = vscode.languages.createDiagnosticCollection('ekka');
  private readonly decoration = vscode.window.createTextEditorDecorationType({
    after: {
      margin: '0 0 0 2em',
      color: new vscode.ThemeColor('editorWarning.foreground'),
      fontStyle: 'italic',
    },
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor('editorWarning.background'),
  });
  private markers: Marker[] = [];
  private readonly subscription = vscode.window.onDidChangeVisibleTextEditors(() =>
    this.decorate(),
  );

  clear(): void {
    this.markers = [];
    this.diagnostics.clear();
    this.decorate();
  }

  /** Marks the top suspect; `file` is its absolute source file. */
  show(
    suspect: Suspect,
    file: vscode.Uri,
    changePointIndex: number | undefined,
    kernel?: { file: vscode.Uri; line: number; symbol: string },
  ): void {
    const line = suspect.source!.line;
    const range = new vscode.Range(line - 1, 0, line - 1, Number.MAX_SAFE_INTEGER);
    const where =
      changePointIndex !== undefined ? `; divergence starts at module #${changePointIndex}` : '';
    const drill = suspect.drillDown;
    const op = suspect.statement && drill?.first !== undefined ? drill.ops[drill.first] : undefined;
    const statement = op
      ? `; its own error starts at this line's ${op.op} (ratio ${formatRatio(op.ratio ?? 0)} on the reference's arguments, ${drill!.inputsAgree ? 'what it read agrees' : 'what it read diverges too'})`
      : '';
    const diagnostic = new vscode.Diagnostic(
      range,
      `${suspect.module} (${suspect.op}) diverges from the reference: error ratio ${formatRatio(suspect.ratio)}, confidence ${suspect.confidence.toFixed(2)}${where}${statement}`,
      vscode.DiagnosticSeverity.Warning,
    );
    diagnostic.source = 'Ekka';
    diagnostic.code = 'silent-divergence';
    if (kernel) {
      diagnostic.relatedInformation = [
        new vscode.DiagnosticRelatedInformation(
          new vscode.Location(kernel.file, new vscode.Position(kernel.line - 1, 0)),
          `computed by the custom kernel ${kernel.symbol}`,
        ),
      ];
    }
    this.diagnostics.set(file, [diagnostic]);
    const hover = new vscode.MarkdownString(
      `**Ekka suspect #${suspect.rank}**: \`${suspect.module}\` (${suspect.op})\n\n` +
        `error ratio ${formatRatio(suspect.ratio)} · confidence ${suspect.confidence.toFixed(2)}` +
        (suspect.ownRatio !== undefined ? ` · own ratio ${formatRatio(suspect.ownRatio)}` : '') +
        (op
          ? `\n\nop \`${op.op}\` ${JSON.stringify(op.shape)}: ratio ${formatRatio(op.ratio ?? 0)}, ` +
            `inputs ${formatRatio(op.inputRatio)} (run again on the reference's arguments)` +
            (drill!.missing?.length
              ? `\n\nthe reference computes \`${drill!.missing.map((m) => m.op).join('`, `')}\` just before it; the target has no counterpart`
              : '')
          : ''),
    );
    this.markers = [
      {
        uri: file,
        line,
        text: `◀ Ekka #${suspect.rank}: ratio ${formatRatio(suspect.ratio)}`,
        hover,
      },
    ];
    this.decorate();
  }

  dispose(): void {
    this.subscription.dispose();
    this.diagnostics.dispose();
    this.decoration.dispose();
  }

  private decorate(): void {
    for (const editor of vscode.window.visibleTextEditors) {
      const options = this.markers
        .filter((m) => m.uri.toString() === editor.document.uri.toString())
        .map((m) => ({
          range: new vscode.Range(m.line - 1, 0, m.line - 1, 0),
          hoverMessage: m.hover,
          renderOptions: { after: { contentText: m.text } },
        }));
      editor.setDecorations(this.decoration, options);
    }
  }
}
