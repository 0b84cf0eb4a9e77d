// UDP replies the network holds back: on either engine they wait in order up to a bound, the
// rest are dropped and counted, and what waited goes out once there is room. Run in network
// namespaces of the test's own (test/fixtures/held-replies.sh), so only as root.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';
import { addonAbsence } from '../src/native/addon.js';
import { findProgram, skipUnless, suite } from './helpers/peers.js';
import { withTimeout } from './helpers/timeout.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
const CLI = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

/** Why network namespaces with a veth pair cannot be made here, or undefined if they can. */
function namespacesAbsence(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const made = spawnSync('unshare', ['-n', 'ip', 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1'], {
    timeout: 10_000,
  });
  return made.status === 0
    ? undefined
    : `cannot make a network namespace with a veth pair here: ${made.stderr.toString().trim() || made.error?.message}`;
}

interface ClientResult {
  sent: number;
  /** Per client socket, the sequence numbers of the replies it got, in arrival order. */
  received: number[][];
  /** Per client socket, whether the probe sent after the release was answered. */
  probed: boolean[];
  whole: boolean;
}

async function runHeldReplies(
  engine: string,
): Promise<{ client: ClientResult; server: { received: number; dropped: number } }> {
  const child = spawn(
    'unshare',
    ['-n', 'bash', `${FIXTURES}held-replies.sh`, CLI, `${FIXTURES}held-replies-client.mjs`, engine],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const status = await withTimeout(
    new Promise<number | null>((resolve) => child.once('exit', resolve)),
    60_000,
    'the held-replies run',
  ).finally(() => child.kill('SIGKILL'));
  assert.equal(status, 0, `held-replies.sh failed: ${stderr}`);
  const [client, server] = stdout.trim().split('\n').slice(-2);
  return {
    client: JSON.parse(client!) as ClientResult,
    server: JSON.parse(server!) as { received: number; dropped: number },
  };
}

const ip = findProgram(['ip', '/usr/sbin/ip'], ['-V']);
const absence = skipUnless(ip, 'ip', 'iproute2') ?? namespacesAbsence();

for (const engine of ['native', 'portable'] as const) {
  const skip =
    absence ?? (engine === 'native' && addonAbsence() !== undefined ? 'the native engine is not built' : undefined);
  suite(`UDP replies held back by the network, on the ${engine} engine`, skip, () => {
    it('keeps the earliest replies up to its bound, drops and counts the rest, and sends what waited once there is room', async () => {
      const { client, server } = await runHeldReplies(engine);
      const received = client.received.flat();
      // Every request reached the server (the client paces them), plus one probe per socket.
      assert.equal(server.received, client.sent + client.received.length);
      assert.ok(server.dropped > 0, 'no reply was dropped: the bound was never reached');
      assert.equal(received.length + server.dropped, client.sent, 'replies lost without being counted');
      assert.ok(client.whole, 'a reply came back cut or changed');
      // A queue keeps the earliest replies and drops the latest: each socket got its first ones.
      const perSocket = client.sent / client.received.length;
      client.received.forEach((seqs, s) => {
        const sorted = [...seqs].sort((a, b) => a - b);
        assert.deepEqual(
          sorted,
          Array.from({ length: seqs.length }, (_, i) => s * perSocket + i),
          `socket ${s}`,
        );
      });
      // The server answers again afterwards: nothing is stuck waiting for room.
      assert.deepEqual(
        client.probed,
        client.received.map(() => true),
      );
    });
  });
}
