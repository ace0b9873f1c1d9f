// code-server (a real VS Code served over HTTP) for end-to-end tests: a cached install under
// <repo>/.cache/e2e/code-server, scratch instances on 127.0.0.1, extension installs.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  promises as fs,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export const CODE_SERVER_VERSION = '4.100.3';
/**
 * code-server 4.100.3 pins @vscode/ripgrep 1.15.11 (lib/vscode/npm-shrinkwrap.json), whose
 * postinstall downloads this release from GitHub unless the archive is already in
 * `$TMPDIR/vscode-ripgrep-cache-<package version>/` (lib/download.js).
 */
const RIPGREP_PACKAGE_VERSION = '1.15.11';
const RIPGREP_ARCHIVE = 'ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz';

export const REPO_ROOT = path.resolve(__dirname, '../../..');
/** Where code-server is installed; EKKA_E2E_CACHE moves it (e.g. to a folder CI caches). */
export const E2E_CACHE = process.env.EKKA_E2E_CACHE
  ? path.resolve(process.env.EKKA_E2E_CACHE)
  : path.join(REPO_ROOT, '.cache', 'e2e');
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'test-artifacts', 'e2e');
const INSTALL_DIR = path.join(E2E_CACHE, 'code-server');
const MARKER = '.ekka-e2e-install.json';
const INSTALL_TIMEOUT_MS = 15 * 60_000;
const START_TIMEOUT_MS = 60_000;
const INSTALL_EXTENSION_TIMEOUT_MS = 120_000;

export function log(message: string): void {
  process.stderr.write(`[e2e] ${message}\n`);
}

function seconds(since: number): string {
  return `${((Date.now() - since) / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------
// Install

interface InstallMarker {
  version: string;
  nodeMajor: string;
  installedAt: string;
}

function binPath(prefix: string): string {
  return path.join(prefix, 'node_modules', '.bin', 'code-server');
}

function installIsComplete(prefix: string): boolean {
  try {
    const marker = JSON.parse(readFileSync(path.join(prefix, MARKER), 'utf8')) as InstallMarker;
    return (
      marker.version === CODE_SERVER_VERSION &&
      marker.nodeMajor === process.versions.node.split('.')[0] &&
      existsSync(binPath(prefix))
    );
  } catch {
    return false;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes staging folders left behind by installs that were interrupted. */
async function removeStaleStaging(): Promise<void> {
  for (const name of await fs.readdir(E2E_CACHE)) {
    const match = /^code-server\.staging-(\d+)-/.exec(name);
    if (match && !pidAlive(Number(match[1]))) {
      log(`removing an interrupted install: ${name}`);
      await fs.rm(path.join(E2E_CACHE, name), { recursive: true, force: true });
    }
  }
}

function findOnPath(command: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, command);
    if (dir && existsSync(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Puts the system `rg` where @vscode/ripgrep's postinstall looks for its download, so that the
 * install needs no GitHub. Without an `rg` on PATH the postinstall tries GitHub itself.
 */
async function seedRipgrepCache(tmpDir: string): Promise<void> {
  const rg = findOnPath('rg');
  if (!rg) {
    log('no `rg` on PATH (Debian: apt-get install ripgrep); ripgrep will be fetched from GitHub');
    return;
  }
  const cacheDir = path.join(tmpDir, `vscode-ripgrep-cache-${RIPGREP_PACKAGE_VERSION}`);
  const stage = path.join(tmpDir, 'rg-stage');
  await fs.mkdir(cacheDir, { recursive: true });
  await fs.mkdir(stage, { recursive: true });
  await fs.copyFile(await fs.realpath(rg), path.join(stage, 'rg'));
  await fs.chmod(path.join(stage, 'rg'), 0o755);
  const tar = spawnSync('tar', ['czf', path.join(cacheDir, RIPGREP_ARCHIVE), '-C', stage, 'rg']);
  if (tar.status !== 0) throw new Error(`tar failed: ${String(tar.stderr)}`);
}

/**
 * node-gyp downloads Node's headers from nodejs.org unless told where they are. When the running
 * Node ships its headers (Debian/NodeSource: /usr/include/node) for this very version, use them.
 */
function localNodeHeaders(): string | undefined {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  try {
    const header = readFileSync(path.join(prefix, 'include/node/node_version.h'), 'utf8');
    const part = (name: string): string | undefined =>
      new RegExp(`#define ${name} (\\d+)`).exec(header)?.[1];
    const version = `${part('NODE_MAJOR_VERSION')}.${part('NODE_MINOR_VERSION')}.${part('NODE_PATCH_VERSION')}`;
    return version === process.versions.node ? prefix : undefined;
  } catch {
    return undefined;
  }
}

