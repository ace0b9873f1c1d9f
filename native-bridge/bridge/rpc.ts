/**
 * The bridge's JSON-RPC methods (vscode-jsonrpc over the IPC channel), typed by native-bridge/
 * protocol.ts. Imported by the bridge and its client only, never by the webview.
 */
import { NotificationType, RequestType, RequestType0 } from 'vscode-jsonrpc';
import type { ErrorMap } from '../compare/errorMap';
import type { DiagnosisResult } from '../diagnosis/result';
import type {
  DidComparePointParams,
  DidProgressParams,
  GetErrorMapParams,
  InitializeParams,
  InitializeResult,
  LocateModuleParams,
  ModuleLocation,
  RunDiagnosisParams,
} from '../protocol';

export const InitializeRequest = new RequestType<InitializeParams, InitializeResult, void>(
  'bridge/initialize',
);

export const RunDiagnosisRequest = new RequestType<RunDiagnosisParams, DiagnosisResult, void>(
  'bridge/runDiagnosis',
);

export const DidComparePointNotification = new NotificationType<DidComparePointParams>(
  'bridge/didComparePoint',
);

export const DidProgressNotification = new NotificationType<DidProgressParams>(
  'bridge/didProgress',
);

export const GetErrorMapRequest = new RequestType<GetErrorMapParams, ErrorMap | null, void>(
  'bridge/getErrorMap',
);

export const LocateModuleRequest = new RequestType<LocateModuleParams, ModuleLocation | null, void>(
  'bridge/locateModule',
);

export const ShutdownRequest = new RequestType0<void, void>('bridge/shutdown');
