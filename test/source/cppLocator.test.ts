import * as assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import * as path from 'node:path';
import {
  baseOpName,
  CppKernelIndex,
  relativeKernelLocation,
  type KernelLocation,
  type KernelSite,
} from '../../native-bridge/source/cppLocator';
import { scratchDir } from '../support/tinyOnnx';

const FIXTURES = path.resolve('test/fixtures/kernels');

/**
 * A site in the fixtures, checked against the fixture itself so that a moved line fails here
 * rather than in a confusing comparison: the line must contain the symbol's last name.
 */
function at(relative: string, line: number, symbol: string): KernelSite {
  const file = path.join(FIXTURES, relative);
  const text = readFileSync(file, 'utf8').split('\n')[line - 1] ?? '';
  const name = symbol.split('::').pop()!;
  assert.ok(text.includes(name), `${relative}:${line} does not mention ${name}: ${text}`);
  return { file, line, symbol };
}

describe('CppKernelIndex', () => {
  let index: CppKernelIndex;
  before(async () => {
    index = await CppKernelIndex.create([FIXTURES]);
  });
  after(() => index.dispose());

  it('reads every C/C++/CUDA file under the root', () => {
    assert.equal(index.fileCount, 10);
    assert.equal(index.truncated, false);
  });

  it('resolves a TORCH_LIBRARY op through m.impl to its host function and the kernel it launches', () => {
    assert.deepEqual(index.locateKernel('rms_norm'), {
      ...at('csrc/layernorm_kernels.cu', 88, 'rms_norm'),
      op: 'rms_norm',
      kind: 'function',
      launches: [at('csrc/layernorm_kernels.cu', 32, 'rms_norm_kernel')],
      // ops.def spans three lines; the m.impl naming the function is the registration used.
      registeredAt: at('csrc/torch_bindings.cpp', 12, 'rms_norm'),
    });
  });

  it('passes over prototypes, commented-out code and #if 0 blocks', () => {
    // ops.h declares rms_norm, line 87 comments out a definition, lines 24-28 hold an #if 0 kernel.
    assert.deepEqual(index.locateKernel('rms_norm_kernel'), {
      ...at('csrc/layernorm_kernels.cu', 32, 'rms_norm_kernel'),
      op: 'rms_norm_kernel',
      kind: 'cuda-kernel',
    });
  });

  it('prefers the CUDA build over a same-named CPU function and a registered CPU impl', () => {
    // legacy/reference_rms_norm.cpp defines reference::rms_norm, cpu/ registers rms_norm_cpu for
    // CPU, and a pybind class method is bound as "rms_norm": none of them is the op's kernel.
    const found = index.locateKernel('rms_norm', { near: path.join(FIXTURES, 'csrc/legacy/x.py') });
    assert.equal(found?.file, path.join(FIXTURES, 'csrc/layernorm_kernels.cu'));
    assert.equal(found?.line, 88);
  });

  it('follows launches through a macro with line continuations', () => {
    const found = index.locateKernel('fused_add_rms_norm');
    assert.deepEqual(
      { ...found },
      {
        ...at('csrc/layernorm_kernels.cu', 118, 'fused_add_rms_norm'),
        op: 'fused_add_rms_norm',
        kind: 'function',
        // `__global__ void __launch_bounds__(1024)` on one line, the name on the next.
        launches: [at('csrc/layernorm_kernels.cu', 63, 'fused_add_rms_norm_kernel')],
        registeredAt: at('csrc/torch_bindings.cpp', 18, 'fused_add_rms_norm'),
      },
    );
  });

  it('follows launches through a same-file template helper', () => {
    const found = index.locateKernel('silu_and_mul', { namespace: '_C' });
    assert.deepEqual(found?.launches, [at('csrc/activation_kernels.cu', 14, 'act_and_mul_kernel')]);
    assert.deepEqual(
      { file: found.file, line: found.line },
      {
        file: path.join(FIXTURES, 'csrc/activation_kernels.cu'),
        line: 39,
      },
    );
  });

  it('resolves a PYBIND11_MODULE m.def to a differently named function, each kernel once', () => {
    assert.deepEqual(index.locateKernel('rotary_embedding'), {
      ...at('csrc/pos_encoding_kernels.cu', 52, 'rotary_embedding_cuda'),
      op: 'rotary_embedding',
      kind: 'function',
      launches: [at('csrc/pos_encoding_kernels.cu', 28, 'rotary_embedding_kernel')],
      registeredAt: at('csrc/pos_encoding_kernels.cu', 74, 'rotary_embedding'),
    });
  });

  it('reads TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL with TORCH_FN, ignoring launches in comments', () => {
    assert.deepEqual(index.locateKernel('topk_softmax'), {
      ...at('csrc/moe/moe_ops.cu', 34, 'topk_softmax'),
      op: 'topk_softmax',
      kind: 'function',
      launches: [at('csrc/moe/moe_ops.cu', 14, 'topk_softmax_kernel')],
      registeredAt: at('csrc/moe/moe_ops.cu', 80, '_moe_C::topk_softmax'),
    });
  });

  it('resolves torch::dispatch(key, &ns::fn) to a qualified out-of-namespace definition', () => {
    assert.deepEqual(index.locateKernel('moe_align_block_size'), {
      ...at('csrc/moe/moe_ops.cu', 67, 'moe::align_block_size'),
      op: 'moe_align_block_size',
      kind: 'function',
      // An extern "C" __global__ kernel.
      launches: [at('csrc/moe/moe_ops.cu', 61, 'moe_align_block_size_kernel')],
      registeredAt: at('csrc/moe/moe_ops.cu', 81, '_moe_C::moe_align_block_size'),
    });
  });

  it('takes the registration of the caller’s library when two libraries register the op', () => {
    const moe = index.locateKernel('silu_and_mul', { namespace: '_moe_C' });
    assert.deepEqual(
      { file: moe?.file, line: moe?.line, symbol: moe?.symbol, launches: moe?.launches },
      { ...at('csrc/moe/moe_ops.cu', 55, 'silu_and_mul_moe'), launches: undefined },
    );
    assert.deepEqual(moe?.registeredAt, at('csrc/moe/moe_ops.cu', 83, '_moe_C::silu_and_mul'));
    // `_C` matches the TORCH_EXTENSION_NAME library, not _moe_C; with no library named, the
    // candidate that launches a kernel wins.
    for (const query of [{ namespace: '_C' }, {}]) {
      assert.equal(
        index.locateKernel('silu_and_mul', query)?.file,
        path.join(FIXTURES, 'csrc/activation_kernels.cu'),
      );
    }
  });

  it('reports an op registered as a lambda at its registration', () => {
    assert.deepEqual(index.locateKernel('scale_inplace'), {
      ...at('csrc/torch_bindings.cpp', 25, 'scale_inplace'),
      op: 'scale_inplace',
      kind: 'registration',
      registeredAt: at('csrc/torch_bindings.cpp', 25, 'scale_inplace'),
    });
  });

  it('takes op names as Python and schemas spell them', () => {
    assert.equal(baseOpName('torch.ops._C.rms_norm.default'), 'rms_norm');
    assert.equal(baseOpName('_C::rms_norm.out'), 'rms_norm');
    assert.equal(baseOpName('rms_norm'), 'rms_norm');
    const found = index.locateKernel('_C::rms_norm.default');
    assert.equal(found?.op, '_C::rms_norm.default');
    assert.equal(found?.line, 88);
  });

  it('finds nothing for unknown names or names that are not identifiers', () => {
    assert.equal(index.locateKernel('no_such_op'), undefined);
    assert.equal(index.locateKernel(''), undefined);
    assert.equal(index.locateKernel('not an op'), undefined);
  });

  it('maps ONNX Runtime custom op names to their kernels’ Compute', () => {
    const ort = 'ort/custom_op_library.cc';
    const expected: Record<string, KernelLocation> = {
      // Compute declared in the kernel struct, defined out of class.
      ScaledTanh: {
        ...at(ort, 40, 'ScaledTanhKernel::Compute'),
        op: 'ScaledTanh',
        kind: 'ort-custom-op',
        registeredAt: at(ort, 28, 'ScaledTanhOp::GetName'),
      },
      // Compute in class; GetName defined out of class.
      Clamp6: {
        ...at(ort, 54, 'ClampKernel::Compute'),
        op: 'Clamp6',
        kind: 'ort-custom-op',
        registeredAt: at(ort, 74, 'ClampOp::GetName'),
      },
      // The lite API: the function passed to CreateLiteCustomOp.
      FastGelu: {
        ...at(ort, 77, 'FastGelu'),
        op: 'FastGelu',
        kind: 'ort-custom-op',
        registeredAt: at(ort, 93, 'FastGelu'),
      },
    };
    for (const [op, location] of Object.entries(expected)) {
      assert.deepEqual(index.locateKernel(op, { prefer: 'ort' }), location, op);
    }
  });

  it('writes files relative to a folder', () => {
    const found = index.locateKernel('rms_norm')!;
    const relative = relativeKernelLocation(found, FIXTURES);
    assert.equal(relative.file, 'csrc/layernorm_kernels.cu');
    assert.equal(relative.launches?.[0]?.file, 'csrc/layernorm_kernels.cu');
    assert.equal(relative.registeredAt?.file, 'csrc/torch_bindings.cpp');
  });
});