function tail(text: string, lines: number): string {
  return text.split('\n').slice(-lines).join('\n');
}

async function npmInstall(prefix: string, tmpDir: string, logFile: string): Promise<void> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TMPDIR: tmpDir,
    // Running as root, code-server's postinstall exits unless unsafe-perm is set.
    npm_config_unsafe_perm: 'true',
    // node-pty's postinstall runs `npx node-gyp`, which would otherwise ask before installing.
    npm_config_yes: 'true',
    // code-server's postinstall runs two more `npm install`s (lib/vscode, lib/vscode/extensions),
    // each a project of its own that no allowScripts policy of ours reaches; their native
    // modules (node-pty, spdlog, kerberos, ...) must build. npm 11.19 runs unreviewed install
    // scripts with a warning; this keeps them running once it blocks them by default.
    npm_config_dangerously_allow_all_scripts: 'true',
    npm_config_ignore_scripts: 'false',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
  const headers = localNodeHeaders();
  if (headers && !env.npm_config_nodedir) env.npm_config_nodedir = headers;

  const out = createWriteStream(logFile);
  const child = spawn('npm', ['install', '--foreground-scripts', '--no-package-lock'], {
    cwd: prefix,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let recent = '';
  let pending = '';
  const onData = (chunk: Buffer): void => {
    out.write(chunk);
    recent = (recent + chunk.toString()).slice(-20_000);
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    // npm prints "> pkg@version install" before each lifecycle script: a fair progress line.
    for (const line of lines) if (/^> \S+@\S+ \w+$/.test(line)) log(`  ${line.slice(2)}`);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  live.set(child.pid!, prefix);
  installExitHook();
  const started = Date.now();
  const heartbeat = setInterval(() => log(`  ... still installing (${seconds(started)})`), 20_000);
  const timer = setTimeout(() => killTree(child.pid!, 'SIGKILL'), INSTALL_TIMEOUT_MS);
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', resolve);
    });
    if (code !== 0) {
      throw new Error(
        `npm install code-server@${CODE_SERVER_VERSION} failed (exit ${code}` +
          `${Date.now() - started >= INSTALL_TIMEOUT_MS ? ', timed out' : ''}); ` +
          `log: ${logFile}\n${tail(recent, 40)}`,
      );
    }
  } finally {
    clearInterval(heartbeat);
    clearTimeout(timer);
    live.delete(child.pid!);
    await new Promise((resolve) => out.end(resolve));
  }
}

/**
 * Takes the install lock (a file holding the owner's pid); while another live process holds it,
 * waits. Resolves to false when that process completed the install meanwhile.
 */
