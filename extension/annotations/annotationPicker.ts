import * as vscode from 'vscode';
import {
  ROOT_CAUSES,
  ROOT_CAUSE_LOCATIONS,
  type RootCauseLocation,
} from '../../native-bridge/annotations/taxonomy';

export interface PickedCause {
  cause: string;
  location: RootCauseLocation;
  note: string;
}

/**
 * Asks for a suspected root cause: the cause id (TAXONOMY.md), where it lives (preset from the
 * cause, asked only when the cause fits anywhere), and a note. Undefined when the user backs out.
 */
export async function pickRootCause(module: string): Promise<PickedCause | undefined> {
  const cause = await vscode.window.showQuickPick(
    ROOT_CAUSES.map((c) => ({
      label: c.id,
      description: c.location === 'any' ? 'any location' : c.location,
      detail: c.summary,
      cause: c,
    })),
    {
      title: `Ekka: suspected root cause of ${module}`,
      placeHolder: 'Root-cause category',
      matchOnDescription: true,
      matchOnDetail: true,
      ignoreFocusOut: true,
    },
  );
  if (!cause) return undefined;
  let location: RootCauseLocation;
  if (cause.cause.location === 'any') {
    const picked = await vscode.window.showQuickPick([...ROOT_CAUSE_LOCATIONS], {
      title: `Ekka: where does the error live?`,
      ignoreFocusOut: true,
    });
    if (!picked) return undefined;
    location = picked as RootCauseLocation;
  } else {
    location = cause.cause.location;
  }
  const note = await vscode.window.showInputBox({
    title: `Ekka: note for ${cause.cause.id} on ${module}`,
    prompt: 'What you suspect, in a sentence (Enter to save, Escape to cancel)',
    ignoreFocusOut: true,
    validateInput: (text) => (text.length > 100_000 ? 'At most 100 000 characters' : undefined),
  });
  if (note === undefined) return undefined;
  return { cause: cause.cause.id, location, note };
}