describe('CppKernelIndex file walk', () => {
  const kernel = (op: string) =>
    `__global__ void ${op}_kernel(float* x) { x[threadIdx.x] = 0; }\n` +
    `void ${op}(float* x) { ${op}_kernel<<<1, 32>>>(x); }\n`;
  let root: string;
  let outside: string;

  before(async () => {
    const scratch = await scratchDir();
    root = path.join(scratch, 'workspace');
    outside = path.join(scratch, 'elsewhere');
    const files: Record<string, string> = {
      'workspace/csrc/inside.cu': kernel('op_inside'),
      'workspace/build/generated.cu': kernel('op_build'),
      'workspace/node_modules/pkg/vendored.cu': kernel('op_vendored'),
      'workspace/.git/stash.cu': kernel('op_git'),
      'workspace/dist/out.cpp': kernel('op_dist'),
      'workspace/csrc/notes.txt': kernel('op_text'),
      'elsewhere/secret.cu': kernel('op_outside'),
    };
    for (const [relative, text] of Object.entries(files)) {
      await fs.mkdir(path.dirname(path.join(scratch, relative)), { recursive: true });
      await fs.writeFile(path.join(scratch, relative), text);
    }
    // A link out of the root, a link to a folder out of it, and a link back into the root.
    await fs.symlink(path.join(outside, 'secret.cu'), path.join(root, 'linked.cu'));
    await fs.symlink(outside, path.join(root, 'linked-folder'));
    await fs.symlink(path.join(root, 'csrc'), path.join(root, 'csrc-again'));
  });

  it('reads only source files inside the root, skipping build outputs, dependencies and dot folders', async () => {
    const index = await CppKernelIndex.create([root]);
    try {
      assert.equal(index.fileCount, 1);
      assert.equal(index.locateKernel('op_inside')?.file, path.join(root, 'csrc', 'inside.cu'));
      for (const op of ['op_build', 'op_vendored', 'op_git', 'op_dist', 'op_text', 'op_outside']) {
        assert.equal(index.locateKernel(op), undefined, op);
      }
    } finally {
      index.dispose();
    }
  });

  it('stops at its limits and says so', async () => {
    const index = await CppKernelIndex.create([root, outside], { maxFiles: 1 });
    try {
      assert.equal(index.fileCount, 1);
      assert.equal(index.truncated, true);
    } finally {
      index.dispose();
    }
    const small = await CppKernelIndex.create([root], { maxFileBytes: 10 });
    try {
      assert.equal(small.fileCount, 0);
    } finally {
      small.dispose();
    }
  });

  it('ignores roots that do not exist', async () => {
    const index = await CppKernelIndex.create([path.join(root, 'missing'), root]);
    try {
      assert.equal(index.fileCount, 1);
    } finally {
      index.dispose();
    }
  });
});
