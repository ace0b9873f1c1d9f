import { checkProperty, logSlowestCase } from './fuzzing';
import {
  decoderChunkingProperty,
  decoderMutatedHeaderProperty,
  decoderMutatedStreamProperty,
  decoderRandomChunksProperty,
  webviewAnythingProperty,
  webviewMutationProperty,
} from './protocol.fuzz';

describe('fuzz: protocol decoding', () => {
  afterEach(logSlowestCase);
  describe('parseWebviewMessage', () => {
    it(
      'never throws, and lets through exactly the protocol messages (any value)',
      checkProperty(400, 5, webviewAnythingProperty),
    );

    it(
      'never throws, and lets through exactly the protocol messages (mutated messages)',
      checkProperty(400, 20, webviewMutationProperty),
    );
  });

  describe('CaptureStreamDecoder', () => {
    it(
      'throws only InvalidFrameError on random chunks',
      checkProperty(400, 5, decoderRandomChunksProperty),
    );

    it(
      'throws only InvalidFrameError on byte-mutated valid streams',
      checkProperty(400, 5, decoderMutatedStreamProperty),
    );

    it(
      'throws only InvalidFrameError on valid streams with a mutated frame header',
      checkProperty(400, 5, decoderMutatedHeaderProperty),
    );

    it(
      'decodes an intact stream the same however it is cut',
      checkProperty(200, 5, decoderChunkingProperty),
    );
  });
});
