import * as path from 'node:path';
import * as vscode from 'vscode';
import { ANNOTATIONS_PATH, type Annotation } from '../../native-bridge/annotations/annotation';
import { AnnotationStore } from '../../native-bridge/annotations/annotationStore';
import type { Suspect } from '../../native-bridge/diagnosis/result';
import type { DiagnosisRun } from '../diagnosisController';
import { revealLine } from '../editor/reveal';
import { pickRootCause } from './annotationPicker';

/** An annotation with the folder its paths are relative to. */
export interface PlacedAnnotation {
  annotation: Annotation;
  folder: vscode.Uri;
}

/**
 * Annotations of the open workspace folders: recorded from a suspect, saved in each folder's
 * `.ekka/annotations.json`, shown at their source lines as comment threads, listed in a tree view.
 */
export class AnnotationsController
  implements vscode.TreeDataProvider<PlacedAnnotation>, vscode.Disposable
{
  private readonly comments = vscode.comments.createCommentController(
    'ekka.annotations',
    'Ekka annotations',
  );
  private threads: vscode.CommentThread[] = [];
  private placed: PlacedAnnotation[] = [];
  private readonly treeEmitter = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.treeEmitter.event;
  private readonly changedEmitter = new vscode.EventEmitter<PlacedAnnotation[]>();
  readonly onDidChange = this.changedEmitter.event;
  private readonly stores = new Map<string, AnnotationStore>();
  private readonly watcher = vscode.workspace.createFileSystemWatcher(`**/${ANNOTATIONS_PATH}`);

  constructor(
    private readonly log: vscode.LogOutputChannel,
    private readonly fallbackFolder: vscode.Uri,
  ) {
    this.watcher.onDidChange(() => void this.refresh());
    this.watcher.onDidCreate(() => void this.refresh());
    this.watcher.onDidDelete(() => void this.refresh());
  }

  get all(): PlacedAnnotation[] {
    return this.placed;
  }

  /** The folder whose `.ekka/` holds annotations for a file: its workspace folder, else a fallback. */
  folderFor(file: vscode.Uri): vscode.Uri {
    return vscode.workspace.getWorkspaceFolder(file)?.uri ?? this.fallbackFolder;
  }

  store(folder: vscode.Uri): AnnotationStore {
    const file = path.join(folder.fsPath, ANNOTATIONS_PATH);
    let store = this.stores.get(file);
    if (!store) {
      store = new AnnotationStore(file);
      this.stores.set(file, store);
    }
    return store;
  }

  /** Asks for a root cause and records it for `suspect` of `run`. */
  async annotate(run: DiagnosisRun, suspect: Pick<Suspect, 'module' | 'op' | 'ratio' | 'source'>) {
    const picked = await pickRootCause(suspect.module);
    if (!picked) return undefined;
    const config = vscode.Uri.file(run.configPath);
    const folder = this.folderFor(config);
    const relative = (file: string) => path.relative(folder.fsPath, file).split(path.sep).join('/');
    const sourceFile =
      suspect.source && path.resolve(path.dirname(run.configPath), suspect.source.file);
    try {
      const annotation = await this.store(folder).add({
        diagnosis: relative(run.configPath),
        module: suspect.module,
        op: suspect.op,
        ratio: suspect.ratio,
        ...(sourceFile
          ? { source: { file: relative(sourceFile), line: suspect.source!.line } }
          : {}),
        ...picked,
      });
      this.log.info(`annotated ${suspect.module}: ${annotation.cause} (${annotation.id})`);
      await this.refresh();
      return annotation;
    } catch (cause) {
      void vscode.window.showErrorMessage(
        `Ekka: annotation not saved: ${(cause as Error).message}`,
      );
      return undefined;
    }
  }

  async remove(item: PlacedAnnotation): Promise<void> {
    try {
      await this.store(item.folder).remove(item.annotation.id);
      await this.refresh();
    } catch (cause) {
      void vscode.window.showErrorMessage(`Ekka: ${(cause as Error).message}`);
    }
  }

  async reveal(item: PlacedAnnotation): Promise<void> {
    const source = item.annotation.source;
    if (!source) return;
    await revealLine(vscode.Uri.joinPath(item.folder, source.file), source.line);
  }

  /** Reads every folder's annotations again and redraws threads and the tree. */
  async refresh(): Promise<void> {
    const folders = [
      ...(vscode.workspace.workspaceFolders ?? []).map((f) => f.uri),
      this.fallbackFolder,
    ];
    const placed: PlacedAnnotation[] = [];
    for (const folder of folders) {
      try {
        for (const annotation of await this.store(folder).list())
          placed.push({ annotation, folder });
      } catch (cause) {
        // A hand-edited file that no longer parses is reported, never overwritten.
        this.log.error((cause as Error).message);
        void vscode.window.showWarningMessage(`Ekka: ${(cause as Error).message}`);
      }
    }
    this.placed = placed;
    for (const thread of this.threads) thread.dispose();
    this.threads = placed.flatMap(({ annotation, folder }) => {
      if (!annotation.source) return [];
      const uri = vscode.Uri.joinPath(folder, annotation.source.file);
      const line = annotation.source.line - 1;
      const body = new vscode.MarkdownString(
        `**${annotation.cause}** (${annotation.location}) on \`${annotation.module}\`\n\n`,
      );
      body.appendText(annotation.note || '(no note)');
      const thread = this.comments.createCommentThread(uri, new vscode.Range(line, 0, line, 0), [
        {
          body,
          mode: vscode.CommentMode.Preview,
          author: { name: 'Ekka annotation' },
          timestamp: new Date(annotation.updated ?? annotation.created),
        },
      ]);
      thread.canReply = false;
      thread.label = annotation.cause;
      thread.contextValue = 'ekkaAnnotation';
      thread.collapsibleState = vscode.CommentThreadCollapsibleState.Expanded;
      return [thread];
    });
    this.treeEmitter.fire();
    this.changedEmitter.fire(placed);
  }

  getTreeItem(item: PlacedAnnotation): vscode.TreeItem {
    const { annotation } = item;
    const tree = new vscode.TreeItem(`${annotation.cause}: ${annotation.module}`);
    tree.description = annotation.note;
    tree.tooltip = new vscode.MarkdownString(
      `**${annotation.cause}** (${annotation.location})\n\n\`${annotation.module}\`${annotation.source ? ` at ${annotation.source.file}:${annotation.source.line}` : ''}`,
    );
    tree.contextValue = 'ekkaAnnotation';
    tree.iconPath = new vscode.ThemeIcon('note');
    if (annotation.source) {
      tree.command = { command: 'ekka.revealAnnotation', title: 'Show source', arguments: [item] };
    }
    return tree;
  }

  getChildren(item?: PlacedAnnotation): PlacedAnnotation[] {
    return item ? [] : this.placed;
  }

  dispose(): void {
    for (const thread of this.threads) thread.dispose();
    this.comments.dispose();
    this.watcher.dispose();
    this.treeEmitter.dispose();
    this.changedEmitter.dispose();
  }
}
