/**
 * The bridge process: forked by the extension, it speaks JSON-RPC over the IPC channel and runs
 * diagnoses out of the extension host, so a crash or a runaway native run never takes the editor
 * down. Its exit is the extension's cue to restart it.
 */
import {
  createMessageConnection,
  IPCMessageReader,
  IPCMessageWriter,
  ResponseError,
} from 'vscode-jsonrpc/node';
import { describeCause, EkkaError } from '../errors';
import { PROTOCOL_VERSION } from '../protocol';
import { BridgeService } from './bridgeService';
import {
  DidComparePointNotification,
  DidProgressNotification,
  GetErrorMapRequest,
  InitializeRequest,
  LocateModuleRequest,
  RunDiagnosisRequest,
  ShutdownRequest,
} from './rpc';

/** JSON-RPC error codes of the bridge: EkkaError kinds travel in `data`. */
export const BRIDGE_ERROR = { ekka: -32001, cancelled: -32800, internal: -32603 } as const;

function toResponseError(cause: unknown): ResponseError<{ kind: string }> {
  if (cause instanceof EkkaError) {
    const code = cause.kind === 'cancelled' ? BRIDGE_ERROR.cancelled : BRIDGE_ERROR.ekka;
    return new ResponseError(code, cause.message, { kind: cause.kind });
  }
  const detail = cause instanceof Error ? (cause.stack ?? cause.message) : String(cause);
  return new ResponseError(BRIDGE_ERROR.internal, `internal error: ${describeCause(cause)}`, {
    kind: 'internal',
    detail,
  } as { kind: string });
}

function start(): void {
  if (!process.send) {
    process.stderr.write('ekka bridge: must be started with an IPC channel (child_process.fork)\n');
    process.exit(2);
  }
  const connection = createMessageConnection(
    new IPCMessageReader(process),
    new IPCMessageWriter(process),
  );
  const service = new BridgeService({
    point: (params) => void connection.sendNotification(DidComparePointNotification, params),
    progress: (params) => void connection.sendNotification(DidProgressNotification, params),
  });
  const guarded =
    <P, R>(handler: (params: P) => Promise<R> | R) =>
    async (params: P): Promise<R> => {
      try {
        return await handler(params);
      } catch (cause) {
        // vscode-jsonrpc sends a thrown ResponseError as the response's error.
        throw toResponseError(cause);
      }
    };

  connection.onRequest(InitializeRequest, (params) => {
    if (params.protocolVersion !== PROTOCOL_VERSION) {
      throw new ResponseError(
        BRIDGE_ERROR.ekka,
        `protocol version ${params.protocolVersion} is not supported (this bridge speaks ${PROTOCOL_VERSION})`,
        { kind: 'bridge' },
      );
    }
    return { protocolVersion: PROTOCOL_VERSION, pid: process.pid };
  });
  connection.onRequest(RunDiagnosisRequest, async (params, token) => {
    const controller = new AbortController();
    const subscription = token.onCancellationRequested(() => controller.abort());
    try {
      return await guarded(() => service.runDiagnosis(params, controller.signal))(params);
    } finally {
      subscription.dispose();
    }
  });
  connection.onRequest(
    GetErrorMapRequest,
    guarded((params) => service.getErrorMap(params)),
  );
  connection.onRequest(
    LocateModuleRequest,
    guarded((params) => service.locateModule(params)),
  );
  connection.onRequest(ShutdownRequest, async () => {
    await service.dispose();
    setImmediate(() => process.exit(0));
  });
  // The extension is gone: nothing left to serve.
  process.on('disconnect', () => process.exit(0));
  connection.listen();
}

start();
