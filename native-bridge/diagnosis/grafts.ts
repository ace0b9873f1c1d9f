import { graftedRecordName, isGraftRecord, type CapturedRecord } from '../runners/capturedRecord';
import { coarserDType, comparisonDType, isFloatDType, type FloatDType } from '../tensors/dtypes';
import { lowPrecisionGap, measurePair } from './measure';

/**
 * Own ratios from grafts (PyTorch runs): each leaf module of the target and of the low-precision
 * reference run again on the reference's inputs (the capture helper's `--graft-from`). The
 * target's graft against the reference's own output, over the low-precision reference's graft
 * against it, is the error the module's code adds, with none of what its inputs carried in the
 * run. Keyed by the grafted record's name (`<module>#1/<output>`); modules whose graft is missing
 * on either side, or whose shapes differ from the reference's, are left out.
 */
export function graftOwnRatios(
  target: readonly CapturedRecord[],
  lowPrecision: readonly CapturedRecord[],
  referenceByName: ReadonlyMap<string, CapturedRecord>,
  targetPrecision: FloatDType,
  floorFactor: number,
): Map<string, number> {
  const lowByName = new Map(lowPrecision.filter(isGraftRecord).map((r) => [r.name, r]));
  const ratios = new Map<string, number>();
  for (const graft of target) {
    if (!isGraftRecord(graft) || !isFloatDType(graft.dtype)) continue;
    const low = lowByName.get(graft.name);
    const grafted = graftedRecordName(graft);
    const reference = referenceByName.get(grafted);
    if (!low || !reference) continue;
    const n = reference.data.length;
    if (graft.data.length !== n || low.data.length !== n) continue;
    const types = {
      exact: false,
      runDType: coarserDType(comparisonDType(graft.dtype), targetPrecision),
      referenceDType: comparisonDType(reference.dtype),
    };
    const gap = lowPrecisionGap(low.data, reference.data, types);
    ratios.set(
      grafted,
      measurePair(graft.data, reference.data, types, gap, floorFactor).ratio.ratio,
    );
  }
  return ratios;
}
