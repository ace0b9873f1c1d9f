import * as assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { EkkaError } from '../../native-bridge/errors';
import type { CapturedRecord } from '../../native-bridge/runners/capturedRecord';
import {
  CaptureStreamDecoder,
  InvalidFrameError,
  captureScriptPath,
  capturePyTorch,
  type CaptureFrame,
  type PyTorchCaptureOptions,
} from '../../native-bridge/runners/pytorchRunner';
import { assertClose } from '../support/numbers';

const PYTHON = '/usr/bin/python3';
const FIXTURES = path.resolve('test/fixtures/pytorch');
const TREE = path.join(FIXTURES, 'tree.py');
const FAILURES = path.join(FIXTURES, 'failures.py');

// ---------------------------------------------------------------------------------------------
// Frames built by hand, for the decoder's rules.

function frame(header: object, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(4);
  length.writeUInt32LE(head.length);
  return Buffer.concat([length, head, payload]);
}

const HELLO = {
  type: 'hello',
  protocol: 1,
  torch: '1.13',
  device: 'cpu',
  dtype: 'float32',
  python: '3',
};

function recordFrame(seq: number, module: string, values: number[], extra: object = {}): Buffer {
  return frame(
    {
      type: 'record',
      name: `${module}#1/`,
      seq,
      module,
      class: 'Linear',
      call: 1,
      output: '',
      dtype: 'float32',
      shape: [values.length],
      byteLength: values.length * 4,
      source: { file: '/m.py', line: 3 },
      ...extra,
    },
    Buffer.from(new Float32Array(values).buffer),
  );
}

function decodeAll(stream: Buffer, chunkSize = stream.length): CaptureFrame[] {
  const decoder = new CaptureStreamDecoder();
  const frames: CaptureFrame[] = [];
  for (let at = 0; at < stream.length; at += chunkSize) {
    frames.push(...decoder.push(stream.subarray(at, at + chunkSize)));
  }
  decoder.end();
  return frames;
}

function assertInvalid(stream: Buffer, reason: RegExp, offset?: number): void {
  assert.throws(
    () => decodeAll(stream),
    (error: unknown) => {
      assert.ok(error instanceof InvalidFrameError, String(error));
      assert.match(error.reason, reason);
      if (offset !== undefined) assert.equal(error.offset, offset);
      return true;
    },
  );
}

describe('CaptureStreamDecoder', () => {
  const good = Buffer.concat([
    frame(HELLO),
    recordFrame(0, 'a', [1, 2, 3]),
    recordFrame(1, 'b', []),
    frame({ type: 'done', records: 2 }),
  ]);

  it('decodes the same frames whatever the chunk boundaries', () => {
    const whole = decodeAll(good);
    assert.deepEqual(
      whole.map((f) => f.type),
      ['hello', 'record', 'record', 'done'],
    );
    for (const size of [1, 3, 7, 64]) {
      const split = decodeAll(good, size);
      assert.deepEqual(split, whole, `chunks of ${size} bytes`);
    }
    const first = whole[1] as Extract<CaptureFrame, { type: 'record' }>;
    assert.equal(first.header.name, 'a#1/');
    assert.deepEqual(
      Array.from(new Float32Array(Uint8Array.from(first.payload).buffer)),
      [1, 2, 3],
    );
  });

  it('rejects frames that break the protocol, naming the byte', () => {
    const hello = frame(HELLO);
    const start = hello.length;
    assertInvalid(Buffer.concat([hello, Buffer.from('garbage!')]), /header length \d+/, start);
    assertInvalid(frame({ type: 'done', records: 0 }), /expected a hello frame/, 0);
    assertInvalid(Buffer.concat([hello, frame([1, 2])]), /not a JSON object/, start);
    assertInvalid(
      Buffer.concat([hello, recordFrame(0, 'a', [1], { byteLength: 8 })]),
      /byteLength 8, but \[1\] × 4 bytes is 4/,
      start,
    );
    assertInvalid(
      Buffer.concat([hello, recordFrame(0, 'a', [1], { dtype: 'complex64' })]),
      /dtype/,
    );
    assertInvalid(Buffer.concat([hello, recordFrame(1, 'a', [1])]), /seq 1, expected 0/);
    assertInvalid(
      Buffer.concat([hello, recordFrame(0, 'a', [1]), recordFrame(1, 'a', [1])]),
      /a#1\/ is repeated/,
    );
    assertInvalid(Buffer.concat([hello, recordFrame(0, 'a', [1], { name: 'b#1/' })]), /not match/);
    assertInvalid(
      Buffer.concat([hello, recordFrame(0, 'a', [1], { source: { file: 1 } })]),
      /source/,
    );
    assertInvalid(Buffer.concat([good, Buffer.from([0])]), /data after the end/, good.length);
    assertInvalid(
      Buffer.concat([hello, frame({ type: 'done', records: 3 })]),
      /counts 3 records, 0 were sent/,
    );
    assertInvalid(
      Buffer.concat([hello, recordFrame(0, 'a', [1, 2]).subarray(0, -2)]),
      /ended inside/,
    );
  });

  it('accepts an error frame before the hello', () => {
    const frames = decodeAll(frame({ type: 'error', message: 'no GPU', traceback: '' }));
    assert.deepEqual(frames, [{ type: 'error', message: 'no GPU', traceback: '' }]);
  });
});

