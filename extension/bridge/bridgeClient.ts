/**
 * The extension's side of the bridge process: forks it lazily, checks the protocol version, routes
 * its notifications to the run that asked for them, restarts it after a crash, stops it when idle,
 * and makes cancellation final (a run that does not stop within the grace period loses its process).
 * Free of `vscode`, so it is tested with plain mocha against the real bridge.
 */
import { fork, type ChildProcess } from 'node:child_process';
import {
  CancellationTokenSource,
  createMessageConnection,
  IPCMessageReader,
  IPCMessageWriter,
  ResponseError,
  type MessageConnection,
} from 'vscode-jsonrpc/node';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';
import {
  PROTOCOL_VERSION,
  type DidComparePointParams,
  type ErrorMap,
  type ModuleLocation,
  type RunDiagnosisParams,
} from '../../native-bridge/protocol';
import {
  DidComparePointNotification,
  DidProgressNotification,
  GetErrorMapRequest,
  InitializeRequest,
  LocateModuleRequest,
  RunDiagnosisRequest,
  ShutdownRequest,
} from '../../native-bridge/bridge/rpc';

export interface BridgeClientOptions {
  /** The bridge's entry (dist/bridge.js, or the TypeScript source with a loader in execArgv). */
  modulePath: string;
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
  /** Stop the process after this long without a request. */
  idleMs?: number;
  /** After a cancel, how long the run may take to stop before its process is killed. */
  cancelGraceMs?: number;
  startTimeoutMs?: number;
  log?: (line: string) => void;
  /** Called once each time the process dies while it had work or was expected to live. */
  onUnexpectedExit?: (message: string) => void;
}

/** Why a request to the bridge failed; `kind` mirrors the engine's error kinds. */
export class BridgeError extends Error {
  constructor(
    message: string,
    readonly kind: string,
  ) {
    super(message);
    this.name = 'BridgeError';
  }
}

export interface RunHandlers {
  onPoint?(params: DidComparePointParams): void;
  onProgress?(message: string): void;
}

/** Something that says when the user cancelled: an AbortSignal or VS Code's CancellationToken. */
export interface Cancellation {
  isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

interface Process {
  child: ChildProcess;
  connection: MessageConnection;
  ready: Promise<void>;
  /** Set when the extension itself stops the process (idle, dispose, cancel). */
  stopping: boolean;
  exited: Promise<void>;
}

/** Whether the process exits within a short while (its channel has just failed). */
async function exitsSoon(process: Process, withinMs = 1000): Promise<boolean> {
  if (process.child.exitCode !== null || process.child.signalCode !== null) return true;
  if (process.child.connected) return false;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), withinMs);
  });
  const exited = await Promise.race([process.exited.then(() => true), timeout]);
  clearTimeout(timer);
  return exited;
}

export class BridgeClient {
  private process: Process | undefined;
  private readonly runs = new Map<string, RunHandlers>();
  private inFlight = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private disposed = false;
  /** Processes started so far (restarts included), for tests and the log. */
  starts = 0;

  constructor(private readonly options: BridgeClientOptions) {}

  get pid(): number | undefined {
    return this.process?.child.pid;
  }

  async runDiagnosis(
    params: RunDiagnosisParams,
    handlers: RunHandlers = {},
    cancellation?: Cancellation,
  ): Promise<DiagnosisResult> {
    this.runs.set(params.runId, handlers);
    try {
      return await this.request(
        (connection, token) => connection.sendRequest(RunDiagnosisRequest, params, token),
        cancellation,
      );
    } finally {
      this.runs.delete(params.runId);
    }
  }

  getErrorMap(runId: string, index: number): Promise<ErrorMap | null> {
    return this.request((connection) =>
      connection.sendRequest(GetErrorMapRequest, { runId, index }),
    );
  }

  locateModule(configPath: string, module: string): Promise<ModuleLocation | null> {
    return this.request((connection) =>
      connection.sendRequest(LocateModuleRequest, { configPath, module }),
    );
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    clearTimeout(this.idleTimer);
    await this.stop();
  }

  /** Stops the process: a polite shutdown, then SIGKILL if it does not exit promptly. */
  async stop(): Promise<void> {
    const current = this.process;
    if (!current) return;
    this.process = undefined;
    current.stopping = true;
    const killTimer = setTimeout(() => current.child.kill('SIGKILL'), 1000);
    current.connection.sendRequest(ShutdownRequest).catch(() => current.child.kill('SIGKILL'));
    await current.exited;
    clearTimeout(killTimer);
  }

