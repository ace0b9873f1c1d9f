import * as path from 'node:path';

/** What the guided "create ekka.json" asks for; paths absolute. */
export interface ConfigChoices {
  name: string;
  target: string;
  targetOptimization: 'disabled' | 'basic' | 'extended' | 'all';
  reference: string;
  input: string;
  /** Python file and root class of the target's model code, for source lines. */
  sourceEntry?: { file: string; className: string };
}

/** The ekka.json content for `choices`, with paths relative to the folder it is saved in. */
export function configContent(choices: ConfigChoices, configDir: string): Record<string, unknown> {
  const relative = (file: string) => {
    const rel = path.relative(configDir, file).split(path.sep).join('/');
    return rel.startsWith('.') ? rel : `./${rel}`;
  };
  return {
    name: choices.name,
    target: { model: relative(choices.target), optimization: choices.targetOptimization },
    reference: { model: relative(choices.reference), optimization: 'disabled' },
    input: relative(choices.input),
    ...(choices.sourceEntry
      ? {
          source: {
            entry: `${relative(choices.sourceEntry.file)}:${choices.sourceEntry.className}`,
          },
        }
      : {}),
  };
}

/** A Python class name, as `source.entry` needs it. */
export function isClassName(text: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(text);
}
