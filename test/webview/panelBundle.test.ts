import * as assert from 'node:assert/strict';
import * as esbuild from 'esbuild';

describe('the Divergence panel bundle', () => {
  it('carries no JSON-RPC code: the webview imports only types and PROTOCOL_VERSION', async () => {
    const built = await esbuild.build({
      entryPoints: ['webview/panel/main.ts'],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'browser',
      format: 'iife',
      target: 'es2022',
      logLevel: 'silent',
    });
    const inputs = Object.keys(built.metafile.inputs);
    assert.ok(
      inputs.some((file) => file.startsWith('webview/panel/')),
      inputs.join('\n'),
    );
    const rpc = inputs.filter((file) => file.includes('vscode-jsonrpc'));
    assert.deepEqual(rpc, []);
    assert.ok(!inputs.includes('native-bridge/bridge/rpc.ts'));
  });
});
