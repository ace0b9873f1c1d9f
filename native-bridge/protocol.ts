/**
 * The one protocol between the extension, the bridge process and the Divergence webview: types
 * only, plus PROTOCOL_VERSION, so the webview's bundle carries no runtime code of it. Bridge calls
 * are JSON-RPC (their method constants live in bridge/rpc.ts); webview messages are a typed union.
 * Both handshakes carry PROTOCOL_VERSION, and a peer speaking another version is refused.
 */
import type { Annotation } from './annotations/annotation';
import type { DiagnosisResult, SeriesPoint, Suspect } from './diagnosis/result';
import type { ErrorMap } from './compare/errorMap';
import type { SourceLocation } from './source/pythonLocator';

export type { ErrorMap };

export const PROTOCOL_VERSION = 1;

// ---- extension ⇄ bridge ----

export interface InitializeParams {
  protocolVersion: number;
}
export interface InitializeResult {
  protocolVersion: number;
  pid: number;
}

export interface RunDiagnosisParams {
  /** Chosen by the caller; every notification of this run carries it. */
  runId: string;
  /** Absolute path of the ekka.json. */
  configPath: string;
  /** When set, every file the diagnosis reads must lie inside this folder (the workspace). */
  workspaceFolder?: string;
  /** Overrides from the editor's settings, applied on top of the file. */
  overrides?: {
    ratioThreshold?: number;
    executionProvider?: 'auto' | 'cpu' | 'cuda';
    /** Interpreter for PyTorch captures whose run names none. */
    python?: string;
  };
}

/** Sent once per compared module output, as soon as it is compared. */
export interface DidComparePointParams {
  runId: string;
  point: SeriesPoint;
  /** Date.now() in the bridge when the comparison finished, to measure the delay to the chart. */
  comparedAt: number;
}

export interface DidProgressParams {
  runId: string;
  message: string;
}

export interface GetErrorMapParams {
  runId: string;
  index: number;
}

export interface LocateModuleParams {
  configPath: string;
  module: string;
}
/** File paths are absolute. */
export type ModuleLocation = SourceLocation;

// ---- extension ⇄ webview ----

export interface RunSummary {
  runId: string;
  title: string;
  configPath: string;
  thresholdRatio: number;
}

export type ToWebview =
  | { type: 'hello'; protocolVersion: number }
  | { type: 'runStarted'; run: RunSummary }
  /** `comparedAt[i]`: when the bridge compared `points[i]` (Date.now()), for the chart's delay. */
  | { type: 'points'; runId: string; points: SeriesPoint[]; comparedAt: number[] }
  | { type: 'runFinished'; runId: string; result: DiagnosisResult }
  | { type: 'runFailed'; runId: string; message: string }
  | { type: 'errorMap'; runId: string; index: number; map: ErrorMap | null; message?: string }
  | { type: 'annotations'; annotations: Annotation[] }
  | { type: 'requestChartImage'; requestId: string };

export type FromWebview =
  | { type: 'ready'; protocolVersion: number }
  | { type: 'reveal'; runId: string; index: number }
  | { type: 'selectPoint'; runId: string; index: number }
  | { type: 'annotate'; runId: string; index: number }
  | { type: 'chartImage'; requestId: string; dataUrl: string }
  | { type: 'rerun' }
  | { type: 'exportReport' };

export type { Suspect, SeriesPoint, DiagnosisResult };
