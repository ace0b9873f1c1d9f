import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { onnx } from 'onnx-proto';
import { formatReport } from '../../native-bridge/cli/report';
import type { DiagnosisResult } from '../../native-bridge/diagnosis/result';
import {
  customDomainOps,
  findKernelCalls,
  locateSuspectKernels,
  type KernelCall,
} from '../../native-bridge/source/kernelCalls';
import type { SourceLocation } from '../../native-bridge/source/pythonLocator';
import { scratchDir, tinyModel } from '../support/tinyOnnx';

const FIXTURES = path.resolve('test/fixtures/kernels');
const LAYERS = path.join(FIXTURES, 'python', 'layers.py');

const call = (line: number, callee: string, op: string, namespace?: string): KernelCall => ({
  op,
  ...(namespace ? { namespace } : {}),
  callee,
  file: LAYERS,
  line,
});

const forwardOf = (className: string, line: number): SourceLocation => ({
  file: LAYERS,
  line,
  symbol: `${className}.forward`,
  kind: 'forward',
});

/**
 * A model whose `/model/act` node runs the ORT custom op ScaledTanh from the ekka.test domain; a
 * head beside `model` keeps `model` a module of its own, not a wrapper around the whole model.
 */
function modelWithCustomOp(): Uint8Array {
  const model = onnx.ModelProto.decode(
    tinyModel([1, 4], { w: { dims: [4, 4], values: new Array<number>(16).fill(0.5) } }, [
      { name: '/model/proj/MatMul', op: 'MatMul', inputs: ['x', 'w'], output: 'h' },
      { name: '/model/act/ScaledTanh', op: 'ScaledTanh', inputs: ['h'], output: 'y' },
      { name: '/model/act_1/ScaledTanh', op: 'ScaledTanh', inputs: ['y'], output: 'z' },
      { name: '/lm_head/MatMul', op: 'MatMul', inputs: ['z', 'w'], output: 'logits' },
    ]),
  );
  for (const node of model.graph!.node ?? []) {
    if (node.opType === 'ScaledTanh') node.domain = 'ekka.test';
  }
  model.opsetImport.push(onnx.OperatorSetIdProto.create({ domain: 'ekka.test', version: 1 }));
  return onnx.ModelProto.encode(model).finish();
}

describe('findKernelCalls', () => {
  it('lists torch.ops and imported-ops calls in forward, in source order', async () => {
    // forward_native's call is not reached from forward; the nested Outer.RMSNorm is another class.
    assert.deepEqual(await findKernelCalls(LAYERS, 'RMSNorm'), [
      call(30, 'torch.ops._C.fused_add_rms_norm', 'fused_add_rms_norm', '_C'),
      call(33, 'ops.rms_norm', 'rms_norm'),
    ]);
  });

  it('follows self.helper(...) and sees imports made inside a method', async () => {
    assert.deepEqual(await findKernelCalls(LAYERS, 'SiluAndMul'), [
      call(47, '_C.silu_and_mul', 'silu_and_mul'),
    ]);
  });

  it('takes imported op functions, overloads and _C aliases; leaves PyTorch’s own ops out', async () => {
    assert.deepEqual(await findKernelCalls(LAYERS, 'RotaryEmbedding'), [
      call(54, 'rotary_embedding', 'rotary_embedding'),
      call(55, 'torch.ops._C.rms_norm.default', 'rms_norm', '_C'),
      call(56, 'ext.apply_rotary', 'apply_rotary'),
    ]);
  });

  it('finds none in plain code, a missing class or a missing file', async () => {
    assert.deepEqual(await findKernelCalls(LAYERS, 'Plain'), []);
    assert.deepEqual(await findKernelCalls(LAYERS, 'NoSuchClass'), []);
    assert.deepEqual(await findKernelCalls(path.join(FIXTURES, 'missing.py'), 'RMSNorm'), []);
  });
});

describe('customDomainOps', () => {
  it('groups custom-domain op types by module, repeated calls folded', () => {
    const graph = onnx.ModelProto.decode(modelWithCustomOp()).graph!;
    assert.deepEqual([...customDomainOps(graph)], [['model.act', ['ScaledTanh']]]);
  });
});