// ---------------------------------------------------------------------------------------------
// The real helper, with Debian's torch.

/** Whether `python` imports `module`. */
function hasModule(python: string, module: string): boolean {
  try {
    execFileSync(python, ['-c', `import ${module}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function capture(factory: string, options: Partial<PyTorchCaptureOptions> = {}) {
  return capturePyTorch({ python: PYTHON, factory, device: 'cpu', timeoutMs: 60_000, ...options });
}

function byName(records: CapturedRecord[], name: string): CapturedRecord {
  const record = records.find((r) => r.name === name);
  assert.ok(record, `no record ${name} among ${records.map((r) => r.name).join(', ')}`);
  return record;
}

/** 0..7 as the fixture feeds them, and what Twice/Split/Gate make of them. */
const X = Array.from({ length: 8 }, (_, i) => i);

function lineOf(file: string, text: string): number {
  return readFileSync(file, 'utf8').split('\n').indexOf(text) + 1;
}

/** Round to bfloat16 (nearest even), as torch stores a product. */
function toBfloat16(value: number): number {
  const f32 = new Float32Array([value]);
  const bits = new Uint32Array(f32.buffer);
  bits[0] = ((bits[0]! + 0x7fff + ((bits[0]! >>> 16) & 1)) & 0xffff0000) >>> 0;
  return f32[0]!;
}

function assertValues(record: CapturedRecord, expected: number[]): void {
  assert.equal(record.data.length, expected.length, `${record.name} length`);
  expected.forEach((value, i) =>
    assertClose(record.data[i]!, value, { atol: 0, rtol: 0 }, `${record.name}[${i}]`),
  );
}

/** Processes whose command line holds `marker`, polled briefly (a killed group takes a moment). */
async function survivors(marker: string): Promise<string[]> {
  let lines: string[] = [];
  for (let attempt = 0; attempt < 20; attempt++) {
    lines = execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
      .split('\n')
      .filter((line) => line.includes(marker) && !line.includes('ps -eo'));
    if (lines.length === 0) return lines;
    await new Promise((done) => setTimeout(done, 50));
  }
  return lines;
}

async function rejection(promise: Promise<unknown>): Promise<EkkaError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof EkkaError, `expected an EkkaError, got ${String(error)}`);
    return error;
  }
  assert.fail('the capture did not fail');
}

describe('capturePyTorch', function () {
  this.timeout(120_000);

  it('captures every module output of a module tree, copied at hook time', async () => {
    const streamed: string[] = [];
    const { info, records } = await capture(`${TREE}:build`, {
      onRecord: (record) => streamed.push(record.name),
    });
    assert.equal(info.framework, 'pytorch');
    assert.equal(info.model, `${TREE}:build`);
    assert.match(info.frameworkVersion ?? '', /^\d+\.\d+/);
    assert.equal(info.device, 'cpu');
    assert.equal(info.dtype, 'float32');
    assert.equal(info.records, records.length);
    // Hook completion order: children before their parents, the root ('') last. A module input
    // that is no record (computed in the caller's own code) comes just before the module.
    assert.deepEqual(
      records.map((r) => r.name),
      [
        'block#1/in.0',
        'block.twice#1/',
        'block.split#1/in.0',
        'block.split#1/0',
        'block.split#1/1',
        'block.gate#1/hidden',
        'block.gate#1/width',
        'block.twice#2/',
        'block.proj#1/in.0',
        'block.proj#1/',
        'block#1/0',
        'block#1/1.0',
        'block#1/1.1.b',
        'norm#1/',
        '#1/',
      ],
    );
    assert.deepEqual(
      streamed,
      records.map((r) => r.name),
    );
    assert.deepEqual(
      records.map((r) => r.seq),
      records.map((_, i) => i),
    );

    // Block adds 100 in place to Twice's output after the hook: the capture keeps 2x.
    const twice = byName(records, 'block.twice#1/');
    assert.ok(twice.data instanceof Float32Array);
    assert.deepEqual(twice.shape, [2, 4]);
    assertValues(
      twice,
      X.map((x) => 2 * x),
    );
    assertValues(
      byName(records, 'block.split#1/0'),
      X.map((x) => 2 * x + 101),
    );
    assertValues(
      byName(records, 'block.split#1/1'),
      X.map((x) => 2 * x + 99),
    );
    assertValues(
      byName(records, 'block.gate#1/hidden'),
      X.map((x) => 3 * (2 * x + 101)),
    );
    assertValues(
      byName(records, 'block.twice#2/'),
      X.map((x) => 6 * (2 * x + 101)),
    );
    assertValues(
      byName(records, 'block#1/1.1.b'),
      X.map((x) => 2 * x + 99),
    );
    const width = byName(records, 'block.gate#1/width');
    assert.equal(width.dtype, 'int64');
    assert.deepEqual(width.shape, []);
    assert.ok(width.data instanceof Float64Array);
    assertValues(width, [4]);

    const root = byName(records, '#1/');
    assert.equal(root.module, '');
    assert.equal(root.className, 'Tree');
    assert.equal(root.call, 1);
    assert.equal(root.output, '');
    assert.deepEqual(Array.from(root.data), Array.from(byName(records, 'norm#1/').data));

    // Source: the class definition's line; torch's own classes point into torch.
    assert.deepEqual(twice.source, { file: TREE, line: lineOf(TREE, 'class Twice(nn.Module):') });
    assert.deepEqual(root.source, { file: TREE, line: lineOf(TREE, 'class Tree(nn.Module):') });
    const proj = byName(records, 'block.proj#1/');
    assert.equal(proj.className, 'Linear');
    assert.match(proj.source?.file ?? '', /torch\/nn\/modules\/linear\.py$/);
    assert.ok((proj.source?.line ?? 0) > 0);
  });

  it('records module inputs as taken before the module runs, when asked', async () => {
    const { records } = await capture(`${TREE}:build`, { inputs: true });
    // proj's input is z + b, computed in Block.forward: no module returns it.
    const projIn = byName(records, 'block.proj#1/in.0');
    const z = byName(records, 'block.twice#2/');
    const b = byName(records, 'block.split#1/1');
    assert.deepEqual(
      [...projIn.data],
      [...z.data].map((v, i) => v + b.data[i]!),
    );
    // Taken before Block's in-place add: Twice's first input is the scaled x, untouched.
    assert.deepEqual([...byName(records, 'block.twice#1/in.0').data], X);
    assert.ok(projIn.seq < byName(records, 'block.proj#1/').seq);
    // Without the option, only inputs that are no record's values are captured.
    const plain = await capture(`${TREE}:build`);
    assert.deepEqual(
      plain.records.filter((r) => r.output.startsWith('in.')).map((r) => r.name),
      ['block#1/in.0', 'block.split#1/in.0', 'block.proj#1/in.0'],
    );
  });

  it('names the records each value was computed from', async () => {
    const { records } = await capture(`${TREE}:build`);
    const inputs = (name: string) => byName(records, name).inputs;
    // A module reading another's output names that record; Gate reads Split's first item.
    assert.deepEqual(inputs('block.gate#1/hidden'), ['block.split#1/0']);
    assert.deepEqual(inputs('block.twice#2/'), ['block.gate#1/hidden']);
    // Twice's output was changed in place before Split read it: Split's input is a record of its
    // own, computed by Block (the caller) from what Block had read so far.
    assert.deepEqual(inputs('block.split#1/0'), ['block.split#1/in.0']);
    const splitIn = byName(records, 'block.split#1/in.0');
    assert.equal(splitIn.caller, 'block');
    assert.deepEqual(splitIn.inputs, ['block#1/in.0', 'block.twice#1/']);
    assert.deepEqual(
      [...splitIn.data],
      [...byName(records, 'block.twice#1/').data].map((v) => v + 100),
    );
    // A parent reads its inputs and its children's outputs.
    assert.deepEqual(inputs('norm#1/'), ['block#1/0']);
    assert.ok(inputs('block#1/0')!.includes('block.proj#1/'));
    assert.ok(!inputs('block#1/0')!.includes('norm#1/'));
  });

  it('says that a HuggingFace model directory needs transformers where it is missing', async function () {
    // Debian's python3-torch has no transformers; where it does, the next test covers the load.
    if (hasModule(PYTHON, 'transformers')) this.skip();
    const directory = mkdtempSync(path.join(tmpdir(), 'ekka-hf-'));
    try {
      await assert.rejects(
        capture('hf', { hfModel: { directory, tokenIds: [1, 2, 3] } }),
        /transformers is not installed for .*python3.*: a HuggingFace model directory needs it/,
      );
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('loads a HuggingFace model directory with transformers: a tiny Llama saved from its config', async function () {
    // The test setup's virtual environment (npm run setup:python) pins transformers.
    const python = process.env.EKKA_PYTHON;
    if (!python || !hasModule(python, 'transformers')) this.skip();
    const directory = mkdtempSync(path.join(tmpdir(), 'ekka-hf-'));
    try {
      execFileSync(
        python,
        [
          '-c',
          [
            'import sys, torch, transformers',
            'torch.manual_seed(0)',
            'config = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32)',
            'transformers.LlamaForCausalLM(config).save_pretrained(sys.argv[1])',
          ].join('\n'),
          directory,
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      const { info, records } = await capturePyTorch({
        python,
        factory: '',
        hfModel: { directory, tokenIds: [1, 2, 3] },
        device: 'cpu',
        timeoutMs: 120_000,
      });
      assert.equal(info.framework, 'pytorch');
      const modules = new Set(records.map((r) => r.module));
      for (const module of ['model.embed_tokens', 'model.layers.1.mlp.down_proj', 'lm_head']) {
        assert.ok(modules.has(module), `no record of ${module}`);
      }
      const logits = records.find((r) => r.module === 'lm_head' && !r.output.startsWith('in.'))!;
      assert.deepEqual(logits.shape, [1, 3, 64]);
      assert.ok(logits.data.every((v) => Number.isFinite(v)));
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });

  it('decodes a bfloat16 capture', async () => {
    const { info, records } = await capture(`${TREE}:build`, { dtype: 'bfloat16' });
    assert.equal(info.dtype, 'bfloat16');
    const hidden = byName(records, 'block.gate#1/hidden');
    assert.equal(hidden.dtype, 'bfloat16');
    assert.ok(hidden.data instanceof Float32Array);
    // 303..345 are not all bfloat16 numbers: the decoded values are the rounded ones.
    const expected = X.map((x) => toBfloat16(3 * (2 * x + 101)));
    assert.notDeepEqual(
      expected,
      X.map((x) => 3 * (2 * x + 101)),
    );
    assertValues(hidden, expected);
    assertValues(
      byName(records, 'block.twice#1/'),
      X.map((x) => 2 * x),
    );
    assert.equal(byName(records, 'block.gate#1/width').dtype, 'int64');
    for (const record of records.filter((r) => r.module !== 'block.gate' || r.output !== 'width')) {
      assert.equal(record.dtype, 'bfloat16', record.name);
    }
  });

  it('numbers the calls of each module across steps', async () => {
    const { records } = await capture(`${TREE}:build_two_steps`);
    const calls = (module: string) =>
      records.filter((r) => r.module === module && r.output === '').map((r) => r.call);
    assert.deepEqual(calls(''), [1, 2]);
    assert.deepEqual(calls('norm'), [1, 2]);
    assert.deepEqual(calls('block.twice'), [1, 2, 3, 4]);
    // The second step scales the input by 2.
    assertValues(
      byName(records, 'block.twice#3/'),
      X.map((x) => 4 * x),
    );
  });

  it('drills into a module on the saved arguments: each op with the line that called it', async () => {
    const folder = mkdtempSync(path.join(tmpdir(), 'ekka-drill-'));
    try {
      const saved = path.join(folder, 'inputs.pt');
      await capture(`${TREE}:build`, { graftSave: saved });
      const { records } = await capture(`${TREE}:build`, { graftFrom: saved, drill: ['block'] });
      // No steps ran: only the drilled module's ops.
      assert.ok(records.every((r) => r.module === 'block' && r.output.startsWith('op.')));
      const ops = records.map((r) => r.op);
      assert.deepEqual(ops.slice(0, 2), ['Tensor.mul', 'Tensor.add_']);
      assert.ok(ops.includes('F.linear'), ops.join(', '));
      const file = path.resolve(TREE);
      const [twice, inPlace] = records;
      assert.deepEqual(twice!.statement, { file, line: lineOf(file, '        return x * 2') });
      assert.deepEqual(inPlace!.statement, { file, line: lineOf(file, '        y.add_(100)') });
      // The in-place add reads the product, recorded before it changed.
      assert.deepEqual(inPlace!.inputs, [twice!.name]);
      assertValues(
        twice!,
        X.map((x) => 2 * x),
      );
      assertValues(
        inPlace!,
        X.map((x) => 2 * x + 100),
      );
      const linear = records.find((r) => r.op === 'F.linear')!;
      assert.equal(
        linear.statement?.line,
        lineOf(file, '        return self.proj(z + b), (a, {"b": b})'),
      );
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('reassembles records larger than one pipe read', async () => {
    const { records } = await capture(`${TREE}:build_wide`);
    const twice = byName(records, 'block.twice#1/');
    assert.deepEqual(twice.shape, [32768, 4]);
    assert.ok(
      twice.data.every((value, i) => value === 2 * i),
      'every value is twice its index',
    );
    assert.equal(records.length, 15);
  });

  it('reports the Python exception when the factory raises', async () => {
    const error = await rejection(capture(`${FAILURES}:raises`));
    assert.equal(error.kind, 'runtime');
    assert.match(error.message, /exit code 1/);
    assert.match(error.message, /ValueError: the factory cannot build this model: weights missing/);
    assert.ok(error.message.startsWith(`${FAILURES}:raises: `), error.message);
  });

  it('says what a factory returned when it is not (model, steps)', async () => {
    const error = await rejection(capture(`${FAILURES}:wrong_return`));
    assert.match(error.message, /must return \(model, steps\); it returned int/);
    const missing = await rejection(capture(`${FAILURES}:no_such_function`));
    assert.match(missing.message, /has no function no_such_function/);
  });

  it('stops a hanging factory at the timeout, leaving no process behind', async () => {
    const error = await rejection(capture(`${FAILURES}:hangs`, { timeoutMs: 3000 }));
    assert.equal(error.message, `${FAILURES}:hangs: the capture helper did not finish within 3 s`);
    assert.deepEqual(await survivors('failures.py:hangs'), []);
    assert.deepEqual(await survivors('sleep 987.25'), []);
  });

  it('stops when cancelled, leaving no process behind', async () => {
    const controller = new AbortController();
    const capturing = capture(`${FAILURES}:hangs`, { signal: controller.signal });
    await new Promise((done) => setTimeout(done, 2500));
    controller.abort();
    const error = await rejection(capturing);
    assert.equal(error.kind, 'cancelled');
    assert.deepEqual(await survivors('failures.py:hangs'), []);
    assert.deepEqual(await survivors('sleep 987.25'), []);
  });

  it('fails on garbage written to the data channel', async () => {
    const error = await rejection(capture(`${FAILURES}:garbage`));
    assert.equal(error.kind, 'runtime');
    assert.match(
      error.message,
      /: the capture helper wrote an invalid frame at byte [1-9]\d* \(header length \d+ is not/,
    );
  });

  it('says torch is missing for an interpreter without it', async () => {
    const fake = mkdtempSync(path.join(tmpdir(), 'ekka-no-torch-'));
    try {
      writeFileSync(path.join(fake, 'torch.py'), 'raise ImportError("No module named torch")\n');
      const error = await rejection(capture(`${TREE}:build`, { env: { PYTHONPATH: fake } }));
      assert.equal(error.kind, 'input');
      assert.match(error.message, /torch is not installed for \/usr\/bin\/python3/);
    } finally {
      rmSync(fake, { recursive: true, force: true });
    }
  });

  it('never goes through a shell: metacharacters in the factory and interpreter stay literal', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'ekka-shell-'));
    try {
      const marker = path.join(dir, 'pwned');
      await assert.rejects(
        capture(`${dir}/x.py; touch ${marker}; echo .py:build`),
        /the model factory must be path\/to\/file\.py:function|No such file|not found|failed/,
      );
      await assert.rejects(
        capturePyTorch({ python: `${PYTHON}; touch ${marker}`, factory: `${TREE}:build` }),
        /the Python interpreter .*; touch .* does not exist/,
      );
      assert.ok(!existsSync(marker), 'a shell ran the command');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names an interpreter that does not exist', async () => {
    const error = await rejection(capture(`${TREE}:build`, { python: '/no/such/python3.99' }));
    assert.equal(error.kind, 'input');
    assert.match(error.message, /\/no\/such\/python3\.99 does not exist/);
  });

  it('fails once the capture exceeds maxBytes', async () => {
    const error = await rejection(capture(`${TREE}:build`, { maxBytes: 64 }));
    assert.match(
      error.message,
      /exceed --max-bytes 64 at block\.split#1\/in\.0 \(96 bytes so far\)/,
    );
  });
});

// ---------------------------------------------------------------------------------------------
// --dump: the dump format, version 1, read back by hand.

const SAFETENSORS_DTYPE: Record<string, [string, number]> = {
  float32: ['F32', 4],
  bfloat16: ['BF16', 2],
  int64: ['I64', 8],
};

interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

interface ManifestRecord {
  name: string;
  seq: number;
  kind: string;
  module: string;
  class: string;
  call: number;
  output: string;
  dtype: string;
  shape: number[];
  file: string;
  key: string;
  source?: { file: string; line: number };
}

describe('ekka_capture.py --dump', function () {
  this.timeout(120_000);
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'ekka-dump-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a manifest and safetensors files with consistent offsets', async () => {
    const out = path.join(dir, 'capture');
    await promisify(execFile)(PYTHON, [
      captureScriptPath(),
      '--factory',
      `${TREE}:build`,
      '--device',
      'cpu',
      '--dump',
      out,
    ]);
    const manifest = JSON.parse(readFileSync(path.join(out, 'manifest.json'), 'utf8')) as {
      format: string;
      version: number;
      framework: string;
      model: string;
      input: { steps: Record<string, { dtype: string; shape: number[] }>[] };
      records: ManifestRecord[];
    };
    assert.equal(manifest.format, 'ekka-dump');
    assert.equal(manifest.version, 1);
    assert.equal(manifest.framework, 'pytorch');
    assert.equal(manifest.model, `${TREE}:build`);
    assert.deepEqual(manifest.input.steps[0]!.x, { dtype: 'float32', shape: [2, 4] });
    assert.equal(manifest.records.length, 15);
    assert.equal(new Set(manifest.records.map((r) => r.name)).size, 15);

    const headers = new Map<string, { entries: Record<string, SafetensorsEntry>; data: number }>();
    for (const file of new Set(manifest.records.map((r) => r.file))) {
      const bytes = readFileSync(path.join(out, file));
      const headerLength = Number(bytes.readBigUInt64LE(0));
      assert.equal(headerLength % 8, 0, `${file}: header padded to 8 bytes`);
      const entries = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<
        string,
        SafetensorsEntry
      >;
      delete entries.__metadata__;
      // Offsets tile the data section exactly: sorted, contiguous, ending at the file's end.
      const spans = Object.values(entries)
        .map((e) => e.data_offsets)
        .sort((a, b) => a[0] - b[0]);
      let next = 0;
      for (const [begin, end] of spans) {
        assert.equal(begin, next, `${file}: data offsets are contiguous`);
        assert.ok(end >= begin);
        next = end;
      }
      assert.equal(8 + headerLength + next, statSync(path.join(out, file)).size);
      headers.set(file, { entries, data: 8 + headerLength });
    }

    manifest.records.forEach((record, i) => {
      assert.equal(record.seq, i);
      assert.equal(record.kind, 'module-output');
      assert.equal(record.name, `${record.module}#${record.call}/${record.output}`);
      const entry = headers.get(record.file)!.entries[record.key];
      assert.ok(entry, `${record.name}: key ${record.key} in ${record.file}`);
      const [code, size] = SAFETENSORS_DTYPE[record.dtype]!;
      assert.equal(entry.dtype, code);
      assert.deepEqual(entry.shape, record.shape);
      const count = record.shape.reduce((a, b) => a * b, 1);
      assert.equal(entry.data_offsets[1] - entry.data_offsets[0], count * size, record.name);
    });

    const twice = manifest.records.find((r) => r.name === 'block.twice#1/')!;
    assert.equal(twice.class, 'Twice');
    assert.deepEqual(twice.source, { file: TREE, line: lineOf(TREE, 'class Twice(nn.Module):') });
    const { entries, data } = headers.get(twice.file)!;
    const [begin, end] = entries[twice.key]!.data_offsets;
    const bytes = readFileSync(path.join(out, twice.file)).subarray(data + begin, data + end);
    assert.deepEqual(
      Array.from(new Float32Array(Uint8Array.from(bytes).buffer)),
      X.map((x) => 2 * x),
    );
  });

  it('refuses to stream without a data channel or to write into a non-empty folder', () => {
    const run = (args: string[]) => {
      try {
        execFileSync(PYTHON, [captureScriptPath(), '--factory', `${TREE}:build`, ...args], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        return { status: 0, stderr: '' };
      } catch (error) {
        const failed = error as { status: number; stderr: Buffer };
        return { status: failed.status, stderr: failed.stderr.toString() };
      }
    };
    const noChannel = run([]);
    assert.equal(noChannel.status, 2);
    assert.match(noChannel.stderr, /file descriptor 3 is not open.*--dump DIR/);
    writeFileSync(path.join(dir, 'other.txt'), 'x');
    const notEmpty = run(['--dump', dir]);
    assert.equal(notEmpty.status, 2);
    assert.match(notEmpty.stderr, /is not empty/);
  });
});