async function acquireInstallLock(lockFile: string): Promise<boolean> {
  const deadline = Date.now() + INSTALL_TIMEOUT_MS;
  let announced = false;
  for (;;) {
    if (installIsComplete(INSTALL_DIR)) return false;
    try {
      await fs.writeFile(lockFile, String(process.pid), { flag: 'wx' });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    const text = (await fs.readFile(lockFile, 'utf8').catch(() => '')).trim();
    const owner = /^\d+$/.test(text) ? Number(text) : undefined;
    if (owner === undefined) {
      // Being written right now, or junk: junk once it is a few seconds old.
      if (Date.now() - (await mtime(lockFile)) > 5000) await fs.rm(lockFile, { force: true });
    } else if (owner === process.pid || !pidAlive(owner)) {
      // Left by an install that died.
      await fs.rm(lockFile, { force: true });
    } else if (!announced) {
      log(`waiting for the code-server install of process ${owner}`);
      announced = true;
    }
    if (Date.now() > deadline) {
      throw new Error(`the code-server install of process ${owner ?? '?'} did not finish in time`);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

async function mtime(file: string): Promise<number> {
  return (await fs.stat(file).catch(() => ({ mtimeMs: 0 }))).mtimeMs;
}

/**
 * Installs code-server into `<repo>/.cache/e2e/code-server` (an npm prefix of its own) unless a
 * complete install is there, and returns the path of its executable. The install happens in a
 * staging folder that is renamed into place once complete, so an interrupted install leaves
 * nothing that looks installed; concurrent test processes wait for one install.
 */
export function ensureCodeServer(): Promise<string> {
  if (installIsComplete(INSTALL_DIR)) return Promise.resolve(binPath(INSTALL_DIR));
  // One install per process, however many callers.
  ensuring ??= ensureInstalled().finally(() => (ensuring = undefined));
  return ensuring;
}

let ensuring: Promise<string> | undefined;

async function ensureInstalled(): Promise<string> {
  await fs.mkdir(E2E_CACHE, { recursive: true });
  const lockFile = path.join(E2E_CACHE, 'install.lock');
  if (!(await acquireInstallLock(lockFile))) return binPath(INSTALL_DIR);
  try {
    if (!installIsComplete(INSTALL_DIR)) await install();
  } finally {
    await fs.rm(lockFile, { force: true });
  }
  return binPath(INSTALL_DIR);
}

async function install(): Promise<void> {
  await removeStaleStaging();
  const started = Date.now();
  const staging = await fs.mkdtemp(path.join(E2E_CACHE, `code-server.staging-${process.pid}-`));
  const tmpDir = path.join(staging, '.tmp');
  const logFile = path.join(E2E_CACHE, 'install.log');
  log(`installing code-server@${CODE_SERVER_VERSION} into ${INSTALL_DIR} (log: ${logFile})`);
  try {
    await fs.mkdir(tmpDir);
    await seedRipgrepCache(tmpDir);
    const manifest = {
      name: 'ekka-e2e-code-server',
      private: true,
      description: 'code-server for the end-to-end tests; installed by test/e2e/support',
      dependencies: { 'code-server': CODE_SERVER_VERSION },
    };
    await fs.writeFile(path.join(staging, 'package.json'), JSON.stringify(manifest, null, 2));
    await npmInstall(staging, tmpDir, logFile);
    if (!existsSync(binPath(staging))) throw new Error(`npm install left no ${binPath(staging)}`);
    await fs.rm(tmpDir, { recursive: true, force: true });
    const marker: InstallMarker = {
      version: CODE_SERVER_VERSION,
      nodeMajor: process.versions.node.split('.')[0]!,
      installedAt: new Date().toISOString(),
    };
    await fs.writeFile(path.join(staging, MARKER), JSON.stringify(marker, null, 2));
    // Whatever is there is incomplete or another version (a complete one was checked for).
    await fs.rm(INSTALL_DIR, { recursive: true, force: true });
    await fs.rename(staging, INSTALL_DIR);
  } catch (error) {
    await fs.rm(staging, { recursive: true, force: true });
    throw error;
  }
  log(`code-server installed in ${seconds(started)}`);
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Every descendant of `pid` (from /proc), children before grandchildren. */
function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(entry));
      children.set(ppid, list);
    } catch {
      // The process exited while we looked.
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length) {
    for (const child of children.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

/**
 * Signals a detached child's process group and every descendant (terminals and helpers may
 * start sessions of their own and leave the group).
 */
function killTree(pid: number, signal: NodeJS.Signals): void {
  const all = descendants(pid);
  for (const target of [-pid, pid, ...all]) {
    try {
      process.kill(target, signal);
    } catch {
      // Already gone.
    }
  }
}

/**
 * Detached children still running (servers, an install) and their scratch folders: killed and
 * removed if the test process exits without stopping them.
 */
const live = new Map<number, string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [pid, root] of live) {
      killTree(pid, 'SIGKILL');
      rmSync(root, { recursive: true, force: true });
    }
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => process.exit(128 + os.constants.signals[signal]));
  }
}

/** Environment for code-server: scratch home, nothing inherited from an enclosing VS Code. */
function scratchEnv(root: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    // VSCODE_IPC_HOOK_CLI and friends would make code-server talk to the VS Code it runs in.
    if (/^(VSCODE_|ELECTRON_|CODE_SERVER_)/.test(key)) continue;
    if (['PASSWORD', 'HASHED_PASSWORD', 'PORT', 'GITHUB_TOKEN', 'NODE_OPTIONS'].includes(key)) {
      continue;
    }
    env[key] = value;
  }
  const home = path.join(root, 'home');
  return {
    ...env,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_DATA_HOME: path.join(home, '.local', 'share'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
    XDG_STATE_HOME: path.join(home, '.local', 'state'),
    // IPC sockets go here: keep the path short (sockets are limited to 107 bytes).
    XDG_RUNTIME_DIR: path.join(root, 'run'),
    TMPDIR: path.join(root, 'tmp'),
  };
}

async function makeScratch(prefix: string): Promise<string> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  for (const dir of ['home', 'run', 'tmp']) {
    await fs.mkdir(path.join(root, dir), { recursive: true, mode: 0o700 });
  }
  return root;
}

