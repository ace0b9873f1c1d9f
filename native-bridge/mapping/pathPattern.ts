/**
 * Module path patterns of mapping rules: `model.layers.{N}.self_attn.qkv_proj:0`. `{N}` binds an
 * integer, `{N-1}` / `{N+1}` use the binding, `*` matches one path segment, `:out` selects an output
 * position ('' or absent = the whole return value when it is one tensor, else the first item), and
 * `a|b` lists alternatives tried in order.
 */
export interface PathRef {
  module: string;
  output: string;
}

export type Bindings = Record<string, number>;

function escape(text: string): string {
  return text.replace(/[.+?^$()[\]\\]/g, '\\$&');
}

function splitOutput(pattern: string): { module: string; output?: string } {
  const colon = pattern.lastIndexOf(':');
  if (colon < 0) return { module: pattern };
  return { module: pattern.slice(0, colon), output: pattern.slice(colon + 1) };
}

/** A record's output matches a pattern without one when it is the plain tensor or the first item. */
function outputMatches(patternOutput: string | undefined, output: string): boolean {
  if (patternOutput === undefined) return output === '' || output === '0';
  if (patternOutput === '*') return true;
  return patternOutput === output;
}

/** Matches `module`/`output` against a single-alternative pattern; returns the bindings or null. */
export function matchPattern(pattern: string, ref: PathRef): Bindings | null {
  const { module, output } = splitOutput(pattern);
  if (!outputMatches(output, ref.output)) return null;
  const names: string[] = [];
  const source = escape(module)
    .replace(/\\?\*/g, '[^.]+')
    .replace(/\{([A-Za-z])\}/g, (_, name: string) => {
      names.push(name);
      return '(\\d+)';
    });
  const found = new RegExp(`^${source}$`).exec(ref.module);
  if (!found) return null;
  const bindings: Bindings = {};
  for (const [i, name] of names.entries()) {
    const value = Number(found[i + 1]);
    if (name in bindings && bindings[name] !== value) return null;
    bindings[name] = value;
  }
  return bindings;
}

/**
 * The concrete path of a pattern under `bindings`; undefined when it needs an unbound name or
 * yields a negative index (`{N-1}` at N = 0), so the next alternative is tried.
 */
export function substitute(pattern: string, bindings: Bindings): PathRef | undefined {
  const { module, output } = splitOutput(pattern);
  let valid = true;
  const path = module.replace(/\{([A-Za-z])([+-]\d+)?\}/g, (_, name: string, offset?: string) => {
    const base = bindings[name];
    if (base === undefined) {
      valid = false;
      return '';
    }
    const value = base + (offset ? Number(offset) : 0);
    if (value < 0) valid = false;
    return String(value);
  });
  if (!valid || path.includes('*')) return undefined;
  return { module: path, output: output ?? '' };
}

export function alternatives(pattern: string): string[] {
  return pattern.split('|').map((p) => p.trim());
}
