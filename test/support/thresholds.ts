import type { Thresholds } from '../../native-bridge/diagnosis/config';

/** The thresholds ekka.json's schema defaults to, written out; config.test.ts checks them. */
export const DEFAULT_THRESHOLDS: Thresholds = {
  ratio: 2,
  localRatio: 1.5,
  noiseFloorFactor: 64,
  minRun: 3,
  penaltyScale: 2,
  lookback: 3,
  maxSuspects: 5,
};