async function codeServerEntry(codeServerBin: string): Promise<string> {
  // Run the entry script with this Node (the one the native modules were built for), not
  // whichever `node` the script's shebang finds first on PATH.
  return fs.realpath(codeServerBin);
}

/**
 * Installs a VSIX with `code-server --install-extension` into the given dirs (the ones a server
 * started on them will read). Runs in a scratch home that is removed afterwards.
 */
export async function installExtension(
  codeServerBin: string,
  vsixPath: string,
  extensionsDir: string,
  userDataDir: string,
): Promise<void> {
  const started = Date.now();
  const root = await makeScratch('ekka-e2e-install-');
  try {
    const entry = await codeServerEntry(codeServerBin);
    const args = [
      entry,
      '--user-data-dir',
      userDataDir,
      '--extensions-dir',
      extensionsDir,
      '--install-extension',
      path.resolve(vsixPath),
      '--force',
    ];
    const result = await new Promise<{ code: number | null; output: string }>((resolve, reject) => {
      const child = spawn(process.execPath, args, {
        env: scratchEnv(root),
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      });
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
      const timer = setTimeout(() => {
        output += `\n(killed after ${INSTALL_EXTENSION_TIMEOUT_MS / 1000} s)`;
        killTree(child.pid!, 'SIGKILL');
      }, INSTALL_EXTENSION_TIMEOUT_MS);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, output });
      });
    });
    if (result.code !== 0 || !/successfully installed/i.test(result.output)) {
      throw new Error(
        `code-server --install-extension ${vsixPath} failed (exit ${result.code}):\n` +
          tail(result.output, 30),
      );
    }
    log(`installed ${path.basename(vsixPath)} in ${seconds(started)}`);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Servers

export interface StartOptions {
  /** The folder the workbench opens. */
  workspace: string;
  /**
   * Unpacked extension folders (each with its package.json and built files), linked into the
   * extensions dir as `<publisher>.<name>-<version>` before the server starts.
   */
  extensionDirs?: string[];
  /** VSIX files installed with `--install-extension` before the server starts. */
  vsixFiles?: string[];
  /** User settings, over the quiet defaults below; written before the server starts. */
  settings?: Record<string, unknown>;
  /**
   * Keep VS Code's workspace trust feature (for tests of trust). By default the server runs
   * with `--disable-workspace-trust` and `security.workspace.trust.enabled: false`.
   */
  trust?: boolean;
  /** When set, stop() saves the server output and VS Code's logs to test-artifacts/e2e/logs/<name>. */
  logName?: string;
}

