import type { CaseRecord } from './accuracy';
import { computeTotals, detectionCurve } from './accuracySummary';
import { methodTable, splitSection } from './accuracyReport';

const BEGIN = '<!-- bench:accuracy -->';
const END = '<!-- /bench:accuracy -->';

const pct = (x: number) => `${(100 * x).toFixed(1)} %`;

/** The README's figures: the test split's headline, written between the markers. */
export function readmeBlock(cases: readonly CaseRecord[]): string {
  const test = cases.filter((c) => c.expected.split === 'test');
  const t = computeTotals(test).ours!;
  const at3 = detectionCurve(test).find((p) => p.level === 3);
  return [
    `Test split (${t.bugCases} bug cases, ${t.controls} controls, generated from transformers' Llama, Qwen2, Gemma and Mixtral): pass@1 ${pct(t.pass1)}, pass@5 ${pct(t.pass5)}, false alarms ${Math.round(t.falseAlarms * t.controls)} of ${t.controls}; bugs at 3 × noise found in ${at3 && at3.cases ? pct(at3.found) : '–'} of ${at3?.cases ?? 0}.`,
    '',
    methodTable(test),
  ].join('\n');
}

export function replaceBlock(text: string, block: string): string {
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${BEGIN} … ${END} block`);
  return `${text.slice(0, start + BEGIN.length)}\n\n${block}\n\n${text.slice(end)}`;
}

const METHOD = `## How the cases are made

\`samples/hf-bench/generate.py\` builds every case from transformers' own modeling code
(\`LlamaForCausalLM\`, \`Qwen2ForCausalLM\`, \`GemmaForCausalLM\`, \`MixtralForCausalLM\`; tiny configs,
random weights, norms drawn around their identity) and plants bugs the way an engine port gets them
wrong (\`samples/hf-bench/bench_models.py\`): weights off on some channels (a dequantization or shard
scale), a norm's weight or epsilon, the softmax scale, the rotary base, positions off by one from
token 8 on, a residual scaled or dropped in a decoder layer's own code, a swapped activation, a
Gemma norm read as \`w\` for \`(1 + w)\`, Gemma's embedding scale missing, Qwen2's qkv bias dropped,
an MoE router not renormalised, a norm's fp32 upcast dropped.

- **Run kinds**: PyTorch captures (both sides run by the capture helper), ONNX exported with
  torch's dynamo exporter and with the TorchScript exporter. Mixtral's data-dependent expert routing
  does not export with the dynamo exporter (torch 2.13), so it has TorchScript and PyTorch rows only.
- **Precision and noise**: float32, float16 and bfloat16 targets; most low-precision cases have a
  low-precision reference (the measured noise), the others fall back on the analytic floor. Half of
  the targets use SDPA attention where the reference is eager, so modules upstream of a bug differ
  from the reference by real kernel noise.
- **Strength**: a continuous bug is calibrated, in torch, so that its module's output error over the
  clean target's error at the same precision is one of 1.5, 2, 3, 5, 10, 20; \`expected.json\` keeps
  the strength measured. Only outputs the run kind can compare count: an ONNX graph drops what the
  model discards, so an exported attention's strength is read on its output, not on eager
  attention's weights. Float32 targets are calibrated against float16 noise and left out of the
  detection curve.
- **Positions**: embedding, layer 0, middle and last layers, the final norm, \`lm_head\`, the rotary
  module, and a decoder layer's own code (the expected module is then the layer itself).
- **Controls**: precision only, torch's fused \`rms_norm\` for every norm, onnxruntime's full graph
  optimization, and a target exported by the other exporter than the reference.
- **Two bugs**: one per seed and family, ten times noise each; the first in data order is expected
  first.
- **Split**: dev (seeds 0, 1, 5 and 6) is where rules and thresholds are tuned; test (seeds 2, 3 and 4,
  drawn placements of their own) is the headline. A case the method misses stays in.

## Baselines, given the same signals

- **first-over-dtype-tolerance** (Polygraphy / msprobe with torch.testing's relative tolerance for
  the target's dtype, on the relative L2 error): the first module in execution order over it.
- **first-ratio-over-threshold**: the first module whose noise ratio (ours, with the same
  low-precision reference) reaches the threshold.
- **largest-ratio**: modules by noise ratio; alarm when the output's ratio reaches the threshold.
- **rate-of-change-on-edges** (CRADLE): modules by the relative increase of the ratio from the
  value each module reads (the data-flow edge ours uses) to its output; same alarm.

pass@k counts a bug case when the expected module is among the first k modules of an alarm; a
control counts as a false alarm when the method names any module. A case whose diagnosis fails
counts against every method.`;

/** docs/benchmark.md, every figure from this run. */
export function benchmarkPage(cases: readonly CaseRecord[], own: readonly CaseRecord[]): string {
  const split = (name: string) => cases.filter((c) => c.expected.split === name);
  return [
    '# Silent-error benchmark',
    '',
    '<!-- Written by `npm run bench:accuracy -- --docs`; edit native-bridge/bench/accuracyDocs.ts instead. -->',
    '',
    '```sh',
    'npm run bench:accuracy                 # generates the cases if needed, runs them, prints the tables',
    'npm run bench:accuracy -- --split dev  # the tuning split only',
    '```',
    '',
    METHOD,
    '',
    '## Test split (the headline)',
    '',
    splitSection(split('test')),
    '',
    '## Dev split',
    '',
    splitSection(split('dev')),
    '',
    '## samples/benchmark',
    '',
    'Our own earlier suite (tiny-llama engines written with the method); reported apart, never as the headline.',
    '',
    own.length ? splitSection(own) : 'Not run.',
    '',
  ].join('\n');
}
