// echoplex/selectors, rule by rule, with real sockets: Python's selectors and socket semantics.
//
// As CPython's test_selectors runs one base class per backend, the whole suite runs once per
// engine: connected sockets on the native addon, and on Node's net.Socket.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { format, inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import {
  AlreadyRegisteredError,
  BrokenPipeError,
  TimeoutError,
  BlockingIOError,
  ConnectionRefusedError,
  ConnectionResetError,
  DefaultSelector,
  EVENT_READ,
  EVENT_WRITE,
  InvalidEventsError,
  InvalidFileObjectError,
  NotRegisteredError,
  SelectorClosedError,
  IPPROTO_TCP,
  SHUT_WR,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_REUSEADDR,
  SO_TYPE,
  SOCK_STREAM,
  SOL_SOCKET,
  TCP_NODELAY,
  select,
  socket,
  type Socket,
  useEngine,
} from '../src/selectors/index.js';
import { addonAbsence } from '../src/native/addon.js';
import { kPlane, kWatch } from '../src/selectors/socket.js';
import { findProgram, skipUnless, suite } from './helpers/peers.js';
import { delay, waitUntil, withTimeout } from './helpers/timeout.js';

const SS = findProgram(['ss', '/usr/sbin/ss', '/usr/bin/ss'], ['-V']);

/** A listening selectors socket plus helpers to make connected pairs through it. */
async function listener(): Promise<{ server: Socket; port: number; pair(): Promise<[client: Socket, conn: Socket]> }> {
  const server = socket();
  server.bind(['127.0.0.1', 0]);
  await server.listen(100);
  server.setblocking(false);
  const port = server.getsockname()[1];
  return {
    server,
    port,
    pair: async () => {
      const client = socket();
      await withTimeout(client.connect(['127.0.0.1', port]), 5000, 'connect');
      const sel = new DefaultSelector();
      sel.register(server, EVENT_READ);
      try {
        // Several pairs may wait on the one listening socket: as with select(2), all of them see
        // it readable and one may find the connection taken (EAGAIN); it then waits again.
        for (;;) {
          await withTimeout(sel.select(5), 5000, 'accept readiness');
          try {
            const [conn] = server.accept();
            return [client, conn];
          } catch (err) {
            if (!(err instanceof BlockingIOError)) throw err;
          }
        }
      } finally {
        sel.close();
      }
    },
  };
}

const nativeSkip = skipUnless(
  addonAbsence() === undefined ? 'built' : undefined,
  'the native engine',
  'g++ make (then npm install)',
);

