import * as assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PythonSourceLocator } from '../../native-bridge/source/pythonLocator';

const SAMPLE = path.resolve('samples/tiny-llama');
const MODELING = path.join(SAMPLE, 'modeling_llama.py');

/** 1-based line of the first line of `file` that contains `needle` (after `after`, if given). */
async function lineOf(file: string, needle: string, after?: string): Promise<number> {
  const lines = (await fs.readFile(file, 'utf8')).split('\n');
  const start = after ? lines.findIndex((l) => l.includes(after)) : 0;
  const index = lines.findIndex((l, i) => i >= start && l.includes(needle));
  assert.ok(index >= 0, `${needle} not in ${file}`);
  return index + 1;
}

describe('PythonSourceLocator', () => {
  let locator: PythonSourceLocator;
  before(async () => {
    locator = await PythonSourceLocator.create({
      entryFile: MODELING,
      entryClass: 'LlamaForCausalLM',
      searchPaths: [SAMPLE],
    });
  });
  after(() => locator.dispose());

  it('finds a workspace class’s forward through the module tree', async () => {
    const location = await locator.locate('model.layers.1.mlp');
    assert.equal(location?.file, MODELING);
    assert.equal(location?.symbol, 'LlamaMLP.forward');
    assert.equal(location?.line, await lineOf(MODELING, 'def forward', 'class LlamaMLP'));
    assert.equal(
      location?.constructedAt?.line,
      await lineOf(MODELING, 'self.mlp = LlamaMLP(config)'),
    );
  });

  it('follows nn.ModuleList([Cls(...) for ...]) into the element class', async () => {
    const location = await locator.locate('model.layers.3');
    assert.equal(location?.symbol, 'LlamaDecoderLayer.forward');
    assert.equal(
      location?.constructedAt?.line,
      await lineOf(MODELING, 'self.layers = nn.ModuleList('),
    );
  });

  it('points an external class (nn.Linear) at the line that builds it', async () => {
    const location = await locator.locate('model.layers.0.self_attn.k_proj');
    assert.equal(location?.kind, 'construction');
    assert.equal(location?.symbol, 'nn.Linear');
    assert.equal(location?.line, await lineOf(MODELING, 'self.k_proj = nn.Linear('));
  });

  it('locates the root module itself', async () => {
    const location = await locator.locate('');
    assert.equal(location?.symbol, 'LlamaForCausalLM.forward');
  });

  it('follows imports, base classes and per-index replacements in a target’s own file', async () => {
    const caseDir = path.join(SAMPLE, 'cases/rope-interleaved');
    const file = path.join(caseDir, 'modeling_target.py');
    const target = await PythonSourceLocator.create({
      entryFile: file,
      entryClass: 'TargetForCausalLM',
      searchPaths: [caseDir, SAMPLE],
    });
    try {
      const replaced = await target.locate('model.layers.2.self_attn');
      assert.equal(replaced?.file, file);
      assert.equal(replaced?.kind, 'class');
      assert.equal(replaced?.line, await lineOf(file, 'class InterleavedRotaryAttention'));
      // Other layers keep the base class's attention, found through the import.
      const untouched = await target.locate('model.layers.1.self_attn');
      assert.equal(untouched?.file, MODELING);
      assert.equal(untouched?.symbol, 'LlamaAttention.forward');
    } finally {
      target.dispose();
    }
  });

  it('finds the root class by itself when no entry is named', async () => {
    const auto = await PythonSourceLocator.create({ searchPaths: [SAMPLE] });
    try {
      const location = await auto.locate('model.layers.0.post_attention_layernorm');
      assert.equal(location?.symbol, 'LlamaRMSNorm.forward');
    } finally {
      auto.dispose();
    }
  });

  it('returns undefined when the entry class does not exist', async () => {
    const missing = await PythonSourceLocator.create({
      entryFile: MODELING,
      entryClass: 'NoSuchModel',
      searchPaths: [SAMPLE],
    });
    try {
      assert.equal(await missing.locate('model'), undefined);
    } finally {
      missing.dispose();
    }
  });

  it('does not follow imports out of the source folders', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ekka-locator-'));
    const inner = path.join(dir, 'pkg');
    await fs.mkdir(inner);
    await fs.writeFile(
      path.join(dir, 'outside.py'),
      'class Secret:\n    def forward(self):\n        pass\n',
    );
    await fs.writeFile(
      path.join(inner, 'model.py'),
      'from ..outside import Secret\n\nclass Root:\n    def __init__(self):\n        self.leak = Secret()\n',
    );
    const confined = await PythonSourceLocator.create({
      entryFile: path.join(inner, 'model.py'),
      entryClass: 'Root',
      searchPaths: [inner],
    });
    try {
      const location = await confined.locate('leak');
      assert.equal(location?.kind, 'construction'); // Secret stays unresolved: outside the roots
      assert.equal(location?.file, path.join(inner, 'model.py'));
    } finally {
      confined.dispose();
    }
  });

  describe('an override that rebuilds the same class with other arguments', () => {
    const BENCHMARK = path.resolve('samples/benchmark/cases');
    const locateIn = async (caseId: string, modulePath: string) => {
      const caseDir = path.join(BENCHMARK, caseId);
      const target = await PythonSourceLocator.create({
        entryFile: path.join(caseDir, 'modeling_target.py'),
        entryClass: 'TargetForCausalLM',
        searchPaths: [caseDir, SAMPLE],
      });
      try {
        return {
          location: await target.locate(modulePath),
          file: path.join(caseDir, 'modeling_target.py'),
        };
      } finally {
        target.dispose();
      }
    };

    it('points at the per-index replacement line', async () => {
      const { location, file } = await locateIn(
        'rmsnorm-eps-subtle',
        'model.layers.3.input_layernorm',
      );
      assert.equal(location?.kind, 'construction');
      assert.equal(location?.symbol, 'LlamaRMSNorm(…)');
      assert.equal(location?.file, file);
      assert.equal(location?.line, await lineOf(file, '# bug: eps'));
      // Other layers keep the default construction and the class's forward.
      const { location: other } = await locateIn(
        'rmsnorm-eps-subtle',
        'model.layers.2.input_layernorm',
      );
      assert.equal(other?.symbol, 'LlamaRMSNorm.forward');
    });

    it('follows loop-index assignments and points at the overriding line in the subclass', async () => {
      const { location, file } = await locateIn(
        'rms-eps-config-key',
        'model.layers.0.input_layernorm',
      );
      assert.equal(location?.kind, 'construction');
      assert.equal(location?.line, await lineOf(file, '# bug: config key'));
    });
  });
});
