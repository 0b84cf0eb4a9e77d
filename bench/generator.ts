// `npm run bench:generator`: the bench's own engines side by side, driving the same C servers.
//
// For each scenario (plain TCP, TLS, WebSocket and wss, 64-byte messages), the C peer of that
// transport runs pinned to core 0 and `echoplex bench` to core 1, once with `--engine native` and
// once with `--engine portable`, in interleaved rounds. The bench is the one saturated: what each
// run reports is how fast that engine can generate and verify. Reported per engine: messages per
// second, the bench's CPU per message (its own figure over the measured window) and the server's
// (from /proc); then native / portable ratios, medians over the rounds with their range.

import { buildCPeers, machineLine, measure, median, PEERS, SCENARIOS, type Measurement } from './peers.js';
import { namesFrom, positiveNumber, scriptOptions } from './script-args.js';

const USAGE =
  'Usage: node --import tsx bench/generator.ts [--rounds 5] [--duration 4] [--warmup 1]\n' +
  '         [--scenarios 64B-p1,tls-64B,ws-64B,wss-64B]';
const values = scriptOptions(
  {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '1' },
    scenarios: { type: 'string', default: '64B-p1,tls-64B,ws-64B,wss-64B' },
  },
  USAGE,
);
const rounds = positiveNumber(values.rounds, 'rounds');
const duration = positiveNumber(values.duration, 'duration');
const warmup = Number(values.warmup);
const scenarios = namesFrom(
  values.scenarios,
  SCENARIOS.map((s) => s.name),
  'scenario',
).map((name) => SCENARIOS.find((s) => s.name === name)!);

/** The C server of each transport, as bench:peers runs it. */
function cPeerFor(scenario: (typeof SCENARIOS)[number]): (typeof PEERS)[number] {
  const name = scenario.ws ? (scenario.tls ? 'c-wss' : 'c-ws') : scenario.tls ? 'c-tls' : 'c-epoll';
  const peer = PEERS.find((p) => p.name === name);
  if (peer === undefined) throw new Error(`no peer ${name}`);
  return peer;
}

const ENGINES = ['native', 'portable'] as const;

buildCPeers();
const runs = new Map<string, Measurement[]>();
for (let round = 1; round <= rounds; round++) {
  for (const scenario of scenarios) {
    const peer = cPeerFor(scenario);
    const why = peer.unavailable();
    if (why !== undefined) {
      if (round === 1) console.error(`${scenario.name}: ${peer.name} cannot run here: ${why}`);
      continue;
    }
    for (const engine of round % 2 === 1 ? ENGINES : [...ENGINES].reverse()) {
      const result = await measure(peer, scenario, 'echoplex', duration, warmup, engine);
      const key = `${scenario.name}/${engine}`;
      runs.set(key, [...(runs.get(key) ?? []), result]);
      console.error(
        `round ${round} ${key}: ${Math.round(result.messagesPerSecond)} msg/s, ` +
          `bench ${result.loadCpuUsPerMessage?.toFixed(2)} us/msg, server ${result.cpuUsPerMessage.toFixed(2)} us/msg, ` +
          `${result.errors} errors`,
      );
    }
  }
}

/** `median (low-high)` of a list. */
function spread(values: number[], digits: number): string {
  return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}-${Math.max(...values).toFixed(digits)})`;
}

const lines = [
  `Run ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machineLine()}; ${duration} s measured after ${warmup} s warm-up, ${rounds} interleaved rounds; C server on core 0, echoplex bench on core 1.`,
  '',
  '| scenario | server | bench engine | msgs/s | bench CPU us/msg | server CPU us/msg | errors | msgs/s native / portable |',
  '|---|---|---|---|---|---|---|---|',
];
for (const scenario of scenarios) {
  const native = runs.get(`${scenario.name}/native`) ?? [];
  const portable = runs.get(`${scenario.name}/portable`) ?? [];
  if (native.length === 0 || portable.length === 0) continue;
  // Ratios round by round: each round's two runs met the same machine.
  const ratios = native.map((n, i) => n.messagesPerSecond / Math.max(1, portable[i]!.messagesPerSecond));
  for (const [engine, list] of [
    ['native', native],
    ['portable', portable],
  ] as const) {
    lines.push(
      `| ${scenario.name} | ${cPeerFor(scenario).name} | ${engine} | ${Math.round(median(list.map((r) => r.messagesPerSecond))).toLocaleString('en-US')} | ` +
        `${median(list.map((r) => r.loadCpuUsPerMessage ?? Number.NaN)).toFixed(2)} | ${median(list.map((r) => r.cpuUsPerMessage)).toFixed(2)} | ` +
        `${list.reduce((sum, r) => sum + r.errors, 0)} | ${engine === 'native' ? `${spread(ratios, 2)}x` : ''} |`,
    );
  }
}
console.log(lines.join('\n'));
