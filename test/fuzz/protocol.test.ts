import * as fc from 'fast-check';
import { budgetTimeout, fuzzParameters, fuzzRuns, logSlowestCase } from './fuzzing';
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
    it('never throws, and lets through exactly the protocol messages (any value)', function () {
      this.timeout(budgetTimeout(fuzzRuns(400), 5));
      fc.assert(webviewAnythingProperty(), fuzzParameters(400));
    });

    it('never throws, and lets through exactly the protocol messages (mutated messages)', function () {
      this.timeout(budgetTimeout(fuzzRuns(400), 20));
      fc.assert(webviewMutationProperty(), fuzzParameters(400));
    });
  });

  describe('CaptureStreamDecoder', () => {
    it('throws only InvalidFrameError on random chunks', function () {
      this.timeout(budgetTimeout(fuzzRuns(400), 5));
      fc.assert(decoderRandomChunksProperty(), fuzzParameters(400));
    });

    it('throws only InvalidFrameError on byte-mutated valid streams', function () {
      this.timeout(budgetTimeout(fuzzRuns(400), 5));
      fc.assert(decoderMutatedStreamProperty(), fuzzParameters(400));
    });

    it('throws only InvalidFrameError on valid streams with a mutated frame header', function () {
      this.timeout(budgetTimeout(fuzzRuns(400), 5));
      fc.assert(decoderMutatedHeaderProperty(), fuzzParameters(400));
    });

    it('decodes an intact stream the same however it is cut', function () {
      this.timeout(budgetTimeout(fuzzRuns(200), 5));
      fc.assert(decoderChunkingProperty(), fuzzParameters(200));
    });
  });
});
