// Property test of the selectors port on real sockets: random sends, receives and half-closes in
// both directions, checked against a model of the bytes in flight. Readiness must be level-
// triggered (READ exactly while recv would not block, WRITE exactly while send would take a
// byte; on native sockets, WRITE as the kernel's poll reports it), and every byte must arrive
// once, in order.

import assert from 'node:assert/strict';
import { after, before, it } from 'node:test';
import fc from 'fast-check';
import { addonAbsence } from '../src/native/addon.js';
import {
  BlockingIOError,
  DefaultSelector,
  EVENT_READ,
  select,
  SHUT_WR,
  socket,
  type Socket,
  useEngine,
} from '../src/selectors/index.js';
import { skipUnless, suite } from './helpers/peers.js';
import { withTimeout } from './helpers/timeout.js';

type Op =
  | { kind: 'send'; from: 0 | 1; size: number; seed: number }
  | { kind: 'recv'; at: 0 | 1; size: number }
  | { kind: 'drain'; at: 0 | 1 }
  | { kind: 'probe'; from: 0 | 1 }
  | { kind: 'shut'; from: 0 | 1 };

const side = fc.constantFrom<0 | 1>(0, 1);
const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('send' as const),
    from: side,
    size: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 90_000 })),
    seed: fc.nat(255),
  }),
  fc.record({
    kind: fc.constant('recv' as const),
    at: side,
    size: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 70_000 })),
  }),
  fc.record({ kind: fc.constant('drain' as const), at: side }),
  fc.record({ kind: fc.constant('probe' as const), from: side }),
  fc.record({ kind: fc.constant('shut' as const), from: side }),
);

/** What each direction has carried: accepted by send() and not yet taken by recv(). */
class Direction {
  pending: Buffer[] = [];
  pendingBytes = 0;
  shut = false;

  accept(bytes: Buffer): void {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  /** The next `n` bytes the model expects recv() to return. */
  take(n: number): Buffer {
    const all = Buffer.concat(this.pending);
    this.pending = [all.subarray(n)];
    this.pendingBytes -= n;
    return all.subarray(0, n);
  }
}

/** Is `conn` readable? One side asks a DefaultSelector, the other select.select, so both are checked. */
async function readable(sel: DefaultSelector, conn: Socket, at: 0 | 1, timeout: number): Promise<boolean> {
  if (at === 0) return (await sel.select(timeout)).length > 0;
  const [r] = await select([conn], [], [], timeout);
  return r.length > 0;
}

const nativeSkip = skipUnless(
  addonAbsence() === undefined ? 'built' : undefined,
  'the native engine',
  'g++ make (then npm install)',
);

for (const engine of ['native', 'portable'] as const) {
  suite(`selectors properties on real sockets, ${engine} engine`, engine === 'native' ? nativeSkip : undefined, () => {
    before(() => useEngine(engine));
    after(() => useEngine(undefined));
    let server: Socket;
    let port: number;
    before(async () => {
      server = socket();
      server.bind(['127.0.0.1', 0]);
      await server.listen();
      port = server.getsockname()[1];
    });
    after(() => server.close());

    it('level-triggered READ and in-order, exactly-once bytes under random sends, receives and half-closes', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30, size: 'max' }), async (ops) => {
          const client = socket();
          await withTimeout(client.connect(['127.0.0.1', port]), 5000, 'connect');
          let accepted: Socket | undefined;
          for (let i = 0; i < 500 && accepted === undefined; i++) {
            try {
              accepted = server.accept()[0];
            } catch (err) {
              if (!(err instanceof BlockingIOError)) throw err;
              await new Promise((resolve) => setTimeout(resolve, 2));
            }
          }
          assert.ok(accepted, 'accepted');
          const ends: [Socket, Socket] = [client, accepted];
          // directions[i]: bytes travelling towards ends[i].
          const directions = [new Direction(), new Direction()] as const;
          const selector = new DefaultSelector();
          selector.register(ends[0], EVENT_READ);
          const receive = async (at: 0 | 1, size: number): Promise<void> => {
            const here = directions[at];
            const conn = ends[at];
            if (here.pendingBytes > 0 || here.shut) {
              // Bytes (or the end) are on their way: READ must come, and then recv must not block.
              assert.ok(
                await withTimeout(readable(selector, conn, at, 2), 3000, 'readiness'),
                'READ reported for bytes in flight',
              );
              const got = conn.recv(size);
              if (here.pendingBytes === 0) {
                assert.equal(got.length, 0, 'end of stream once every byte is read');
                assert.ok(await readable(selector, conn, at, 0), 'READ stays set at end of stream');
              } else {
                assert.ok(got.length > 0 && got.length <= size);
                assert.ok(got.equals(here.take(got.length)), 'bytes in order, each once');
              }
            } else {
              // Nothing on the way: not readable, and recv would block.
              assert.equal(await readable(selector, conn, at, 0), false, 'no READ without bytes');
              assert.throws(() => conn.recv(size), BlockingIOError);
            }
          };
          try {
            for (const step of ops) {
              if (step.kind === 'send') {
                const to = directions[1 - step.from]!;
                const bytes = Buffer.alloc(step.size, step.seed);
                bytes[0] = (step.seed + to.pendingBytes) & 0xff; // not a run of one byte, so order shows
                if (to.shut) {
                  assert.throws(
                    () => ends[step.from].send(bytes),
                    (err: { code: string }) => err.code === 'EPIPE',
                  );
                  continue;
                }
                let sent = 0;
                try {
                  sent = ends[step.from].send(bytes);
                  assert.ok(sent > 0 && sent <= bytes.length, `send took ${sent} of ${bytes.length}`);
                } catch (err) {
                  if (!(err instanceof BlockingIOError)) throw err;
                }
                to.accept(bytes.subarray(0, sent));
              } else if (step.kind === 'recv') {
                await receive(step.at, step.size);
              } else if (step.kind === 'probe') {
                // WRITE exactly while send() would take a byte; checked with no turn of the loop between.
                const to = directions[1 - step.from]!;
                const [, w] = await select([], [ends[step.from]], [], 0);
                const byte = Buffer.of(to.pendingBytes & 0xff);
                if (to.shut) {
                  // After SHUT_WR a send fails at once: WRITE, as Linux's poll reports it, and EPIPE.
                  assert.equal(w.length, 1, 'WRITE after SHUT_WR');
                  assert.throws(
                    () => ends[step.from].send(byte),
                    (err: { code: string }) => err.code === 'EPIPE',
                  );
                } else if (w.length > 0) {
                  assert.equal(ends[step.from].send(byte), 1, 'WRITE reported, so send takes a byte');
                  to.accept(byte);
                } else if (engine === 'native') {
                  // Native sockets report WRITE as the kernel's poll does (room above its low-water
                  // mark), as Python's select does: below that mark a send may still take a byte.
                  try {
                    to.accept(byte.subarray(0, ends[step.from].send(byte)));
                  } catch (err) {
                    if (!(err instanceof BlockingIOError)) throw err;
                  }
                } else {
                  assert.throws(() => ends[step.from].send(byte), BlockingIOError, 'no WRITE, so send would block');
                }
              } else if (step.kind === 'drain') {
                // A reader that takes everything: the sender's side must refill as room is made.
                while (directions[step.at].pendingBytes > 0) await receive(step.at, 65_536);
              } else if (!directions[1 - step.from]!.shut) {
                ends[step.from].shutdown(SHUT_WR);
                directions[1 - step.from]!.shut = true;
              }
            }
          } finally {
            selector.close();
            client.close();
            accepted.close();
          }
        }),
        { numRuns: 40 },
      );
    });
  });
}
