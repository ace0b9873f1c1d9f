import * as vscode from 'vscode';

export interface EkkaSettings {
  /** Overrides every ekka.json's `thresholds.ratio` when set. */
  ratioThreshold?: number;
  executionProvider: 'auto' | 'cpu' | 'cuda';
  /** For PyTorch captures that name no interpreter; empty: EKKA_PYTHON, else one found with torch. */
  pythonInterpreter?: string;
  idleTimeoutSeconds: number;
}

export function readSettings(): EkkaSettings {
  const config = vscode.workspace.getConfiguration('ekka');
  const ratio = config.get<number | null>('thresholds.ratio', null);
  return {
    ...(typeof ratio === 'number' && ratio > 0 ? { ratioThreshold: ratio } : {}),
    executionProvider: config.get<'auto' | 'cpu' | 'cuda'>('executionProvider', 'auto'),
    ...(config.get<string>('pythonInterpreter', '')
      ? { pythonInterpreter: config.get<string>('pythonInterpreter', '') }
      : {}),
    idleTimeoutSeconds: config.get<number>('bridge.idleTimeoutSeconds', 300),
  };
}
