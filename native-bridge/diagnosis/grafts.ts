import { graftedRecordName, isGraftRecord, type CapturedRecord } from '../runners/capturedRecord';
import { isFloatDType, type FloatDType } from '../tensors/dtypes';
import { measureRecords } from './measure';

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
    if (!low || !reference || low.data.length !== reference.data.length) continue;
    const measured = measureRecords(graft, reference, low, targetPrecision, floorFactor);
    if (measured) ratios.set(grafted, measured.ratio.ratio);
  }
  return ratios;
}
