// The selectors port against CPython itself: each scenario is the same sequence of socket calls run by /usr/bin/python3 and by the port on each engine, against one peer, and their traces must be identical.

import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { findProgram, skipUnless } from './helpers/peers.js';
import { delay, withTimeout } from './helpers/timeout.js';

const PYTHON = findProgram(['/usr/bin/python3', 'python3']);
const STEPS = fileURLToPath(new URL('./fixtures/steps/', import.meta.url));
/** Time for loopback to deliver what a peer step sent (a FIN, a reset) before the next call. */
const SETTLE_MS = 60;

type Runner = 'cpython' | 'native' | 'portable';

/** One program that takes a step per line and answers a line per step. */
class Program {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;

  constructor(runner: Runner) {
    this.#child =
      runner === 'cpython'
        ? spawn(PYTHON!, ['-u', `${STEPS}steps.py`])
        : spawn(process.execPath, ['--import', 'tsx', `${STEPS}steps.ts`], {
            env: { ...process.env, ECHOPLEX_ENGINE: runner },
          });
    this.#lines = createInterface({ input: this.#child.stdout })[Symbol.asyncIterator]();
  }

  async step(line: string): Promise<string> {
    this.#child.stdin.write(`${line}\n`);
    const next = await withTimeout(this.#lines.next(), 15_000, `the answer to "${line}"`);
    return next.done ? '(exited)' : next.value;
  }

  async stop(): Promise<void> {
    this.#child.stdin.end();
    if (this.#child.exitCode === null)
      await withTimeout(once(this.#child, 'exit'), 5000, 'the program to exit').catch(() =>
        this.#child.kill('SIGKILL'),
      );
  }
}

/** Runs `steps` (a peer's when they start with `peer`) and returns the program's trace. */
async function trace(runner: Runner, steps: readonly string[]): Promise<string[]> {
  const server = net.createServer({ allowHalfOpen: true });
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  // A port nobody listens on, for connects that are refused.
  const closedPort = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  const program = new Program(runner);
  const lines: string[] = [];
  try {
    lines.push(`connect -> ${await program.step(`connect ${port}`)}`);
    const peer = await withTimeout(accepted, 5000, 'the connection');
    peer.on('error', () => {});
    peer.on('data', () => {});
    for (const step of steps) {
      const [who, what, arg] = step.split(' ');
      if (who === 'peer') {
        // What the program sent has reached the peer (and been read), so closing sends a FIN.
        await delay(SETTLE_MS);
        if (what === 'send') peer.write(Buffer.from(arg!, 'hex'));
        else if (what === 'fin') peer.end();
        else if (what === 'close') peer.destroy();
        else if (what === 'rst') peer.resetAndDestroy();
        await delay(SETTLE_MS);
      } else if (step === 'wait') {
        await delay(SETTLE_MS);
      } else {
        const command = step.replace('$CLOSED', String(closedPort)).replace('$PEER', String(port));
        lines.push(`${step} -> ${await program.step(command)}`);
      }
    }
    peer.destroy();
  } finally {
    await program.stop();
    server.close();
  }
  return lines;
}

/** Each scenario is a list of steps; the listed differences of issue 33 are among them. */
const SCENARIOS: Record<string, string[]> = {
  'data, then FIN: data, then end of stream for good': [
    'peer send 68656c6c6f',
    'peer fin',
    'recv 100',
    'recv 100',
    'recv 100',
    'select',
    'send 78',
    'recv 100',
  ],
  'the peer left while an echo was in flight: recv gives end of stream, send the broken pipe': [
    'peer send 61',
    'peer close',
    'recv 100',
    'recv 100',
    'send 61',
    'wait',
    'recv 100',
    'recv 100',
    'send 61',
    'send 61',
    'sockerror',
  ],
  'data, then a reset: the data first, the reset once': [
    'peer send 6869',
    'peer rst',
    'recv 100',
    'recv 100',
    'recv 100',
    'send 61',
    'sockname',
  ],
  'a reset with nothing unread: reported once': [
    'peer rst',
    'select',
    'recv 10',
    'recv 10',
    'send 61',
    'send 61',
    'sockerror',
  ],
  'recv(0) with nothing there': ['recv 0', 'recv 10'],
  'after shutdown(SHUT_WR): writable, and send raises the broken pipe': [
    'shutdown WR',
    'select',
    'send',
    'send 61',
    'recv 10',
  ],
  'SO_ERROR is read once': ['peer rst', 'sockerror', 'sockerror', 'recv 10'],
  'a non-blocking connect that is refused: EINPROGRESS, then ready, SO_ERROR once, and a broken pipe': [
    'nbconnect $CLOSED',
    'wait',
    'select',
    'sockerror',
    'sockerror',
    'recv 10',
    'send 61',
    'peername',
  ],
  'a non-blocking connect that succeeds: EINPROGRESS, then WRITE, and SO_ERROR 0': [
    'nbconnect $PEER',
    'wait',
    'select',
    'sockerror',
    'send 61',
  ],
  'connect_ex: the errno, or EINPROGRESS when non-blocking': [
    'connect_ex $CLOSED',
    'nbconnect_ex $CLOSED',
    'nbconnect_ex $PEER',
  ],
  'settimeout, gettimeout and TimeoutError': [
    'gettimeout',
    'settimeout 0.2',
    'gettimeout',
    'recvwait 10',
    'settimeout None',
    'gettimeout',
    'setblocking 1',
    'gettimeout',
    'setblocking 0',
    'gettimeout',
    'recvwait 10',
  ],
  'a closed socket and a negative select timeout': ['selectneg', 'close', 'setblocking 0', 'sockerror'],
};

describe('the selectors port against CPython', { skip: skipUnless(PYTHON, 'python3', 'python3') }, () => {
  const expected = new Map<string, Promise<string[]>>();
  const cpython = (name: string) => {
    if (!expected.has(name)) expected.set(name, trace('cpython', SCENARIOS[name]!));
    return expected.get(name)!;
  };
  after(() => expected.clear());
  for (const runner of ['native', 'portable'] as const) {
    for (const name of Object.keys(SCENARIOS)) {
      it(`${name} (${runner} engine)`, async () => {
        const want = await cpython(name);
        if (process.env['ECHOPLEX_TRACE'] !== undefined) console.log(JSON.stringify({ name, want }, null, 1));
        const got = await trace(runner, SCENARIOS[name]!);
        assert.deepEqual(got, want);
      });
    }
  }
});

/** Steps fast-check draws from: the peer acts between the calls. */
const CALLS = ['recv 100', 'recv 1', 'send 61', 'send', 'select', 'sockerror', 'shutdown WR', 'wait'];
const PEER_ACTS = ['peer send 6869', 'peer rst'];
const PEER_LEAVES = ['peer fin', 'peer close'];

describe('generated sequences of calls against CPython', { skip: skipUnless(PYTHON, 'python3', 'python3') }, () => {
  for (const runner of ['native', 'portable'] as const) {
    it(`traces the same as CPython, whatever the order (${runner} engine)`, async () => {
      const steps = fc.array(fc.constantFrom(...CALLS, ...PEER_ACTS, ...PEER_LEAVES), {
        minLength: 3,
        maxLength: 9,
      });
      await fc.assert(
        fc.asyncProperty(steps, async (sequence) => {
          const [want, got] = await Promise.all([trace('cpython', sequence), trace(runner, sequence)]);
          assert.deepEqual(got, want, `steps: ${JSON.stringify(sequence)}`);
        }),
        { numRuns: Number(process.env['ECHOPLEX_RUNS'] ?? 6) },
      );
    });
  }
});
