import * as path from 'node:path';
import * as vscode from 'vscode';
import type { Annotation } from '../../native-bridge/annotations/annotation';
import { writeFileAtomic } from '../../native-bridge/atomicWrite';
import { loadReportAssets, renderHtmlReport } from '../../native-bridge/report/htmlReport';
import { renderMarkdownReport } from '../../native-bridge/report/markdownReport';
import type { AnnotationsController } from '../annotations/annotationsController';
import type { DiagnosisRun } from '../diagnosisController';
import type { DivergencePanel } from '../panel/divergencePanel';

function timestamp(date = new Date()): string {
  return date.toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
}

/**
 * Writes the last diagnosis as a bug-report bundle under `.ekka/reports/<time>/`: report.md (with
 * the chart as divergence.png when the panel can draw it) and a self-contained report.html.
 */
export async function exportReport(
  run: DiagnosisRun | undefined,
  annotations: AnnotationsController,
  panel: DivergencePanel,
): Promise<vscode.Uri | undefined> {
  const result = run?.result;
  if (!run || !result) {
    void vscode.window.showInformationMessage(
      'Ekka: run a diagnosis first, then export its report.',
    );
    return undefined;
  }
  const folder = annotations.folderFor(vscode.Uri.file(run.configPath));
  const dir = path.join(folder.fsPath, '.ekka', 'reports', timestamp());
  const modules = new Set(result.series.map((p) => p.module));
  const included: Annotation[] = annotations.all
    .filter((placed) => placed.folder.fsPath === folder.fsPath)
    .map((placed) => placed.annotation)
    .filter((annotation) => modules.has(annotation.module));

  const dataUrl = await panel.chartImage();
  let chartImage: string | undefined;
  if (dataUrl) {
    chartImage = 'divergence.png';
    const png = Buffer.from(dataUrl.slice(dataUrl.indexOf(',') + 1), 'base64');
    await writeFileAtomic(path.join(dir, chartImage), png);
  }
  const markdown = path.join(dir, 'report.md');
  await writeFileAtomic(markdown, renderMarkdownReport(result, included, { chartImage }));
  await writeFileAtomic(
    path.join(dir, 'report.html'),
    renderHtmlReport(result, included, await loadReportAssets()),
  );
  const uri = vscode.Uri.file(markdown);
  await vscode.window.showTextDocument(uri, { preview: false });
  void vscode.window.showInformationMessage(
    `Ekka: report written to ${vscode.workspace.asRelativePath(dir)} (report.md, report.html${chartImage ? ', divergence.png' : ''}).`,
  );
  return uri;
}
