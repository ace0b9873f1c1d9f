import * as assert from 'node:assert/strict';
import { PROTOCOL_VERSION } from '../../native-bridge/protocol';
import { parseWebviewMessage } from '../../native-bridge/protocolGuards';

describe('messages from the webview', () => {
  it('accepts each protocol message', () => {
    const valid = [
      { type: 'ready', protocolVersion: PROTOCOL_VERSION },
      { type: 'reveal', runId: 'r1', index: 3 },
      { type: 'selectPoint', runId: 'r1', index: 0 },
      { type: 'annotate', runId: 'r1', index: 65 },
      { type: 'chartImage', requestId: 'q', dataUrl: 'data:image/png;base64,iVBORw0KGgo=' },
      { type: 'rerun' },
      { type: 'exportReport' },
    ];
    for (const message of valid) assert.deepEqual(parseWebviewMessage(message), message);
  });

  it('drops anything else', () => {
    const invalid: unknown[] = [
      null,
      'reveal',
      { type: 'ready', protocolVersion: PROTOCOL_VERSION + 1 },
      { type: 'reveal', runId: 'r1', index: -1 },
      { type: 'reveal', runId: 'r1', index: 1.5 },
      { type: 'reveal', runId: 'r1', index: 2, file: '/etc/passwd' },
      { type: 'openFile', path: '../../.ssh/id_rsa' },
      { type: 'runCommand', command: 'workbench.action.terminal.new' },
      { type: 'chartImage', requestId: 'q', dataUrl: 'javascript:alert(1)' },
      { type: 'rerun', extra: true },
    ];
    for (const message of invalid) assert.equal(parseWebviewMessage(message), undefined);
  });
});