export interface CodeServer {
  /** The workbench URL, with the workspace folder in its query. */
  url: string;
  /** http://127.0.0.1:PORT */
  origin: string;
  userDataDir: string;
  extensionsDir: string;
  /** The scratch folder holding everything above, removed by stop(). */
  root: string;
  /** What the server printed so far (the last 200 kB). */
  output(): string;
  /** Kills the server's whole process tree and removes its scratch folder. */
  stop(): Promise<void>;
}

/** Settings that keep a fresh VS Code from opening pages and prompts of its own. */
const QUIET_SETTINGS: Record<string, unknown> = {
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'workbench.welcomePage.walkthroughs.openOnInstall': false,
  'telemetry.telemetryLevel': 'off',
  'update.mode': 'none',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'extensions.ignoreRecommendations': true,
  // The samples live inside the repository: no "open the parent repository?" prompt.
  'git.openRepositoryInParentFolders': 'never',
};

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function httpAnswers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get(url, { timeout: 2000 }, (response) => {
      response.resume();
      resolve(true);
    });
    request.once('timeout', () => request.destroy());
    request.once('error', () => resolve(false));
  });
}

async function linkExtensionDir(dir: string, extensionsDir: string): Promise<void> {
  const manifest = JSON.parse(await fs.readFile(path.join(dir, 'package.json'), 'utf8')) as {
    publisher: string;
    name: string;
    version: string;
  };
  const target = path.join(
    extensionsDir,
    `${manifest.publisher}.${manifest.name}-${manifest.version}`.toLowerCase(),
  );
  await fs.symlink(path.resolve(dir), target, 'dir');
}

/**
 * Starts code-server on a free port of 127.0.0.1 with scratch home, user-data and extensions dirs
 * and resolves once its HTTP port answers (the workbench itself loads in the browser).
 */
export async function startCodeServer(options: StartOptions): Promise<CodeServer> {
  const bin = await ensureCodeServer();
  const entry = await codeServerEntry(bin);
  const workspace = path.resolve(options.workspace);
  if (!existsSync(workspace)) throw new Error(`workspace not found: ${workspace}`);

  const root = await makeScratch('ekka-e2e-');
  const userDataDir = path.join(root, 'user-data');
  const extensionsDir = path.join(root, 'extensions');
  let child: ChildProcess | undefined;
  try {
    await fs.mkdir(path.join(userDataDir, 'User'), { recursive: true });
    await fs.mkdir(extensionsDir, { recursive: true });
    const settings: Record<string, unknown> = { ...QUIET_SETTINGS };
    if (!options.trust) settings['security.workspace.trust.enabled'] = false;
    Object.assign(settings, options.settings);
    await fs.writeFile(
      path.join(userDataDir, 'User', 'settings.json'),
      JSON.stringify(settings, null, 2),
    );
    for (const dir of options.extensionDirs ?? []) await linkExtensionDir(dir, extensionsDir);
    for (const vsix of options.vsixFiles ?? []) {
      await installExtension(bin, vsix, extensionsDir, userDataDir);
    }

    const port = await freePort();
    const configFile = path.join(root, 'config.yaml');
    await fs.writeFile(configFile, `bind-addr: 127.0.0.1:${port}\nauth: none\ncert: false\n`);
    const args = [
      entry,
      '--config',
      configFile,
      '--bind-addr',
      `127.0.0.1:${port}`,
      '--auth',
      'none',
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-getting-started-override',
      ...(options.trust ? [] : ['--disable-workspace-trust']),
      '--user-data-dir',
      userDataDir,
      '--extensions-dir',
      extensionsDir,
      workspace,
    ];
    const started = Date.now();
    child = spawn(process.execPath, args, {
      cwd: root,
      env: scratchEnv(root),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    const pid = child.pid!;
    live.set(pid, root);
    installExitHook();

    let output = '';
    const append = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-200_000);
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    let exited: number | null | undefined;
    const exitPromise = new Promise<void>((resolve) => {
      child!.once('exit', (code) => {
        exited = code;
        resolve();
      });
    });

    const origin = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exited !== undefined) {
        throw new Error(
          `code-server exited (code ${exited}) before listening:\n${tail(output, 30)}`,
        );
      }
      if (await httpAnswers(`${origin}/healthz`)) break;
      if (Date.now() > deadline) {
        throw new Error(
          `code-server did not answer on ${origin} within ${START_TIMEOUT_MS / 1000} s:\n` +
            tail(output, 30),
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    log(`code-server listening on ${origin} after ${seconds(started)}`);

    let stopped = false;
    const stop = async (): Promise<void> => {
      if (stopped) return;
      stopped = true;
      killTree(pid, 'SIGTERM');
      const killed = await Promise.race([
        exitPromise.then(() => true),
        new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000)),
      ]);
      // Whatever is left (the leader may exit before its helpers do).
      killTree(pid, 'SIGKILL');
      if (!killed) await exitPromise;
      live.delete(pid);
      if (options.logName) await saveLogs(options.logName, output, userDataDir);
      await fs.rm(root, { recursive: true, force: true, maxRetries: 3 });
    };
    return {
      url: `${origin}/?folder=${encodeURIComponent(workspace)}`,
      origin,
      userDataDir,
      extensionsDir,
      root,
      output: () => output,
      stop,
    };
  } catch (error) {
    if (child?.pid) {
      killTree(child.pid, 'SIGKILL');
      live.delete(child.pid);
    }
    await fs.rm(root, { recursive: true, force: true, maxRetries: 3 });
    throw error;
  }
}

