import Ajv from 'ajv';
import { PROTOCOL_VERSION, type FromWebview } from './protocol';

const runIndex = {
  runId: { type: 'string', maxLength: 128 },
  index: { type: 'integer', minimum: 0, maximum: 10_000_000 },
};
const message = (type: string, properties: Record<string, object> = {}) => ({
  type: 'object',
  additionalProperties: false,
  required: ['type', ...Object.keys(properties)],
  properties: { type: { const: type }, ...properties },
});

/** Every message the webview may send; anything else is dropped. */
const fromWebviewSchema = {
  oneOf: [
    message('ready', { protocolVersion: { type: 'integer' } }),
    message('reveal', runIndex),
    message('selectPoint', runIndex),
    message('annotate', runIndex),
    message('chartImage', {
      requestId: { type: 'string', maxLength: 128 },
      // A PNG data URL, bounded (a chart image is well under 8 MB).
      dataUrl: {
        type: 'string',
        pattern: '^data:image/png;base64,[A-Za-z0-9+/=]*$',
        maxLength: 8e6,
      },
    }),
    message('rerun'),
    message('exportReport'),
  ],
};

const ajv = new Ajv({ strict: true, allErrors: false });
const validateFromWebview = ajv.compile<FromWebview>(fromWebviewSchema);

/**
 * Validates a message from the webview (untrusted: its content is rendered from model data). Returns
 * undefined for anything that is not exactly one of the protocol's messages, or a `ready` of another
 * protocol version.
 */
export function parseWebviewMessage(value: unknown): FromWebview | undefined {
  if (!validateFromWebview(value)) return undefined;
  if (value.type === 'ready' && value.protocolVersion !== PROTOCOL_VERSION) return undefined;
  return value;
}