  private async request<R>(
    send: (connection: MessageConnection, token?: CancellationTokenSource['token']) => Promise<R>,
    cancellation?: Cancellation,
  ): Promise<R> {
    if (this.disposed) throw new BridgeError('the Ekka bridge has been shut down', 'bridge');
    clearTimeout(this.idleTimer);
    this.inFlight++;
    let current: Process;
    try {
      current = await this.ensureStarted();
    } catch (cause) {
      this.inFlight--;
      throw cause;
    }
    const source = new CancellationTokenSource();
    let cancelled = false;
    let killTimer: NodeJS.Timeout | undefined;
    let settled = false;
    const onCancel = () => {
      if (settled) return;
      cancelled = true;
      source.cancel();
      // A native run may not look at the token for a while: the grace period bounds the wait.
      killTimer = setTimeout(() => {
        this.log(`run did not stop within ${this.cancelGraceMs} ms of cancel: stopping the bridge`);
        if (this.process === current) this.process = undefined;
        current.stopping = true;
        current.child.kill('SIGKILL');
      }, this.cancelGraceMs);
    };
    const subscription = cancellation?.onCancellationRequested(onCancel);
    if (cancellation?.isCancellationRequested) onCancel();
    try {
      const response = send(current.connection, source.token);
      const died = current.exited.then(() => {
        throw cancelled
          ? new BridgeError('diagnosis cancelled', 'cancelled')
          : new BridgeError(this.exitMessage(current), 'bridge');
      });
      return await Promise.race([response, died]);
    } catch (cause) {
      if (cause instanceof BridgeError) throw cause;
      if (cancelled) throw new BridgeError('diagnosis cancelled', 'cancelled');
      // A dying process closes the channel first: its pending requests fail before 'exit' comes.
      if (await exitsSoon(current)) throw new BridgeError(this.exitMessage(current), 'bridge');
      if (cause instanceof ResponseError) {
        const data = cause.data as { kind?: string } | undefined;
        throw new BridgeError(cause.message, data?.kind ?? 'internal');
      }
      throw new BridgeError((cause as Error).message ?? String(cause), 'bridge');
    } finally {
      settled = true;
      clearTimeout(killTimer);
      subscription?.dispose();
      source.dispose();
      this.inFlight--;
      this.scheduleIdleStop();
    }
  }

  private get cancelGraceMs(): number {
    return this.options.cancelGraceMs ?? 800;
  }

  private exitMessage(process: Process): string {
    const { exitCode, signalCode } = process.child;
    const how = signalCode ? `was killed (${signalCode})` : `exited with code ${exitCode}`;
    return `The Ekka bridge process ${how} during the request. It restarts on the next run.`;
  }

  private scheduleIdleStop(): void {
    if (this.inFlight > 0 || !this.process) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(
      () => {
        if (this.inFlight === 0) {
          this.log('bridge idle: stopping it');
          void this.stop();
        }
      },
      this.options.idleMs ?? 5 * 60_000,
    );
    this.idleTimer.unref();
  }

  private async ensureStarted(): Promise<Process> {
    if (this.process) {
      await this.process.ready;
      return this.process;
    }
    const child = fork(this.options.modulePath, [], {
      execArgv: this.options.execArgv ?? [],
      env: {
        // onnxruntime's threads each grow a glibc malloc arena; two keep a long-lived bridge's RSS
        // flat (measured by npm run bench:soak) at no cost in speed here.
        MALLOC_ARENA_MAX: '2',
        ...(this.options.env ?? process.env),
      },
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      // Error maps cross as bytes (Uint8Array), not as JSON number arrays.
      serialization: 'advanced',
    });
    this.starts++;
    child.stdout?.on('data', (chunk: Buffer) => this.log(chunk.toString().trimEnd()));
    child.stderr?.on('data', (chunk: Buffer) => this.log(chunk.toString().trimEnd()));
    const connection = createMessageConnection(
      new IPCMessageReader(child),
      new IPCMessageWriter(child),
    );
    connection.onNotification(DidComparePointNotification, (params) =>
      this.runs.get(params.runId)?.onPoint?.(params),
    );
    connection.onNotification(DidProgressNotification, (params) =>
      this.runs.get(params.runId)?.onProgress?.(params.message),
    );
    // An unhandled 'error' on the IPC channel must not take the extension host down.
    connection.onError(([error]) => this.log(`bridge channel error: ${error.message}`));
    const current: Process = {
      child,
      connection,
      stopping: false,
      ready: Promise.resolve(),
      exited: new Promise((resolve) => child.once('exit', () => resolve())),
    };
    child.on('error', (error) => this.log(`bridge process error: ${error.message}`));
    void current.exited.then(() => {
      connection.dispose();
      if (this.process === current) this.process = undefined;
      this.log(
        `bridge process ${child.pid} ended (${child.signalCode ?? `code ${child.exitCode}`})`,
      );
      if (!current.stopping && !this.disposed) {
        this.options.onUnexpectedExit?.(this.exitMessage(current));
      }
    });
    connection.listen();
    current.ready = this.initialize(current);
    this.process = current;
    try {
      await current.ready;
    } catch (cause) {
      current.stopping = true;
      child.kill('SIGKILL');
      if (this.process === current) this.process = undefined;
      throw cause;
    }
    this.log(`bridge process ${child.pid} started (protocol ${PROTOCOL_VERSION})`);
    return current;
  }

  private async initialize(current: Process): Promise<void> {
    const timeoutMs = this.options.startTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new BridgeError(`the Ekka bridge did not start within ${timeoutMs} ms`, 'bridge')),
        timeoutMs,
      );
    });
    const died = current.exited.then(() => {
      throw new BridgeError(
        `the Ekka bridge failed to start (${this.exitMessage(current)})`,
        'bridge',
      );
    });
    try {
      const answer = await Promise.race([
        current.connection.sendRequest(InitializeRequest, { protocolVersion: PROTOCOL_VERSION }),
        timeout,
        died,
      ]);
      if (answer.protocolVersion !== PROTOCOL_VERSION) {
        throw new BridgeError(
          `the Ekka bridge speaks protocol ${answer.protocolVersion}, the extension ${PROTOCOL_VERSION}: reinstall the extension`,
          'bridge',
        );
      }
    } catch (cause) {
      if (cause instanceof ResponseError) throw new BridgeError(cause.message, 'bridge');
      throw cause;
    } finally {
      clearTimeout(timer);
    }
  }

  private log(line: string): void {
    if (line) this.options.log?.(line);
  }
}