describe('locateSuspectKernels', () => {
  it('points a forward suspect at the first custom-op call its sources define', async () => {
    const { kernels, warnings } = await locateSuspectKernels(
      [FIXTURES],
      [
        { module: 'model.layers.0.input_layernorm', source: forwardOf('RMSNorm', 28) },
        { module: 'model.layers.0.mlp.act_fn', source: forwardOf('SiluAndMul', 38) },
        { module: 'model.rotary_emb', source: forwardOf('RotaryEmbedding', 51) },
        { module: 'model.layers.0.mlp', source: { ...forwardOf('RMSNorm', 18), kind: 'class' } },
        { module: 'model.norm' },
      ],
    );
    assert.deepEqual(warnings, []);
    const summary = kernels.map((k) =>
      k
        ? {
            at: `${path.relative(FIXTURES, k.file)}:${k.line}`,
            launches: k.launches?.map((l) => l.symbol),
            calledAt: k.calledAt && `${k.calledAt.symbol}:${k.calledAt.line}`,
          }
        : undefined,
    );
    assert.deepEqual(summary, [
      {
        at: 'csrc/layernorm_kernels.cu:118',
        launches: ['fused_add_rms_norm_kernel'],
        calledAt: 'torch.ops._C.fused_add_rms_norm:30',
      },
      {
        at: 'csrc/activation_kernels.cu:39',
        launches: ['act_and_mul_kernel'],
        calledAt: '_C.silu_and_mul:47',
      },
      {
        at: 'csrc/pos_encoding_kernels.cu:52',
        launches: ['rotary_embedding_kernel'],
        calledAt: 'rotary_embedding:54',
      },
      undefined,
      undefined,
    ]);
  });

  it('points an ONNX suspect at the ORT custom op its module runs, submodules included', async () => {
    const model = path.join(await scratchDir(), 'custom.onnx');
    await fs.writeFile(model, modelWithCustomOp());
    const { kernels } = await locateSuspectKernels(
      [FIXTURES],
      [{ module: 'model.act' }, { module: 'model' }, { module: 'model.proj' }],
      model,
    );
    const compute = path.join(FIXTURES, 'ort', 'custom_op_library.cc');
    assert.deepEqual(
      kernels.map((k) => k && `${k.kind} ${k.symbol} ${k.file}:${k.line}`),
      [
        `ort-custom-op ScaledTanhKernel::Compute ${compute}:40`,
        `ort-custom-op ScaledTanhKernel::Compute ${compute}:40`,
        undefined,
      ],
    );
  });

  it('does nothing without C++ sources', async () => {
    const { kernels } = await locateSuspectKernels(
      [path.join(FIXTURES, 'python')],
      [{ module: 'model.layers.0.input_layernorm', source: forwardOf('RMSNorm', 28) }],
      path.join(FIXTURES, 'not-read.onnx'),
    );
    assert.deepEqual(kernels, [undefined]);
  });
});

describe('kernel line in the text report', () => {
  it('prints the launched kernel under its suspect', () => {
    const result = {
      runs: {
        target: { model: '/t.onnx', executionProvider: 'cpu', precision: 'float32' },
        reference: { model: '/r.onnx', executionProvider: 'cpu', precision: 'float32' },
      },
      noise: { source: 'analytic-floor', floorFactor: 64, floorDType: 'float32' },
      thresholds: { ratio: 10, minRun: 2, penaltyScale: 1, lookback: 3 },
      series: [],
      changePoint: { index: 0, module: 'model.norm', ratio: 100 },
      spikes: [],
      unmatched: [],
      warnings: [],
      comparedOps: 0,
      timings: { totalMs: 1, runsMs: {}, lockstep: false },
      suspects: [
        {
          rank: 1,
          module: 'model.norm',
          op: 'Mul',
          node: '/model/norm/Mul',
          ratio: 100,
          ownJump: 4,
          confidence: 1,
          index: 0,
          source: { file: 'model.py', line: 9, symbol: 'Norm.forward', kind: 'forward' },
          kernel: {
            file: 'csrc/norm.cu',
            line: 80,
            symbol: 'rms_norm',
            op: 'rms_norm',
            kind: 'function',
            launches: [{ file: 'csrc/norm.cu', line: 42, symbol: 'rms_norm_kernel' }],
          },
        },
        {
          rank: 2,
          module: 'model.act',
          op: 'ScaledTanh',
          node: '/model/act/ScaledTanh',
          ratio: 50,
          ownJump: 0,
          confidence: 0,
          index: 0,
          source: null,
          kernel: {
            file: 'ort/ops.cc',
            line: 40,
            symbol: 'ScaledTanhKernel::Compute',
            op: 'ScaledTanh',
            kind: 'ort-custom-op',
          },
        },
      ],
    } as unknown as DiagnosisResult;
    const lines = formatReport(result, '/').split('\n');
    const first = lines.findIndex((l) => l.startsWith('1 '));
    assert.equal(
      lines[first + 1],
      '      kernel: csrc/norm.cu:42 rms_norm_kernel (launched by rms_norm, line 80)',
    );
    assert.ok(lines[first + 2]!.startsWith('2 '));
    assert.equal(
      lines[first + 3],
      '      kernel: ort/ops.cc:40 ScaledTanhKernel::Compute (ONNX Runtime custom op)',
    );
  });
});
