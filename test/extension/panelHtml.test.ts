import * as assert from 'node:assert/strict';
import { panelHtml } from '../../extension/panel/panelHtml';

const options = {
  cspSource: 'https://file+.vscode-resource.vscode-cdn.net',
  plotlyUri:
    'https://file+.vscode-resource.vscode-cdn.net/ext/node_modules/plotly.js-cartesian-dist-min/plotly-cartesian.min.js',
  scriptUri: 'https://file+.vscode-resource.vscode-cdn.net/ext/dist/webview/panel.js',
  styleUri: 'https://file+.vscode-resource.vscode-cdn.net/ext/dist/webview/panel.css',
};

function csp(html: string): Map<string, string[]> {
  const content = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1];
  assert.ok(content, 'no CSP meta tag');
  return new Map(
    content.split(';').map((directive) => {
      const [name, ...values] = directive.trim().split(/\s+/);
      return [name!, values];
    }),
  );
}

describe('the Divergence panel page', () => {
  it('has a strict CSP: nothing by default, scripts only by this page’s nonce', () => {
    const html = panelHtml(options);
    const policy = csp(html);
    assert.deepEqual(policy.get('default-src'), ["'none'"]);
    const scripts = policy.get('script-src')!;
    assert.equal(scripts.length, 1);
    const nonce = /^'nonce-([A-Za-z0-9+/=]{20,})'$/.exec(scripts[0]!)?.[1];
    assert.ok(nonce, `script-src ${scripts.join(' ')}`);
    assert.ok(!scripts.includes("'unsafe-eval'") && !scripts.includes("'unsafe-inline'"));
    for (const directive of policy.values()) {
      assert.ok(
        !directive.some((v) => /^https?:\/\/(?!file\+)/.test(v) || v === '*'),
        'no remote source',
      );
    }
    const tags = [...html.matchAll(/<script([^>]*)>/g)].map((m) => m[1]!);
    assert.equal(tags.length, 2);
    for (const tag of tags) {
      assert.ok(tag.includes(`nonce="${nonce}"`), `script without the nonce: ${tag}`);
      assert.match(tag, /src="https:\/\/file\+\.vscode-resource/);
    }
    assert.ok(!/<script[^>]*>[^<]+<\/script>/.test(html), 'no inline script');
  });

  it('uses a new nonce for every page', () => {
    assert.notEqual(
      csp(panelHtml(options)).get('script-src')![0],
      csp(panelHtml(options)).get('script-src')![0],
    );
  });
});
