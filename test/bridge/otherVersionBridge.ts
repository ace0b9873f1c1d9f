// A bridge from another release: answers the handshake with a protocol version nobody speaks.
import { createMessageConnection, IPCMessageReader, IPCMessageWriter } from 'vscode-jsonrpc/node';
import { InitializeRequest } from '../../native-bridge/bridge/rpc';

const connection = createMessageConnection(
  new IPCMessageReader(process),
  new IPCMessageWriter(process),
);
connection.onRequest(InitializeRequest, () => ({ protocolVersion: 999, pid: process.pid }));
process.on('disconnect', () => process.exit(0));
connection.listen();
