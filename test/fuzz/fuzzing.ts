/**
 * What every fuzz property shares: the run budget (short inside `npm test`, long with FUZZ_RUNS),
 * the "only typed errors, in bounded time" check, and mutators for bytes and JSON values.
 */
import * as fc from 'fast-check';
import { performance } from 'node:perf_hooks';
import { EkkaError } from '../../native-bridge/errors';

/** Runs per property: `short` inside `npm test`, FUZZ_RUNS (the long budget) when it is set. */
export function fuzzRuns(short: number): number {
  const long = Number(process.env.FUZZ_RUNS);
  return Number.isSafeInteger(long) && long > 0 ? long : short;
}

/** fast-check parameters: the run budget, and FUZZ_SEED to replay a reported failure. */
export function fuzzParameters<T>(short: number): fc.Parameters<T> {
  const seed = Number(process.env.FUZZ_SEED);
  return {
    numRuns: fuzzRuns(short),
    ...(Number.isSafeInteger(seed) ? { seed } : {}),
    ...(process.env.FUZZ_PATH ? { path: process.env.FUZZ_PATH } : {}),
  };
}

/** A mocha timeout for a property of `runs` cases that take about `msPerCase` each. */
export function budgetTimeout(runs: number, msPerCase: number): number {
  return Math.max(60_000, runs * msPerCase * 4);
}

/**
 * A mocha test body asserting `property` over `runs` cases (the short budget; FUZZ_RUNS replaces
 * it) of about `msPerCase` each. The property is built when the test runs, after the suite's hooks.
 */
export function checkProperty<Ts>(
  runs: number,
  msPerCase: number,
  property: () => fc.IRawProperty<Ts>,
): Mocha.AsyncFunc {
  return async function (this: Mocha.Context) {
    this.timeout(budgetTimeout(fuzzRuns(runs), msPerCase));
    await fc.assert(property(), fuzzParameters<Ts>(runs));
  };
}

/** An error class the code under test is allowed to throw on bad input. */
export type TypedError = abstract new (...args: never[]) => Error;

function describeThrown(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.stack ?? error.message}`;
  return `${typeof error}: ${String(error)}`;
}

function checkThrown(error: unknown, allowed: readonly TypedError[]): Error {
  if (!allowed.some((type) => error instanceof type)) {
    throw new Error(`threw something other than ${allowed.map((t) => t.name).join(' or ')}:
${describeThrown(error)}`);
  }
  const typed = error as Error;
  if (!typed.message) throw new Error(`${typed.name} without a message`);
  return typed;
}

/** The slowest case since the last logSlowestCase. */
let slowestMs = 0;

/** For an afterEach hook: in the long budget, prints the slowest case of the test that ended. */
export function logSlowestCase(): void {
  if (process.env.FUZZ_RUNS)
    process.stderr.write(`      slowest case ${slowestMs.toFixed(1)} ms\n`);
  slowestMs = 0;
}

/** Keeps the slowest case for the long budget's log (a hang is the test's timeout, not a bound here). */
function recordElapsed(started: number): void {
  slowestMs = Math.max(slowestMs, performance.now() - started);
}

/** The outcome of one case: the value returned, or the typed error thrown. */
export type Outcome<T> = { ok: true; value: T } | { ok: false; error: Error };

/**
 * Runs `work` and returns what it returned or the typed error it threw; anything else thrown
 * fails the property.
 */
export function typedOutcome<T>(
  work: () => T,
  allowed: readonly TypedError[] = [EkkaError],
): Outcome<T> {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: work() };
  } catch (error) {
    outcome = { ok: false, error: checkThrown(error, allowed) };
  }
  recordElapsed(started);
  return outcome;
}

/** typedOutcome for asynchronous work. */
export async function typedOutcomeAsync<T>(
  work: () => Promise<T>,
  allowed: readonly TypedError[] = [EkkaError],
): Promise<Outcome<T>> {
  const started = performance.now();
  let outcome: Outcome<T>;
  try {
    outcome = { ok: true, value: await work() };
  } catch (error) {
    outcome = { ok: false, error: checkThrown(error, allowed) };
  }
  recordElapsed(started);
  return outcome;
}

// ---------------------------------------------------------------------------------------------
// Byte mutations. Positions are taken modulo the current length, so they shrink toward the start.

export type ByteMutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'repeat'; at: number; count: number };

/** Bytes that change how JSON, protobuf varints and little-endian lengths read. */
const INTERESTING_BYTES = [
  0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x22, 0x2c, 0x2d, 0x2e, 0x30, 0x31, 0x39, 0x3a, 0x5b, 0x5c,
  0x5d, 0x65, 0x7b, 0x7d,
];

/**
 * Mutations of a byte string of `length` bytes; `hotspots` are ranges where structure lives
 * (headers, lengths), picked as often as the whole.
 */
export function byteMutations(
  length: number,
  hotspots: readonly [number, number][] = [],
): fc.Arbitrary<ByteMutation[]> {
  const last = Math.max(0, length - 1);
  const position = fc.oneof(
    fc.integer({ min: 0, max: last }),
    ...hotspots.map(([start, end]) =>
      fc.integer({ min: Math.min(start, last), max: Math.max(Math.min(end, length) - 1, 0) }),
    ),
  );
  const byte = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(...INTERESTING_BYTES));
  const mutation: fc.Arbitrary<ByteMutation> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({ kind: fc.constant('flip'), at: position, bit: fc.nat(7) }),
    },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('set'), at: position, value: byte }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate'), at: position }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('insert'),
        at: position,
        bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('delete'),
        at: position,
        count: fc.integer({ min: 1, max: 64 }),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant('repeat'),
        at: position,
        count: fc.integer({ min: 1, max: 64 }),
      }),
    },
  );
  return fc.array(mutation, { minLength: 1, maxLength: 6 });
}

export function applyByteMutations(
  base: Uint8Array,
  mutations: readonly ByteMutation[],
): Uint8Array {
  let bytes: Uint8Array = Uint8Array.from(base);
  for (const mutation of mutations) {
    const at = bytes.length === 0 ? 0 : mutation.at % bytes.length;
    switch (mutation.kind) {
      case 'flip':
        if (bytes.length) bytes[at] = bytes[at]! ^ (1 << mutation.bit);
        break;
      case 'set':
        if (bytes.length) bytes[at] = mutation.value;
        break;
      case 'truncate':
        bytes = bytes.slice(0, at);
        break;
      case 'insert':
        bytes = concat(bytes.subarray(0, at), mutation.bytes, bytes.subarray(at));
        break;
      case 'delete':
        bytes = concat(bytes.subarray(0, at), bytes.subarray(at + mutation.count));
        break;
      case 'repeat':
        bytes = concat(
          bytes.subarray(0, at + mutation.count),
          bytes.subarray(at, at + mutation.count),
          bytes.subarray(at + mutation.count),
        );
        break;
    }
  }
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// JSON mutations: replace, delete or add at a path into a valid document.

export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

export interface JsonMutation {
  /** Child choices from the root, each taken modulo the container's size; stops at a leaf. */
  path: number[];
  action: 'set' | 'delete' | 'add';
  key: string;
  value: JsonValue;
}

/** Values that sit on the edges of what schemas and parsers check. */
export const edgeJsonValue: fc.Arbitrary<JsonValue> = fc.oneof(
  fc.constantFrom<JsonValue>(
    null,
    true,
    false,
    0,
    -1,
    1,
    0.5,
    -0.5,
    1e-300,
    1e300,
    2 ** 31,
    2 ** 32,
    2 ** 53,
    2 ** 53 + 2,
    2 ** 64,
    -(2 ** 63),
    Number.MAX_VALUE,
    '',
    ' ',
    '.',
    '..',
    '/',
    '/etc/passwd',
    '../../../../etc/hostname',
    'a:b',
    ':',
    'x.py:',
    ':Class',
    '\u0000',
    'nul\u0000byte',
    '__proto__',
    'constructor',
    'toString',
    '\ud800',
    'é'.repeat(3),
    'x'.repeat(5000),
    [],
    {},
    [0],
    [-1],
    [1, 0],
    [0, 1],
    [2 ** 53, 1],
    [[0, 1]],
    // An own "__proto__" key, as JSON.parse makes it.
    JSON.parse('{"__proto__": {"kind": "dump"}}') as JsonValue,
  ),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.jsonValue({ maxDepth: 2 }) as fc.Arbitrary<JsonValue>,
);

/** Keys that a schema or a lookup may treat specially. */
const edgeKey = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', 'kind', 'model', 'type', '', 'x'),
  fc.string({ maxLength: 8 }),
);

export function jsonMutations(): fc.Arbitrary<JsonMutation[]> {
  const mutation = fc.record({
    path: fc.array(fc.nat(), { minLength: 1, maxLength: 5 }),
    action: fc.constantFrom<JsonMutation['action']>('set', 'set', 'delete', 'add'),
    key: edgeKey,
    value: edgeJsonValue,
  });
  return fc.array(mutation, { minLength: 1, maxLength: 4 });
}

function isContainer(value: unknown): value is JsonValue[] | Record<string, JsonValue> {
  return typeof value === 'object' && value !== null;
}

/** Sets an own property, as JSON.parse would: `"__proto__"` is a key like any other. */
function setOwn(target: object, key: string | number, value: unknown): void {
  Object.defineProperty(target, key, {
    value,
    enumerable: true,
    writable: true,
    configurable: true,
  });
}

/** A copy of `document` with the mutations applied (the original is left alone). */
export function applyJsonMutations(document: unknown, mutations: readonly JsonMutation[]): unknown {
  const root: { value: unknown } = { value: structuredClone(document) };
  for (const mutation of mutations) {
    // Walk down; `parent[key]` is the slot the mutation acts on.
    let parent: Record<string, unknown> | unknown[] = root as unknown as Record<string, unknown>;
    let key: string | number = 'value';
    for (const choice of mutation.path) {
      const current: unknown = (parent as Record<string | number, unknown>)[key];
      if (!isContainer(current)) break;
      const keys: (string | number)[] = Array.isArray(current)
        ? current.map((_, i) => i)
        : Object.keys(current);
      if (keys.length === 0) break;
      parent = current;
      key = keys[choice % keys.length]!;
    }
    const slot = parent as Record<string | number, unknown>;
    if (mutation.action === 'set') {
      setOwn(slot, key, structuredClone(mutation.value));
    } else if (mutation.action === 'delete') {
      if (Array.isArray(parent) && typeof key === 'number') parent.splice(key, 1);
      else if (parent !== (root as unknown)) delete slot[key];
    } else {
      const target = slot[key];
      if (Array.isArray(target)) target.push(structuredClone(mutation.value));
      else if (isContainer(target)) setOwn(target, mutation.key, structuredClone(mutation.value));
    }
  }
  return root.value;
}