async function saveLogs(name: string, output: string, userDataDir: string): Promise<void> {
  const dest = path.join(ARTIFACTS_DIR, 'logs', name.replace(/[^\w.-]+/g, '-'));
  await fs.rm(dest, { recursive: true, force: true });
  await fs.mkdir(dest, { recursive: true });
  await fs.writeFile(path.join(dest, 'code-server.log'), output);
  const logs = path.join(userDataDir, 'logs');
  if (existsSync(logs)) await fs.cp(logs, path.join(dest, 'vscode'), { recursive: true });
}

// ---------------------------------------------------------------------------------------------
// Extension host logs

async function listFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return found;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...(await listFiles(full)));
    else found.push(full);
  }
  return found;
}

/** The server-side extension host logs of a running code-server, concatenated. */
export async function extensionHostLog(userDataDir: string): Promise<string> {
  const files = (await listFiles(path.join(userDataDir, 'logs'))).filter((file) =>
    /exthost/i.test(path.relative(userDataDir, file)),
  );
  const texts = await Promise.all(files.map((file) => fs.readFile(file, 'utf8').catch(() => '')));
  return texts.join('\n');
}

/**
 * Waits until the extension host has activated `extensionId` (`publisher.name`), read from the
 * extension host log, and returns that log. Throws with the log's tail when activation failed or
 * did not happen within the timeout.
 */
export async function waitForExtensionActivation(
  server: Pick<CodeServer, 'userDataDir'>,
  extensionId: string,
  timeoutMs = 60_000,
): Promise<string> {
  const id = extensionId.toLowerCase();
  const deadline = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    text = await extensionHostLog(server.userDataDir);
    const lower = text.toLowerCase();
    const failed = new RegExp(`activating extension '?${escapeRegex(id)}'? failed[^\n]*`).exec(
      lower,
    );
    if (failed) throw new Error(`${extensionId} failed to activate: ${failed[0]}`);
    if (lower.includes(`extensionservice#_doactivateextension ${id}`)) {
      return text;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${extensionId} not activated within ${timeoutMs / 1000} s; extension host log:\n` +
          (tail(text, 30) || '(empty)'),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