for (const engine of ['native', 'portable'] as const) {
  suite(`selectors on the ${engine} engine`, engine === 'native' ? nativeSkip : undefined, () => {
    before(() => useEngine(engine));
    after(() => useEngine(undefined));

    describe('DefaultSelector rules', () => {
      let l: Awaited<ReturnType<typeof listener>>;
      before(async () => {
        l = await listener();
      });
      after(() => l.server.close());

      it('rejects an empty or unknown events mask', async () => {
        const [client] = await l.pair();
        const sel = new DefaultSelector();
        for (const events of [0, 4, 8, -1, 1.5, EVENT_READ | 4]) {
          assert.throws(
            () => sel.register(client, events),
            (err: InvalidEventsError) =>
              err instanceof InvalidEventsError && err.code === 'ERR_SELECTOR_INVALID_EVENTS',
          );
        }
        assert.equal(sel.getMap().size, 0);
        client.close();
      });

      it('rejects registering twice, and unknown objects on unregister, modify and getKey', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector<string>();
        const key = sel.register(client, EVENT_READ, 'data');
        assert.equal(key.fileobj, client);
        assert.equal(key.fd, client.fileno());
        assert.equal(key.events, EVENT_READ);
        assert.equal(key.data, 'data');
        assert.throws(
          () => sel.register(client, EVENT_WRITE),
          (err: AlreadyRegisteredError) => err.code === 'ERR_SELECTOR_ALREADY_REGISTERED',
        );
        assert.throws(
          () => sel.unregister(conn),
          (err: NotRegisteredError) => err.code === 'ERR_SELECTOR_NOT_REGISTERED',
        );
        assert.throws(() => sel.modify(conn, EVENT_READ), NotRegisteredError);
        assert.throws(() => sel.getKey(conn), NotRegisteredError);
        assert.equal(sel.getKey(client), key);
        assert.equal(sel.getKey(client.fileno()), key, 'a descriptor number finds the key too');
        assert.deepEqual([...sel.getMap().keys()], [client.fileno()]);
        assert.equal(sel.unregister(client), key);
        assert.throws(() => sel.unregister(client), NotRegisteredError);
        client.close();
        conn.close();
      });

      it('a socket closed before unregister() is still found, as selectors.py finds it by identity', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector<string>();
        const key = sel.register(conn, EVENT_READ, 'conn');
        const fd = conn.fileno();
        conn.close();
        assert.equal(sel.getKey(conn), key);
        assert.equal(sel.modify(conn, EVENT_READ, 'again').data, 'again');
        assert.equal(sel.unregister(conn).fd, fd);
        assert.equal(sel.getMap().size, 0, 'no stale key left under the old descriptor');
        // Never registered and closed: Python raises ValueError (an invalid descriptor).
        assert.throws(() => sel.unregister(conn), InvalidFileObjectError);
        client.close();
        sel.close();
      });

      it('keys are read-only', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        const key = sel.register(client, EVENT_READ);
        assert.throws(() => {
          (key as { events: number }).events = 3;
        }, TypeError);
        sel.close();
        client.close();
        conn.close();
      });

      it('modify changes events and data and returns the new key', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector<string>();
        sel.register(client, EVENT_READ, 'a');
        const key = sel.modify(client, EVENT_WRITE, 'b');
        assert.equal(key.events, EVENT_WRITE);
        assert.equal(key.data, 'b');
        assert.equal(sel.getKey(client), key);
        assert.throws(() => sel.modify(client, 4), InvalidEventsError);
        const ready = await withTimeout(sel.select(1), 2000, 'writable');
        assert.deepEqual(
          ready.map(([k, events]) => [k.data, events]),
          [['b', EVENT_WRITE]],
        );
        // CPython's epoll selector takes 0: the key stays, reported for nothing.
        assert.equal(sel.modify(client, 0, 'c').events, 0);
        assert.deepEqual(await withTimeout(sel.select(0.05), 2000, 'nothing'), []);
        assert.equal(sel.getKey(client).data, 'c');
        sel.close();
        client.close();
        conn.close();
      });

      it('refuses closed sockets and non-sockets', () => {
        const sel = new DefaultSelector();
        const closed = socket();
        closed.close();
        assert.equal(closed.fileno(), -1);
        assert.throws(
          () => sel.register(closed, EVENT_READ),
          (err: InvalidFileObjectError) => err.code === 'ERR_SELECTOR_INVALID_FILEOBJ',
        );
        assert.throws(() => sel.register({} as Socket, EVENT_READ), InvalidFileObjectError);
        assert.throws(() => sel.register(123456789, EVENT_READ), InvalidFileObjectError);
      });

      it('undoes a half-done registration before re-raising', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        const failing = Object.create(client) as Socket;
        Object.defineProperty(failing, kWatch, {
          value: () => {
            throw new Error('watch failed');
          },
        });
        Object.defineProperty(failing, 'fileno', { value: () => client.fileno() });
        assert.throws(() => sel.register(failing, EVENT_READ), /watch failed/);
        assert.equal(sel.getMap().size, 0, 'the key was removed again');
        sel.register(client, EVENT_READ);
        sel.close();
        client.close();
        conn.close();
      });

      it('is unusable after close(), and Symbol.dispose closes it', async () => {
        const [client, conn] = await l.pair();
        let sel: DefaultSelector;
        {
          using scoped = new DefaultSelector();
          scoped.register(client, EVENT_READ);
          sel = scoped;
        }
        assert.throws(
          () => sel.register(conn, EVENT_READ),
          (err: SelectorClosedError) => err.code === 'ERR_SELECTOR_CLOSED',
        );
        assert.throws(() => sel.getMap(), SelectorClosedError);
        assert.throws(() => sel.getKey(client), SelectorClosedError);
        await assert.rejects(sel.select(0), SelectorClosedError);
        sel.close();
        client.close();
        conn.close();
      });
    });

    describe('DefaultSelector.select', () => {
      let l: Awaited<ReturnType<typeof listener>>;
      before(async () => {
        l = await listener();
      });
      after(() => l.server.close());

      it('times out to [] (seconds, fractions allowed), and 0 only polls', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        sel.register(conn, EVENT_READ);
        const started = performance.now();
        assert.deepEqual(await sel.select(0.15), []);
        const waited = performance.now() - started;
        assert.ok(waited >= 140 && waited < 1000, `waited ${waited} ms`);
        const polled = performance.now();
        assert.deepEqual(await sel.select(0), []);
        assert.ok(performance.now() - polled < 100);
        sel.close();
        client.close();
        conn.close();
      });

      it('undefined waits for the first event, and READ stays ready until recv takes the data (level-triggered)', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        const key = sel.register(conn, EVENT_READ | EVENT_WRITE);
        sel.modify(conn, EVENT_READ);
        const waiting = sel.select();
        setTimeout(() => client.send('ping'), 50);
        const first = await withTimeout(waiting, 5000, 'first event');
        assert.equal(first.length, 1);
        assert.equal(first[0]![1], EVENT_READ, 'events are masked by what was registered (no WRITE)');
        assert.equal(first[0]![0].fd, key.fd);
        const again = await withTimeout(sel.select(1), 2000, 'still ready');
        assert.equal(again.length, 1, 'still readable while unread data waits');
        assert.equal(conn.recv(100).toString(), 'ping');
        assert.deepEqual(await sel.select(0.05), [], 'not readable once drained');
        sel.close();
        client.close();
        conn.close();
      });

      it('refuses a second select() while one waits, and close() answers the waiting one with []', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        sel.register(conn, EVENT_READ);
        const waiting = sel.select();
        await assert.rejects(sel.select(0), /already waiting/);
        setTimeout(() => sel.close(), 20);
        assert.deepEqual(await withTimeout(waiting, 2000, 'answered on close'), []);
        client.close();
        conn.close();
      });

      it('a timed select() woken before its timeout answers with the ready key and leaves no timer behind', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        sel.register(conn, EVENT_READ);
        const waiting = sel.select(30);
        setTimeout(() => client.send('x'), 20);
        const ready = await withTimeout(waiting, 2000, 'woken by data');
        assert.equal(ready.length, 1);
        // A timer left armed would keep this process's event loop busy: none of ours remain.
        const timers = (process as unknown as { getActiveResourcesInfo(): string[] })
          .getActiveResourcesInfo()
          .filter((r) => r === 'Timeout');
        assert.equal(timers.length, 0, `timers still armed: ${timers.length}`);
        sel.close();
        client.close();
        conn.close();
      });

      /** `count` connected pairs whose server sides are registered for READ on one new selector. */
      async function watchedPairs(count: number): Promise<{ clients: Socket[]; sel: DefaultSelector; close(): void }> {
        const pairs = await Promise.all(Array.from({ length: count }, () => l.pair()));
        const sel = new DefaultSelector();
        for (const [, conn] of pairs) sel.register(conn, EVENT_READ);
        return {
          clients: pairs.map(([client]) => client),
          sel,
          close: () => {
            sel.close();
            for (const pair of pairs) for (const sock of pair) sock.close();
          },
        };
      }

      it('delivers many ready keys in one result', async () => {
        const { clients, sel, close } = await watchedPairs(20);
        for (const client of clients) client.send('x');
        await delay(100);
        const ready = await withTimeout(sel.select(1), 2000, 'ready keys');
        assert.equal(ready.length, 20);
        close();
      });

      it('a waiting select() answers with every key that became ready in the same turn, not just the first', async () => {
        const { clients, sel, close } = await watchedPairs(20);
        const waiting = sel.select();
        // All twenty arrive before the event loop next polls, as one epoll_wait() would see them.
        for (const client of clients) client.send('x');
        const ready = await withTimeout(waiting, 2000, 'ready keys');
        assert.equal(ready.length, 20);
        close();
      });

      it('uses no CPU while idle', async () => {
        const [client, conn] = await l.pair();
        const sel = new DefaultSelector();
        sel.register(conn, EVENT_READ);
        const before = process.cpuUsage();
        await sel.select(0.5);
        const used = process.cpuUsage(before);
        assert.ok(
          used.user + used.system < 60_000,
          `idle select used ${(used.user + used.system) / 1000} ms of CPU in 500 ms`,
        );
        sel.close();
        client.close();
        conn.close();
      });

      it('reports a listening socket READ when a connection waits for accept()', async () => {
        const sel = new DefaultSelector();
        sel.register(l.server, EVENT_READ);
        assert.throws(() => l.server.accept(), BlockingIOError);
        const client = socket();
        await client.connect(['127.0.0.1', l.port]);
        const ready = await withTimeout(sel.select(5), 6000, 'accept readiness');
        assert.equal(ready[0]![0].fileobj, l.server);
        const [conn, address] = l.server.accept();
        assert.deepEqual(address, client.getsockname());
        assert.deepEqual(conn.getpeername(), client.getsockname());
        sel.close();
        client.close();
        conn.close();
      });

      it('a client that resets while waiting for accept(): READ held, so accept() hands it out, and recv gives its bytes then ECONNRESET', async () => {
        // Without the address learned on arrival, accept() found no peer and raised BlockingIOError
        // right after select() said READ: the seed's one-accept-per-event server died of it.
        const sel = new DefaultSelector();
        sel.register(l.server, EVENT_READ);
        const client = net.connect(l.port, '127.0.0.1');
        await withTimeout(once(client, 'connect'), 5000, 'connect');
        const clientAddress: [string, number] = [client.localAddress!, client.localPort!];
        client.write('last words');
        const ready = await withTimeout(sel.select(5), 6000, 'accept readiness');
        assert.equal(ready[0]![0].fileobj, l.server);
        client.resetAndDestroy();
        await withTimeout(once(client, 'close'), 5000, 'reset sent');
        await delay(50); // the RST reaches the waiting connection
        // Linux's accept() returns a connection reset in the queue, with its address; so must ours.
        const [conn, address] = l.server.accept();
        assert.deepEqual(address, clientAddress);
        const received = await withTimeout(
          (async () => {
            let text = '';
            for (;;) {
              let chunk: Buffer;
              try {
                chunk = await conn.recvAsync(100);
              } catch (err) {
                assert.ok(err instanceof ConnectionResetError, String(err));
                return text;
              }
              // On streams libuv reports a reset that follows unread bytes as end of stream.
              if (chunk.length === 0 && engine !== 'native') return text;
              assert.ok(chunk.length > 0, 'a reset, not an orderly end of stream');
              text += chunk.toString();
            }
          })(),
          5000,
          'ECONNRESET',
        );
        assert.ok('last words'.startsWith(received), `received ${JSON.stringify(received)}`);
        sel.close();
        conn.close();
      });
    });

    describe('Socket semantics', () => {
      let l: Awaited<ReturnType<typeof listener>>;
      before(async () => {
        l = await listener();
      });
      after(() => l.server.close());

      it("prints like Python under console.log and util.inspect: fd, laddr and raddr, not the object's fields", async () => {
        const [client, conn] = await l.pair();
        const [host, port] = client.getsockname();
        const shown = inspect(conn);
        assert.equal(shown, String(conn));
        assert.match(
          shown,
          new RegExp(
            `^<socket fd=${conn.fileno()}, laddr=\\('127\\.0\\.0\\.1', ${l.port}\\), raddr=\\('${host.replace(/\./g, '\\.')}', ${port}\\)>$`,
          ),
        );
        assert.equal(format('%o', [conn]).includes('#state'), false);
        client.close();
        conn.close();
      });

      it('recv: BlockingIOError when empty, data when ready, empty Buffer at end of stream', async () => {
        const [client, conn] = await l.pair();
        assert.throws(
          () => conn.recv(10),
          (err: BlockingIOError) => err instanceof BlockingIOError && err.code === 'EAGAIN' && err.errno === 11,
        );
        client.send('hello world');
        await waitUntil(
          () => {
            try {
              return conn.recv(5).toString() === 'hello';
            } catch {
              return false;
            }
          },
          5000,
          'data',
        );
        assert.equal(conn.recv(100).toString(), ' world', 'recv(n) returns at most n bytes, the rest stays');
        client.shutdown(SHUT_WR);
        await waitUntil(
          () => {
            try {
              return conn.recv(10).length === 0;
            } catch {
              return false;
            }
          },
          5000,
          'end of stream',
        );
        client.close();
        conn.close();
      });

      it('READ holds at end of stream as soon as recv has returned it, with no turn of the loop between', async () => {
        const [client, conn] = await l.pair();
        client.send('bye');
        client.shutdown(SHUT_WR);
        // Both the bytes and the FIN are in before the program looks.
        await delay(50);
        const sel = new DefaultSelector();
        try {
          sel.register(conn, EVENT_READ);
          assert.equal((await withTimeout(sel.select(5), 6000, 'READ')).length, 1);
          // recv(100) comes back short (3 bytes) with the FIN still queued behind them.
          assert.equal(conn.recv(100).toString(), 'bye');
          assert.equal(conn.recv(100).length, 0, 'end of stream');
          assert.equal((await sel.select(0)).length, 1, 'READ while recv would return end of stream');
          const [r] = await select([conn], [], [], 0);
          assert.equal(r.length, 1);
        } finally {
          sel.close();
          client.close();
          conn.close();
        }
      });

      it('connected sockets read and write through the engine chosen', async () => {
        const [client, conn] = await l.pair();
        const expected = engine === 'native' ? 'native' : 'stream';
        assert.equal(client[kPlane](), expected);
        assert.equal(conn[kPlane](), expected);
        client.close();
        conn.close();
      });

      it('READ ends with the data: a recv that asks for exactly what is left leaves nothing reported', async () => {
        const [client, conn] = await l.pair();
        for (const size of [10, 1024, 4096]) {
          client.send(Buffer.alloc(size, 0x41));
          // Each recv asks for exactly the bytes still to come, so the last one fills its buffer.
          for (let got = 0; got < size;) {
            const [ready] = await withTimeout(select([conn], [], [], 5), 6000, 'READ');
            assert.equal(ready.length, 1, 'READ while bytes are on their way');
            got += conn.recv(size - got).length;
          }
          const [after] = await select([conn], [], [], 0);
          assert.equal(after.length, 0, `not READ once all ${size} bytes are taken`);
          assert.throws(() => conn.recv(size), BlockingIOError);
        }
        client.close();
        conn.close();
      });

      it(
        "WRITE ends at the kernel's low-water mark, before the buffer is full, and comes back when the peer reads",
        { skip: engine !== 'native' && 'streams keep their own buffer, writable while a byte fits' },
        async () => {
          const [client, conn] = await l.pair();
          const chunk = Buffer.alloc(16 * 1024, 0x42);
          let sent = 0;
          let wholeSendsOnly = true;
          let writable = true;
          // A select() each turn, as the ported select server does: sends are confirmed between turns.
          for (let i = 0; i < 4000 && writable && wholeSendsOnly; i++) {
            const [, w] = await select([], [client], [], 0);
            writable = w.length > 0;
            if (!writable) break;
            const taken = client.send(chunk);
            sent += taken;
            wholeSendsOnly = taken === chunk.length;
          }
          // Linux's poll (and so Python's select) drops POLLOUT once a third of the buffer is left,
          // while send() still takes whole chunks: WRITE must go with it, not only when a send falls short.
          assert.equal(writable, false, 'WRITE ended');
          assert.ok(wholeSendsOnly, 'every send before that was taken whole');
          let received = 0;
          await withTimeout(
            (async () => {
              for (;;) {
                const [r, w] = await select([conn], [client], [], 5);
                if (w.length > 0) return;
                if (r.length > 0) received += conn.recv(1024 * 1024).length;
              }
            })(),
            10_000,
            'WRITE after the peer reads',
          );
          assert.ok(received > 0 && received <= sent);
          client.close();
          conn.close();
        },
      );

      it('recv raises ConnectionResetError (ECONNRESET) after a reset, once', async () => {
        const raw = net.connect({ port: l.port, host: '127.0.0.1' });
        await new Promise((resolve) => raw.once('connect', resolve));
        const sel = new DefaultSelector();
        sel.register(l.server, EVENT_READ);
        await sel.select(5);
        sel.close();
        const [conn] = l.server.accept();
        raw.resetAndDestroy();
        await waitUntil(
          () => {
            try {
              conn.recv(10);
              return false;
            } catch (err) {
              return err instanceof ConnectionResetError;
            }
          },
          5000,
          'ECONNRESET',
        );
        // Reported once, as Linux does: then end of stream, and send's broken pipe.
        assert.equal(conn.recv(10).length, 0);
        assert.throws(
          () => conn.send('x'),
          (err: BrokenPipeError) => err.code === 'EPIPE' && err.errno === 32,
        );
        conn.close();
      });

      it('send returns fewer bytes than given when the buffer fills, then raises BlockingIOError', async () => {
        const [client, conn] = await l.pair();
        const big = Buffer.alloc(1024 * 1024, 7);
        let total = 0;
        let partial = false;
        let blocked = false;
        for (let i = 0; i < 2000 && !blocked; i++) {
          try {
            const sent = client.send(big);
            if (sent < big.length) partial = true;
            total += sent;
          } catch (err) {
            assert.ok(err instanceof BlockingIOError);
            blocked = true;
          }
          await delay(1);
        }
        assert.ok(partial, 'a send accepted only part of the data');
        assert.ok(blocked, 'send raised BlockingIOError once nothing fit');
        // Everything accepted arrives, in order.
        let received = 0;
        await withTimeout(
          (async () => {
            while (received < total) {
              const data = await conn.recvAsync(65536);
              assert.ok(data.every((b) => b === 7));
              received += data.length;
            }
          })(),
          20_000,
          'all accepted bytes',
        );
        assert.equal(received, total);
        client.close();
        conn.close();
      });

      it('sendall on a non-blocking socket raises BlockingIOError when the buffer fills, as Python does, instead of waiting', async () => {
        const [client, conn] = await l.pair();
        client.setblocking(false);
        await assert.rejects(
          withTimeout(client.sendall(Buffer.alloc(32 * 1024 * 1024, 1)), 10_000, 'sendall'),
          BlockingIOError,
        );
        client.settimeout(0.2);
        await assert.rejects(
          withTimeout(client.sendall(Buffer.alloc(32 * 1024 * 1024, 1)), 10_000, 'sendall'),
          TimeoutError,
        );
        client.close();
        conn.close();
      });

      it('connect to a closed port raises ConnectionRefusedError', async () => {
        const probe = net.createServer();
        await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
        const { port } = probe.address() as net.AddressInfo;
        await new Promise((resolve) => probe.close(resolve));
        const s = socket();
        await assert.rejects(
          s.connect(['127.0.0.1', port]),
          (err: ConnectionRefusedError) => err.code === 'ECONNREFUSED',
        );
      });

      it('listen reports an address in use', async () => {
        const s = socket();
        s.bind(['127.0.0.1', l.port]);
        await assert.rejects(s.listen(), (err: { code: string }) => err.code === 'EADDRINUSE');
      });

      it('closed sockets: fileno -1, operations raise EBADF', async () => {
        const [client, conn] = await l.pair();
        assert.ok(client.fileno() >= 0);
        client.close();
        assert.equal(client.fileno(), -1);
        assert.throws(
          () => client.send('x'),
          (err: { code: string }) => err.code === 'EBADF',
        );
        assert.throws(
          () => client.getpeername(),
          (err: { code: string }) => err.code === 'EBADF',
        );
        conn.close();
      });

      it('setsockopt/getsockopt: the options Python servers set, and ENOPROTOOPT for the rest', async () => {
        const s = socket();
        // The first line of many Python servers, before bind().
        s.setsockopt(SOL_SOCKET, SO_REUSEADDR, 1);
        assert.equal(s.getsockopt(SOL_SOCKET, SO_REUSEADDR), 1);
        assert.equal(s.getsockopt(SOL_SOCKET, SO_TYPE), SOCK_STREAM);
        assert.throws(
          () => s.setsockopt(SOL_SOCKET, 7 /* SO_SNDBUF */, 4096),
          (err: { code: string; errno: number }) => err.code === 'ENOPROTOOPT' && err.errno === 92,
        );
        assert.throws(
          () => s.getsockopt(99, 1),
          (err: { code: string }) => err.code === 'ENOPROTOOPT',
        );
        s.close();
        assert.throws(
          () => s.getsockopt(SOL_SOCKET, SO_TYPE),
          (err: { code: string }) => err.code === 'EBADF',
        );

        const [client, conn] = await l.pair();
        try {
          assert.equal(client.getsockopt(IPPROTO_TCP, TCP_NODELAY), 1, 'on by default, as in Node');
          client.setsockopt(IPPROTO_TCP, TCP_NODELAY, 0);
          assert.equal(client.getsockopt(IPPROTO_TCP, TCP_NODELAY), 0);
          assert.equal(client.getsockopt(SOL_SOCKET, SO_ERROR), 0);
        } finally {
          client.close();
          conn.close();
        }
      });

      it(
        'SO_KEEPALIVE reaches the kernel, set after connect or inherited from the listener',
        { skip: skipUnless(SS, 'ss', 'iproute2') },
        async () => {
          // `ss -o` shows a keep-alive timer on exactly the sockets that have SO_KEEPALIVE.
          const keepAliveTimers = (port: number) =>
            execFileSync(SS!, ['-tnoH', 'state', 'established', `( sport = :${port} or dport = :${port} )`], {
              encoding: 'utf8',
            }).match(/timer:\(keepalive/g)?.length ?? 0;
          const [client, conn] = await l.pair();
          try {
            assert.equal(keepAliveTimers(client.getsockname()[1]), 0);
            client.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
            assert.equal(client.getsockopt(SOL_SOCKET, SO_KEEPALIVE), 1);
            assert.equal(keepAliveTimers(client.getsockname()[1]), 1, 'the client socket, not its peer');
          } finally {
            client.close();
            conn.close();
          }

          const server = socket();
          server.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1);
          server.bind(['127.0.0.1', 0]);
          await server.listen();
          const port = server.getsockname()[1];
          const peer = net.connect(port, '127.0.0.1');
          peer.on('error', () => {});
          try {
            const accepted = await withTimeout(
              (async () => {
                for (;;) {
                  try {
                    return server.accept()[0];
                  } catch (err) {
                    if (!(err instanceof BlockingIOError)) throw err;
                    await delay(10);
                  }
                }
              })(),
              5000,
              'accept',
            );
            assert.equal(accepted.getsockopt(SOL_SOCKET, SO_KEEPALIVE), 1);
            assert.equal(keepAliveTimers(port), 1, 'the accepted socket inherits it; the Node client has none');
            accepted.close();
          } finally {
            peer.destroy();
            server.close();
          }
        },
      );

      it("using: closes at the end of the block, as Python's with-statement does, and the peer sees end of stream", async () => {
        const [client, conn] = await l.pair();
        {
          using scoped = client;
          assert.equal(scoped.send('bye'), 3);
        }
        assert.equal(client.fileno(), -1);
        assert.equal((await conn.recvAsync(16)).toString(), 'bye');
        assert.equal((await conn.recvAsync(16)).length, 0, 'end of stream after the bytes sent');
        conn.close();
      });
    });

    describe('select.select', () => {
      let l: Awaited<ReturnType<typeof listener>>;
      before(async () => {
        l = await listener();
      });
      after(() => l.server.close());

      it("returns the ready sublists in input order, with Python's meaning", async () => {
        const [a, connA] = await l.pair();
        const [b, connB] = await l.pair();
        b.send('data');
        await delay(50);
        const [r, w, x] = await withTimeout(select([connA, connB], [a], [connA, connB], 1), 2000, 'select');
        assert.deepEqual(r, [connB]);
        assert.deepEqual(w, [a]);
        assert.deepEqual(x, []);
        for (const s of [a, b, connA, connB]) s.close();
      });

      it('times out with three empty lists', async () => {
        const [a, connA] = await l.pair();
        const started = performance.now();
        assert.deepEqual(await select([connA], [], [], 0.1), [[], [], []]);
        assert.ok(performance.now() - started >= 90);
        a.close();
        connA.close();
      });

      it('a reset socket is readable and writable, and not in x (which Linux fills with urgent data only)', async () => {
        const raw = net.connect({ port: l.port, host: '127.0.0.1' });
        await new Promise((resolve) => raw.once('connect', resolve));
        const [r] = await withTimeout(select([l.server], [], [], 5), 6000, 'accept');
        assert.equal(r.length, 1);
        const [conn] = l.server.accept();
        raw.resetAndDestroy();
        const [readable, writable, x] = await withTimeout(select([conn], [conn], [conn], 5), 6000, 'the reset');
        assert.deepEqual(readable, [conn]);
        await waitUntil(async () => (await select([], [conn], [], 0))[1].length === 1, 5000, 'WRITE');
        assert.ok(writable.length <= 1);
        assert.deepEqual(x, []);
        conn.close();
      });

      it('watches more than 1024 sockets', async () => {
        const pairs: Array<[Socket, Socket]> = [];
        for (let i = 0; i < 600; i++) pairs.push(await l.pair());
        const all = pairs.flat();
        const last = pairs[pairs.length - 1]!;
        last[0].send('x');
        const [r] = await withTimeout(select(all, [], [], 5), 6000, 'select over 1200 sockets');
        assert.deepEqual(r, [last[1]]);
        for (const s of all) s.close();
      });

      it('rejects a closed socket in any list', async () => {
        const s = socket();
        s.close();
        await assert.rejects(select([s], [], []), InvalidFileObjectError);
      });
    });
  });
}
