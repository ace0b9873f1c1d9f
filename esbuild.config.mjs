// Builds every bundle with esbuild; type-checking is `npm run typecheck` (tsc --noEmit).
import * as esbuild from 'esbuild';
import { cpSync, mkdirSync } from 'node:fs';

const production = process.argv.includes('--production');
const common = {
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  sourcemap: !production,
  minify: production,
  logLevel: 'warning',
  // Native or wasm-loading packages stay in node_modules; `vscode` is provided by the editor.
  external: [
    'vscode',
    'onnxruntime-node',
    'web-tree-sitter',
    'tree-sitter-python',
    'tree-sitter-cpp',
  ],
};

mkdirSync('dist/queries', { recursive: true });
mkdirSync('dist/webview', { recursive: true });
cpSync('webview/panel/panel.css', 'dist/webview/panel.css');
cpSync('native-bridge/source/queries', 'dist/queries', { recursive: true });
cpSync('native-bridge/python/ekka_capture.py', 'dist/python/ekka_capture.py');
cpSync('native-bridge/python/ekka_graft.py', 'dist/python/ekka_graft.py');
cpSync('native-bridge/python/ekka_drill.py', 'dist/python/ekka_drill.py');
await Promise.all([
  esbuild.build({ ...common, entryPoints: ['native-bridge/cli/main.ts'], outfile: 'dist/cli.js' }),
  esbuild.build({
    ...common,
    entryPoints: ['native-bridge/bridge/main.ts'],
    outfile: 'dist/bridge.js',
  }),
  esbuild.build({
    ...common,
    entryPoints: ['extension/extension.ts'],
    outfile: 'dist/extension.js',
  }),
  // The Divergence panel's script; plotly is loaded beside it as its own local resource.
  esbuild.build({
    ...common,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    external: [],
    entryPoints: ['webview/panel/main.ts'],
    outfile: 'dist/webview/panel.js',
  }),
  // The HTML report's page script, inlined into the report (so no source map to fetch).
  esbuild.build({
    ...common,
    platform: 'browser',
    target: 'es2022',
    format: 'iife',
    sourcemap: false,
    entryPoints: ['webview/report/reportPage.ts'],
    outfile: 'dist/webview/reportPage.js',
  }),
]);
