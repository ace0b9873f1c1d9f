import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { configContent, isClassName } from '../../extension/commands/configTemplate';
import { resolveConfig } from '../../native-bridge/diagnosis/config';

const SAMPLE = path.resolve('samples/tiny-llama');

describe('ekka.json from the guided quick pick', () => {
  it('writes paths relative to the config folder, and the schema accepts it', async () => {
    const configDir = path.join(SAMPLE, 'cases', 'rope-interleaved');
    const content = configContent(
      {
        name: 'target.onnx vs reference.onnx',
        target: path.join(configDir, 'target.onnx'),
        targetOptimization: 'all',
        reference: path.join(SAMPLE, 'reference.onnx'),
        input: path.join(SAMPLE, 'input.json'),
        sourceEntry: {
          file: path.join(configDir, 'modeling_target.py'),
          className: 'TargetForCausalLM',
        },
      },
      configDir,
    );
    assert.deepEqual(content.target, { model: './target.onnx', optimization: 'all' });
    assert.deepEqual(content.reference, {
      model: '../../reference.onnx',
      optimization: 'disabled',
    });
    assert.equal(content.input, '../../input.json');
    assert.deepEqual(content.source, { entry: './modeling_target.py:TargetForCausalLM' });
    const config = await resolveConfig(content, configDir, path.join(configDir, 'ekka.json'));
    assert.equal(config.target.model, path.join(configDir, 'target.onnx'));
    assert.equal(config.source?.entryClass, 'TargetForCausalLM');
  });

  it('accepts Python class names only', () => {
    assert.ok(isClassName('LlamaForCausalLM'));
    assert.ok(isClassName('_Private2'));
    assert.ok(!isClassName('2Bad'));
    assert.ok(!isClassName('a.b'));
    assert.ok(!isClassName(''));
  });
});
